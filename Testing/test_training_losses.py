"""Lesion-vs-rest loss, class-weighted Dice and the support schedule on hand-made batches, against nnU-Net's own
DC_and_CE_loss (2.8.1)."""

from __future__ import annotations

import math

import pytest

T, S = 1, 2                    # one target (label 1), two supports (labels 2, 3)


def _batch(seed=0, shape=(2, 1, 6, 7), ignore=None):
    """A label map (b, 1, y, x) with every class present, and random logits (b, 1+T+S, y, x)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 1 + T + S, shape, generator=g).float()
    y[0, 0, 0, :4] = torch.tensor([0.0, 1.0, 2.0, 3.0])
    if ignore is not None:
        y[1, 0, 2, :3] = ignore
    z = torch.randn(shape[0], 1 + T + S, *shape[2:], generator=g, dtype=torch.float64)
    return z, y


def _binary_labels(y):
    return torch_where(y > T, 0, y)


def torch_where(cond, a, b):
    import torch

    return torch.where(cond, torch.as_tensor(a, dtype=b.dtype), b)


def test_merge_rest_is_the_summed_softmax():
    import torch

    from backsplit.training.losses import merge_rest

    z, _ = _batch()
    p, q = torch.softmax(z, 1), torch.softmax(merge_rest(z, T), 1)
    assert torch.allclose(q[:, 0], p[:, 0] + p[:, 2] + p[:, 3], atol=1e-12)
    assert torch.allclose(q[:, 1], p[:, 1], atol=1e-12)


@pytest.mark.parametrize("batch_dice", [True, False])
def test_lesion_vs_rest_is_binary_training_when_supports_are_merged(batch_dice):
    """Function-preserving logits of a binary output b: the lesion-vs-rest loss and its gradient w.r.t. b equal
    binary training's (nnU-Net's DC_and_CE on the binary twin's labels)."""
    import torch

    from backsplit.training.losses import BackSplitLoss, nnunet_dc_ce

    z0, y = _batch(1)
    b = z0[:, :2].clone().requires_grad_(True)
    shift = math.log(S + 1)
    z = torch.stack([b[:, 0] - shift, b[:, 1], b[:, 0] - shift, b[:, 0] - shift], 1)
    ours = BackSplitLoss(T, batch_dice, w_multi=0.0, w_lvr=1.0)(z, y)
    g_ours, = torch.autograd.grad(ours, b)
    b2 = b.detach().clone().requires_grad_(True)
    binary = nnunet_dc_ce(batch_dice)(b2, _binary_labels(y))
    g_bin, = torch.autograd.grad(binary, b2)
    assert float(ours) == pytest.approx(float(binary), abs=1e-10)
    assert torch.allclose(g_ours, g_bin, atol=1e-10)


def test_lesion_vs_rest_gradient_on_any_logits():
    """On arbitrary logits the target channel gets binary training's gradient, and the rest channels share the
    binary background gradient (chain rule through the log-sum-exp: their gradients sum to it)."""
    import torch

    from backsplit.training.losses import BackSplitLoss, merge_rest, nnunet_dc_ce

    z, y = _batch(2)
    z.requires_grad_(True)
    ours = BackSplitLoss(T, True, w_multi=0.0, w_lvr=1.0)(z, y)
    g, = torch.autograd.grad(ours, z)
    b = merge_rest(z.detach(), T).requires_grad_(True)
    binary = nnunet_dc_ce(True)(b, _binary_labels(y))
    gb, = torch.autograd.grad(binary, b)
    assert float(ours) == pytest.approx(float(binary), abs=1e-10)
    assert torch.allclose(g[:, 1], gb[:, 1], atol=1e-10)
    assert torch.allclose(g[:, [0, 2, 3]].sum(1), gb[:, 0], atol=1e-10)


def test_plain_weights_are_nnunets_loss_and_sum_is_linear():
    import torch

    from backsplit.training.losses import BackSplitLoss, merge_rest, nnunet_dc_ce

    z, y = _batch(3)
    stock = nnunet_dc_ce(True)(z, y)
    assert float(BackSplitLoss(T, True, w_multi=1.0, w_lvr=0.0)(z, y)) == pytest.approx(float(stock), abs=1e-12)
    both = BackSplitLoss(T, True, w_multi=0.7, w_lvr=0.4)(z, y)
    expected = 0.7 * stock + 0.4 * nnunet_dc_ce(True)(merge_rest(z, T), _binary_labels(y))
    assert float(both) == pytest.approx(float(expected), abs=1e-10)
    assert torch.isfinite(both)


def test_ignore_label_maps_to_the_binary_ignore_label():
    import torch

    from backsplit.training.losses import BackSplitLoss, merge_labels, merge_rest, nnunet_dc_ce

    ignore = 1 + T + S
    z, y = _batch(4, ignore=ignore)
    merged = merge_labels(y, T, ignore)
    assert set(torch.unique(merged).tolist()) == {0.0, 1.0, 2.0}
    ours = BackSplitLoss(T, False, ignore_label=ignore, w_multi=0.0, w_lvr=1.0)(z, y)
    assert float(ours) == pytest.approx(float(nnunet_dc_ce(False, T + 1)(merge_rest(z, T), merged)), abs=1e-10)


def test_deep_supervision_wrapper_as_nnunet():
    import torch

    from backsplit.training.losses import BackSplitLoss, deep_supervision_weights, wrap_deep_supervision

    assert deep_supervision_weights(3) == pytest.approx([4 / 6, 2 / 6, 0.0])
    (z1, y1), (z2, y2) = _batch(5), _batch(6, shape=(2, 1, 3, 4))
    inner = BackSplitLoss(T, True, w_multi=1.0, w_lvr=0.5)
    wrapped = wrap_deep_supervision(inner, 3)
    z3, y3 = _batch(7, shape=(2, 1, 2, 4))
    total = wrapped([z1, z2, z3], [y1, y2, y3])
    assert float(total) == pytest.approx(float(4 / 6 * inner(z1, y1) + 2 / 6 * inner(z2, y2)), abs=1e-10)
    inner.w_multi = 0.0                                        # the schedule changes weights in place
    assert float(wrapped([z1, z2, z3], [y1, y2, y3])) != pytest.approx(float(total))
    assert torch.is_tensor(total)


@pytest.mark.parametrize("batch_dice", [True, False])
def test_weighted_dice_uniform_equals_nnunet_and_capped_is_the_weighted_mean(batch_dice):
    import torch
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
    from nnunetv2.utilities.helpers import softmax_helper_dim1

    from backsplit.training.losses import capped_support_weights, weighted_dice_class

    z, y = _batch(8)
    z = z.float()
    stock = MemoryEfficientSoftDiceLoss(softmax_helper_dim1, batch_dice, False, 1e-5, False)(z, y)
    uniform = weighted_dice_class([1.0, 1.0, 1.0])(softmax_helper_dim1, batch_dice, False, 1e-5, False)(z, y)
    assert float(uniform) == pytest.approx(float(stock), abs=1e-6)
    weights = capped_support_weights(T, S, 0.5)
    assert weights == [1.0, 0.5, 0.5]
    per_class = [float(MemoryEfficientSoftDiceLoss(None, batch_dice, True, 1e-5, False)(
        torch.softmax(z, 1)[:, [c]], (y == c).float())) for c in (1, 2, 3)]
    capped = weighted_dice_class(weights)(softmax_helper_dim1, batch_dice, False, 1e-5, False)(z, y)
    assert float(capped) == pytest.approx((per_class[0] + 0.5 * per_class[1] + 0.5 * per_class[2]) / 2, abs=1e-6)


def test_capped_support_weights():
    from backsplit.training.losses import capped_support_weights

    assert capped_support_weights(1, 9, 0.5) == pytest.approx([1.0] + [1 / 9] * 9)
    assert capped_support_weights(2, 1, 0.5) == [1.0, 1.0, 1.0]          # already below the cap
    with pytest.raises(ValueError):
        capped_support_weights(1, 2, 1.0)


def test_schedule_starts_as_binary_training_and_ramps_in_the_supports():
    from backsplit.training.losses import BackSplitLoss, merge_rest, nnunet_dc_ce
    from backsplit.training.schedule import LossSchedule, parse_schedule

    ramp = parse_schedule("ramp:200,lvr=0.5")
    assert ramp == LossSchedule(lvr=0.5, ramp=200)
    assert ramp.weights(0) == (0.0, 1.5)
    assert ramp.weights(100) == (0.5, 1.0)
    assert ramp.weights(200) == ramp.weights(10_000) == (1.0, 0.5)
    assert parse_schedule("ramp:100,delay=50").weights(75) == (0.25, 0.75)
    assert parse_schedule("plain").weights(0) == (1.0, 0.0) and parse_schedule(None).is_plain
    assert parse_schedule("lvr:1").weights(0) == (1.0, 1.0)
    z, y = _batch(9)
    loss = BackSplitLoss(T, True)
    loss.w_multi, loss.w_lvr = parse_schedule("ramp:200").weights(0)
    binary = nnunet_dc_ce(True)(merge_rest(z, T), _binary_labels(y))
    assert float(loss(z, y)) == pytest.approx(float(binary), abs=1e-10)


@pytest.mark.parametrize("text", ["plain", "lvr:0.5", "ramp:200", "ramp:200,delay=40,lvr=1,cap=0.5", "cap:0.3",
                                  "cap:0.3,lvr=1"])
def test_schedule_text_round_trip(text):
    from backsplit.training.schedule import parse_schedule

    assert parse_schedule(text).to_option() == text
    assert parse_schedule(parse_schedule(text).to_option()) == parse_schedule(text)


@pytest.mark.parametrize("text", ["fast", "ramp:x", "ramp:10,foo=1", "plain,lvr=1", "cap:1.5", "lvr:-1",
                                  "cap:0.5,delay=3", "ramp:10,lvr=1,lvr=2"])
def test_schedule_refusals_name_the_forms(text):
    from backsplit.training.schedule import parse_schedule

    with pytest.raises(ValueError, match="support schedule"):
        parse_schedule(text)
