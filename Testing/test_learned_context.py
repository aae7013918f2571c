"""Learned context (CoLab): options, label aggregation, distance mask in mm, losses and the meta-gradient (no
training here; see test_learned_context_training.py)."""

from __future__ import annotations

import math

import pytest

from backsplit.errors import InputError
from backsplit.training.colab.spec import LearnedContextSpec, extend_dataset_json, parse_context


def test_context_option_parses_and_round_trips():
    assert parse_context("none") is None and parse_context("") is None
    assert parse_context("learned") == LearnedContextSpec()
    spec = parse_context("learned:4,m=30,tau=20,k=3,w=1,meta=exact,lr=1e-3")
    assert (spec.classes, spec.margin_mm, spec.temperature_mm, spec.update_every) == (4, 30.0, 20.0, 3)
    assert (spec.generator_width, spec.meta_method, spec.generator_lr) == (1.0, "exact", 1e-3)
    assert parse_context(spec.to_option()) == spec
    # the defaults are the paper's m = 30, tau = 20 voxels at KiTS' 1.6 mm in-plane spacing
    assert LearnedContextSpec().margin_mm == pytest.approx(30 * 1.6)
    assert LearnedContextSpec().temperature_mm == pytest.approx(20 * 1.6)
    for bad in ("rings", "learned:0", "learned:2,m=-1", "learned:x", "learned:2,foo=1", "learned:2,meta=svd"):
        with pytest.raises(InputError):
            parse_context(bad)
    for bad, words in (("learned:2,w=0", "w=0 is out of range; w must be from 0.05 to 2"),
                       ("learned:2,lr=2", "lr=2 is out of range; lr must be between 0 and 1")):
        with pytest.raises(InputError, match=words):   # the value received and what is allowed
            parse_context(bad)


def test_trainer_name_is_known_without_torch():
    from backsplit.training.colab.spec import LEARNED_TRAINER, trainer_name

    assert trainer_name("learned:3") == LEARNED_TRAINER and trainer_name("none") == "BackSplitTrainer"
    from backsplit.training.colab.trainer import BackSplitLearnedContextTrainer

    assert BackSplitLearnedContextTrainer.__name__ == LEARNED_TRAINER


def test_train_options_check_the_context(tmp_path):
    from backsplit.training.options import TrainOptions

    TrainOptions(tmp_path, tmp_path, context="learned:3").validate()
    with pytest.raises(InputError, match="learned"):
        TrainOptions(tmp_path, tmp_path, context="learnt").validate()


def test_command_line_passes_the_context():
    import argparse

    from backsplit.commands import train

    parser = argparse.ArgumentParser()
    train.register(parser.add_subparsers())
    args = parser.parse_args(["train", "Dataset001_X", "--work-dir", "w", "--context", "learned:3,k=2"])
    assert train.options_from_args(args).context == "learned:3,k=2"
    assert train.options_from_args(parser.parse_args(["train", "D", "--work-dir", "w"])).context == "none"


def test_dataset_json_gets_context_classes_as_supports():
    meta = {"labels": {"background": 0, "Lesion": 1, "Organ": 2}, "channel_names": {"0": "CT"},
            "backsplit": {"variant": "backsplit", "schema": {
                "targets": [{"name": "Lesion", "value": 1, "role": "target", "color": [1, 0, 0]}],
                "supports": [{"name": "Organ", "value": 2, "role": "support", "color": [0, 1, 0]}]}}}
    extended = extend_dataset_json(meta, LearnedContextSpec(classes=2))
    assert extended["labels"] == {"background": 0, "Lesion": 1, "Organ": 2, "learned context 1 of 2": 3,
                                  "learned context 2 of 2": 4}
    assert [s["name"] for s in extended["backsplit"]["schema"]["supports"]] == ["Organ", "learned context 1 of 2",
                                                                                "learned context 2 of 2"]
    assert extended["backsplit"]["learned_context"]["classes"] == 2 and meta["labels"]["Organ"] == 2  # no mutation
    plain = extend_dataset_json({"labels": {"background": 0, "tumor": 1}}, LearnedContextSpec(classes=1))
    assert [t["name"] for t in plain["backsplit"]["schema"]["targets"]] == ["tumor"]
    from backsplit.labels.schema import LabelSchema

    schema = LabelSchema.from_json(extended["backsplit"]["schema"])
    assert len(schema.classes) + 1 == len(extended["labels"])       # what the predictor checks
    with pytest.raises(InputError, match="ignore"):
        extend_dataset_json({"labels": {"background": 0, "tumor": 1, "ignore": 2}}, LearnedContextSpec())


def test_distance_mask_in_millimetres():
    """One target voxel at (row 2, column 1); rows are 2 mm apart, columns 0.5 mm (values known by hand)."""
    import torch

    from backsplit.training.colab.aggregation import distance_to_targets_mm, soft_dilated_mask

    labels = torch.zeros(2, 1, 5, 7)
    labels[0, 0, 2, 1] = 1
    labels[0, 0, 0, 6] = 2                          # a support voxel: not a target, no distance 0 there
    d = distance_to_targets_mm(labels, 1, (2.0, 0.5))
    assert d.shape == (2, 1, 5, 7)
    assert d[0, 0, 2, 1] == 0 and d[0, 0, 2, 5] == pytest.approx(2.0) and d[0, 0, 4, 1] == pytest.approx(4.0)
    assert d[0, 0, 0, 6] == pytest.approx(math.hypot(4.0, 2.5))
    assert torch.isinf(d[1]).all()                 # no target in the patch: all far background
    mask = soft_dilated_mask(d, 3.0, 2.0)           # Eq. 8 with m = 3 mm, tau = 2 mm
    assert mask[0, 0, 2, 5] == 1.0 and mask[0, 0, 2, 1] == 1.0
    assert mask[0, 0, 4, 1] == pytest.approx(math.exp(-0.5))
    assert mask[0, 0, 0, 6] == pytest.approx(math.exp((3.0 - math.hypot(4.0, 2.5)) / 2.0))
    assert (mask[1] == 0).all()


def test_aggregation_follows_eq_5_to_9():
    import torch

    from backsplit.training.colab.aggregation import (
        distance_constrained_labels,
        extended_soft_labels,
        multiscale_soft_targets,
    )

    labels = torch.tensor([[[[0.0, 1.0, 2.0, 0.0]]]])                 # (b=1, 1, 1, 4): bg, target, support, bg
    q = torch.tensor([[[[0.7, 0.7, 0.7, 0.2]], [[0.3, 0.3, 0.3, 0.8]]]])   # t = 2
    ext = extended_soft_labels(labels, q, n_fixed=2)                # channels: far bg, target, support, c1, c2
    expected = [[0, 0, 0, 0.7, 0.3], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0.2, 0.8]]
    assert torch.allclose(ext[0, :, 0].T, torch.tensor(expected))
    mask = torch.tensor([[[[1.0, 1.0, 0.25, 0.5]]]])
    hat = distance_constrained_labels(ext, mask, n_fixed=2)
    expected = [[0, 0, 0, 0.7, 0.3], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0.5, 0, 0, 0.1, 0.4]]
    assert torch.allclose(hat[0, :, 0].T, torch.tensor(expected))   # the support keeps its label far away
    assert torch.allclose(hat.sum(1), torch.ones(1, 1, 4))
    # deep supervision: q and the mask averaged to each resolution, aggregated with that resolution's labels
    full = torch.zeros(1, 1, 4, 4)
    full[0, 0, :2, :2] = 1
    low = full[:, :, ::2, ::2]
    q = torch.softmax(torch.randn(1, 2, 4, 4), 1)
    out = multiscale_soft_targets([full, low], q, 1, torch.ones(1, 1, 4, 4))
    assert [tuple(o.shape) for o in out] == [(1, 4, 4, 4), (1, 4, 2, 2)]
    assert torch.allclose(out[1][0, 2:, 1, 1], q[0, :, 2:, 2:].mean((1, 2)))
    assert out[1][0, 1, 0, 0] == 1 and torch.allclose(out[1].sum(1), torch.ones(1, 2, 2))


def test_soft_dc_ce_equals_nnunet_loss_on_one_hot_targets():
    import torch
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    from backsplit.training.colab.losses import soft_dc_ce

    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6, 5)
    labels = torch.randint(0, 4, (2, 1, 6, 5)).float()
    onehot = torch.zeros_like(logits).scatter_(1, labels.long(), 1.0)
    for batch_dice in (False, True):
        nnunet = DC_and_CE_loss({"batch_dice": batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                                weight_ce=1, weight_dice=1, ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)
        assert float(soft_dc_ce(logits, onehot, batch_dice)) == pytest.approx(float(nnunet(logits, labels)), abs=1e-5)


def test_roi_loss_is_one_versus_all_bce_of_the_target_channel():
    import torch

    from backsplit.training.colab.losses import roi_loss

    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]], [[1.0, 0.0]]]])    # 3 channels, 2 voxels
    labels = torch.tensor([[[[1.0, 0.0]]]])
    p = torch.softmax(logits, 1)[0, 1, 0]                                  # P(target) per voxel
    expected = -(math.log(p[0]) + math.log(1 - p[1])) / 2
    assert float(roi_loss([logits], labels, 1)) == pytest.approx(expected, rel=1e-6)


def _tiny_meta_problem():
    """A two-layer segmentation net (1 target, t = 2: 4 outputs) and a one-layer generator, in float64."""
    import torch

    from backsplit.training.colab import aggregation, losses
    from backsplit.training.colab.functional import functional_forward
    from backsplit.training.colab.meta import MetaProblem

    torch.manual_seed(0)
    dt = torch.float64
    seg = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.InstanceNorm2d(4, affine=True),
                              torch.nn.LeakyReLU(0.01), torch.nn.Conv2d(4, 4, 1)).to(dt)
    gen = torch.nn.Conv2d(1, 2, 3, padding=1).to(dt)
    x = torch.randn(2, 1, 8, 8, dtype=dt)
    labels = torch.zeros(2, 1, 8, 8, dtype=dt)
    labels[0, 0, 2:4, 2:5] = 1
    labels[1, 0, 5:7, 4:6] = 1
    mask = aggregation.context_mask(labels, 1, (1.0, 1.0), 2.0, 2.0).to(dt)
    params = {k: v.detach().clone().requires_grad_(True) for k, v in seg.named_parameters()}

    def targets():
        return [aggregation.soft_targets(labels, torch.softmax(gen(x), 1), 1, mask)]

    problem = MetaProblem(lambda p: functional_forward(seg, p, x), params,
                          lambda out, t: losses.segmentation_loss(out, t, False),
                          lambda out: losses.roi_loss(out, labels, 1), targets, list(gen.parameters()), 0.5)
    return problem, seg, gen


def test_meta_gradient_equals_finite_difference_estimate():
    """grad_omega L_ROI(theta - alpha grad_theta L_seg(theta, omega)) against central differences in omega (h=1e-5,
    float64). Bounds: relative error < 1e-6 for the exact second-order gradient (measured 5e-9) and < 1e-4 for the
    finite-difference Hessian-vector product at its default radius 0.001 (measured 8e-8; 8e-6 at DARTS' 0.01)."""
    import torch

    from backsplit.training.colab.meta import meta_gradient_exact, meta_gradient_fd

    problem, seg, gen = _tiny_meta_problem()
    exact = torch.cat([g.reshape(-1) for g in meta_gradient_exact(problem).generator_grads])
    fd = torch.cat([g.reshape(-1) for g in meta_gradient_fd(problem).generator_grads])
    omega = torch.nn.utils.parameters_to_vector(problem.generator_params).detach().clone()

    def outer(vector):
        torch.nn.utils.vector_to_parameters(vector, problem.generator_params)
        with torch.no_grad():
            targets = problem.targets()
        leaves = {k: v.detach().clone().requires_grad_(True) for k, v in problem.params.items()}
        loss = problem.seg_loss(problem.forward(leaves), targets)
        grads = torch.autograd.grad(loss, list(leaves.values()))
        virtual = {k: v - problem.step_size * g for (k, v), g in zip(leaves.items(), grads)}
        with torch.no_grad():
            return float(problem.roi_loss(problem.forward(virtual)))

    h = 1e-5
    numeric = torch.zeros_like(omega)
    for i in range(omega.numel()):
        step = torch.zeros_like(omega)
        step[i] = h
        numeric[i] = (outer(omega + step) - outer(omega - step)) / (2 * h)
    torch.nn.utils.vector_to_parameters(omega, problem.generator_params)
    assert float(numeric.norm()) > 1e-4                               # a real signal, not two zeros
    assert float((exact - numeric).norm() / numeric.norm()) < 1e-6
    assert float((fd - numeric).norm() / numeric.norm()) < 1e-4


def test_fd_meta_gradient_reuses_the_real_step_and_is_scale_free():
    import torch

    from backsplit.training.colab.meta import meta_gradient_fd

    problem, _, _ = _tiny_meta_problem()
    targets = problem.targets()
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in problem.params.items()}
    loss = problem.seg_loss(problem.forward(leaves), [t.detach() for t in targets])
    grads = dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))
    own = meta_gradient_fd(problem).generator_grads
    before = {k: g.clone() for k, g in grads.items()}
    params_before = {k: v.detach().clone() for k, v in problem.params.items()}
    reused = meta_gradient_fd(problem, seg_grads=grads, targets=targets, roi_scale=4096.0).generator_grads
    for a, b in zip(own, reused):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-12)
    # the trainer passes the real step's .grad tensors without copying them: the meta step must leave them (and theta)
    # exactly as they were, for the segmentation step that follows
    assert all(torch.equal(grads[k], before[k]) for k in grads)
    assert all(torch.equal(problem.params[k].detach(), params_before[k]) for k in params_before)


def test_generator_is_a_lighter_copy_of_the_planned_network():
    from backsplit.training.colab.generator import generator_arch_kwargs

    kwargs = {"n_stages": 4, "features_per_stage": [32, 64, 128, 256], "conv_op": "Conv2d"}
    assert generator_arch_kwargs(kwargs, 0.5)["features_per_stage"] == [16, 32, 64, 128]
    assert generator_arch_kwargs(kwargs, 0.1)["features_per_stage"] == [4, 6, 13, 26]
    assert kwargs["features_per_stage"] == [32, 64, 128, 256]


def test_functional_forward_restores_nnunets_unet():
    """nnU-Net's PlainConvUNet reaches its encoder twice (encoder.*, decoder.encoder.*): torch.func.functional_call
    left the encoder's parameters replaced after the call (torch 2.14.1); functional_forward must not."""
    import copy

    import torch
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    from backsplit.training.colab.functional import functional_forward

    torch.manual_seed(0)
    net = PlainConvUNet(1, 3, [4, 8, 16], torch.nn.Conv2d, 3, [1, 2, 2], 1, 4, 1, True, torch.nn.InstanceNorm2d,
                        {"eps": 1e-5, "affine": True}, None, None, torch.nn.LeakyReLU, {"inplace": True},
                        deep_supervision=True)
    before = dict(net.named_parameters())
    x = torch.randn(2, 1, 16, 16)
    reference = net(x)[0].detach()
    halved = {n: (p.detach() * 0.5).requires_grad_(True) for n, p in before.items()}
    out = functional_forward(net, halved, x)
    assert all(p is before[n] for n, p in net.named_parameters())            # the module is unchanged
    assert torch.allclose(net(x)[0], reference)
    twin = copy.deepcopy(net)
    twin.load_state_dict({k: v * 0.5 for k, v in net.state_dict().items()})
    assert torch.allclose(out[0], twin(x)[0], atol=1e-6)                     # and computed with the given values
    grads = torch.autograd.grad(out[0].sum(), [halved[n] for n in before], allow_unused=True)
    assert all(g is not None for g in grads[:4])                            # the encoder's values get gradients
