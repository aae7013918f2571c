"""Separate support head: forward, labels, loss, and the export that plain nnU-Net runs (real network from
nnU-Net's plans, nnU-Net's own predictor)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures_dynamics import BINARY_LABELS, build_network

T, S = 1, 2


def _two_head(planned, deep_supervision=True):
    from backsplit.training.supporthead import attach_support_head

    return attach_support_head(build_network(planned["plans"], "2d", 1 + T, deep_supervision), 1 + S)


def _labels(shape):
    import torch

    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 1 + T + S, shape, generator=g).float()


def test_forward_gives_both_heads_and_plain_forward_only_the_lesion(planned):
    import torch

    from backsplit.training.supporthead import forward_both, n_supports_of

    net = _two_head(planned)
    patch = planned["plans"]["configurations"]["2d"]["patch_size"]
    x = torch.randn(2, 1, *patch)
    lesion, support = forward_both(net, x)
    assert len(lesion) == len(support) > 1 and n_supports_of(net) == S
    for lo, so in zip(lesion, support):
        assert lo.shape[1] == 1 + T and so.shape[1] == 1 + S and lo.shape[2:] == so.shape[2:]
    plain = net(x)
    assert all(torch.equal(a, b) for a, b in zip(plain, lesion))
    assert net.decoder.support_outputs == []                       # nothing computed or kept outside training


def test_label_maps():
    import torch

    from backsplit.training.supporthead import lesion_labels, support_labels

    y = torch.tensor([[[0.0, 1.0, 2.0, 3.0]]])
    assert lesion_labels(y, T).tolist() == [[[0, 1, 0, 0]]]
    assert support_labels(y, T, S).tolist() == [[[0, 3, 1, 2]]]     # lesion -> ignore (1 + S)


def test_loss_gradients_and_binary_equivalence(planned):
    import torch

    from backsplit.training.losses import deep_supervision_weights, nnunet_dc_ce
    from backsplit.training.supporthead import SupportHeadLoss, forward_both, lesion_labels

    net = _two_head(planned)
    patch = planned["plans"]["configurations"]["2d"]["patch_size"]
    x = torch.randn(2, 1, *patch)
    lesion, support = forward_both(net, x)
    targets = [_labels((2, 1, *o.shape[2:])) for o in lesion]
    loss = SupportHeadLoss(T, S, True, len(lesion), w_support=1.0)(lesion, support, targets)
    loss.backward()
    assert net.decoder.support_layers[-1].weight.grad.abs().sum() > 0   # full resolution (stages: lowest first)
    assert net.decoder.seg_layers[-1].weight.grad.abs().sum() > 0
    with torch.no_grad():
        lesion_only = SupportHeadLoss(T, S, True, len(lesion), w_support=0.0)(lesion, support, targets)
        weights = deep_supervision_weights(len(lesion))
        binary = sum(w * nnunet_dc_ce(True)(o, lesion_labels(t, T)) for w, o, t in zip(weights, lesion, targets)
                     if w)
    assert float(lesion_only) == pytest.approx(float(binary), abs=1e-7)


def _train_a_little(net, planned, steps=3):
    import torch

    from backsplit.training.supporthead import SupportHeadLoss, forward_both

    patch = planned["plans"]["configurations"]["2d"]["patch_size"]
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(2, 1, *patch, generator=g)
        lesion, support = forward_both(net, x)
        lesion = lesion if isinstance(lesion, list) else [lesion]
        support = support if isinstance(support, list) else [support]
        targets = [_labels((2, 1, *o.shape[2:])) for o in lesion]
        opt.zero_grad()
        SupportHeadLoss(T, S, True, len(lesion))(lesion, support, targets).backward()
        opt.step()
    return net


def test_exported_lesion_head_loads_strictly_into_the_stock_network(planned):
    import torch

    from backsplit.training.supporthead import attach_support_head, export_state, forward_both, load_support_state

    net = _train_a_little(_two_head(planned), planned).eval()
    lesion_state, support_state = export_state(net.state_dict())
    stock = build_network(planned["plans"], "2d", 1 + T, deep_supervision=False).eval()
    stock.load_state_dict(lesion_state, strict=True)                # the network inference builds from the plans
    net.decoder.deep_supervision = False
    x = torch.randn(3, 1, *planned["plans"]["configurations"]["2d"]["patch_size"])
    with torch.no_grad():
        trained, exported = net(x), stock(x)
    assert torch.equal(trained.argmax(1), exported.argmax(1)) and torch.allclose(trained, exported, atol=1e-6)
    again = attach_support_head(build_network(planned["plans"], "2d", 1 + T, False), 1 + S).eval()
    again.load_state_dict(lesion_state, strict=False)
    load_support_state(again, {"weights": support_state})
    with torch.no_grad():
        assert torch.allclose(forward_both(net, x)[1], forward_both(again, x)[1], atol=1e-6)


def test_plain_nnunet_predictor_predicts_the_same_lesion_labels(planned, tmp_path):
    """Export to a model folder, load it with nnU-Net's own ``initialize_from_trained_model_folder`` (trainer looked
    up by name: the stock nnUNetTrainer) and predict a raw image; the trained two-head network through nnU-Net's
    predictor gives the same labels."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from backsplit.training.supporthead import SIDE_FILE, export_checkpoint, lesion_dataset_json

    net = _train_a_little(_two_head(planned, deep_supervision=False), planned, steps=4).eval()
    checkpoint = {"network_weights": net.state_dict(), "trainer_name": "BackSplitTrainer",
                  "init_args": {"plans": planned["plans"], "configuration": "2d", "fold": 0,
                                "dataset_json": planned["dataset_json"]},
                  "current_epoch": 1, "inference_allowed_mirroring_axes": (0, 1)}
    ds_json = lesion_dataset_json(planned["dataset_json"], T)
    assert ds_json["labels"] == BINARY_LABELS
    plain, side = export_checkpoint(checkpoint, ds_json)
    (tmp_path / "fold_0").mkdir()
    torch.save(plain, tmp_path / "fold_0" / "checkpoint_final.pth")
    torch.save(side, tmp_path / "fold_0" / SIDE_FILE)
    (tmp_path / "dataset.json").write_text(json.dumps(ds_json))
    (tmp_path / "plans.json").write_text(json.dumps(planned["plans"]))

    def predictor():
        return nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                               perform_everything_on_device=False, device=torch.device("cpu"), verbose=False,
                               verbose_preprocessing=False, allow_tqdm=False)

    exported = predictor()
    exported.initialize_from_trained_model_folder(str(tmp_path), (0,), "checkpoint_final.pth")
    trained = predictor()
    plans = PlansManager(planned["plans"])
    trained.manual_initialization(net, plans, plans.get_configuration("2d"), [net.state_dict()], ds_json,
                                  "BackSplitTrainer", (0, 1))
    image = np.random.default_rng(11).normal(40, 30, (16, 32, 32)).astype(np.float32)   # (z, y, x)
    props = {"spacing": [2.0, 1.0, 1.0]}
    a = exported.predict_single_npy_array(image[None].astype(np.float32), props, None, None, False)
    b = trained.predict_single_npy_array(image[None].astype(np.float32), props, None, None, False)
    assert a.shape == image.shape and np.array_equal(a, b)
