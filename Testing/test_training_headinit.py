"""Function-preserving output layers (headinit.py) on real nnU-Net networks built from nnU-Net's own plans."""

from __future__ import annotations

import math

import pytest
from fixtures_dynamics import BINARY_LABELS, LABELS, TARGETS, build_network


def _perturbed(network, seed: int):
    """Weights away from initialisation (a 'trained' binary model: random biases on the output layers too)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in network.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return network


@pytest.mark.parametrize("configuration", ["2d", "3d_fullres"])
def test_first_forward_gives_the_binary_lesion_probability(planned, configuration):
    import torch

    from backsplit.training.headinit import transfer_all

    torch.manual_seed(0)
    binary = _perturbed(build_network(planned["plans"], configuration, 2), 1).eval()
    new = build_network(planned["plans"], configuration, 1 + 1 + 2).eval()
    record = transfer_all(new, binary.state_dict(), BINARY_LABELS, LABELS, TARGETS)
    assert record["output_layers"] == "function-preserving"
    assert record["bias_shift"] == pytest.approx(-math.log(3))
    assert record["rows_from"] == {"background": "background", "Lesion": "Lesion", "Vessel": "background",
                                   "Organ": "background"}
    patch = planned["plans"]["configurations"][configuration]["patch_size"]
    x = torch.randn(2, 1, *patch)
    with torch.no_grad():
        out_b, out_n = binary(x), new(x)
    assert len(out_n) == len(out_b) == record["layers"] > 1          # every deep-supervision head
    for ob, on in zip(out_b, out_n):
        p_b, p_n = torch.softmax(ob.double(), 1), torch.softmax(on.double(), 1)
        assert on.shape[1] == 4
        assert (p_n[:, 1] - p_b[:, 1]).abs().max() < 1e-5
        rest = p_n[:, [0, 2, 3]]
        assert (rest.sum(1) - p_b[:, 0]).abs().max() < 1e-5            # background mass unchanged
        assert (rest - p_b[:, :1] / 3).abs().max() < 1e-5               # shared equally


def test_float32_error_is_rounding_only(planned):
    """The required bound (1e-5), in the precision nnU-Net trains in on the CPU (float32)."""
    import torch

    from backsplit.training.headinit import transfer_all

    binary = _perturbed(build_network(planned["plans"], "2d", 2), 3).eval()
    new = build_network(planned["plans"], "2d", 4).eval()
    transfer_all(new, binary.state_dict(), BINARY_LABELS, LABELS, TARGETS)
    x = torch.randn(4, 1, *planned["plans"]["configurations"]["2d"]["patch_size"])
    with torch.no_grad():
        err = (torch.softmax(new(x)[0], 1)[:, 1] - torch.softmax(binary(x)[0], 1)[:, 1]).abs().max()
    assert err < 1e-5


def test_mapping_by_name_and_refusals():
    from backsplit.training.headinit import class_mapping

    # two targets, binary model's order differs from the new one's
    source, shifted = class_mapping({"background": 0, "b": 1, "a": 2}, {"background": 0, "a": 1, "b": 2, "s": 3},
                                    ("a", "b"))
    assert source == [0, 2, 1, 0] and shifted == [True, False, False, True]
    with pytest.raises(ValueError, match="not a target"):
        class_mapping({"background": 0, "Lesion": 1, "kidney": 2}, LABELS, TARGETS)
    with pytest.raises(ValueError, match="predicts cyst, which is not a target"):
        class_mapping({"background": 0, "cyst": 1}, LABELS, ("Lesion",))
    with pytest.raises(ValueError, match="no class 'b'"):
        class_mapping({"background": 0, "a": 1}, {"background": 0, "a": 1, "b": 2}, ("a", "b"))


def test_other_architecture_refused(planned):
    from backsplit.training.headinit import transfer_all

    binary = build_network(planned["plans"], "3d_fullres", 2)
    new = build_network(planned["plans"], "2d", 4)
    with pytest.raises(ValueError):
        transfer_all(new, binary.state_dict(), BINARY_LABELS, LABELS, TARGETS)
