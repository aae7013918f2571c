"""Losses of the learned context trainer: soft-target DC+CE (``L_seg``) and the ROI objective (``L_ROI``, Eq. 12).

``soft_dc_ce`` is nnU-Net's ``DC_and_CE_loss`` (CE weight 1, Dice weight 1, Dice without background, smooth 1e-5,
batch Dice as planned; nnU-Net's ``MemoryEfficientSoftDiceLoss`` + ``RobustCrossEntropyLoss``) written for soft
targets: CE is ``-sum_c y_c log p_c`` averaged over voxels, and the Dice sums use the soft label ``y`` *with*
gradient (nnU-Net computes its ground-truth sums under ``no_grad``, which would cut the path to the generator). On
one-hot targets the two agree (tested). Logits are cast to float32 for the losses (mixed precision on GPU).
"""

from __future__ import annotations

from typing import Sequence


def soft_dc_ce(logits, target, batch_dice: bool, smooth: float = 1e-5):
    """CE + (negative) soft Dice of one output. logits, target: (b, C, *spatial); target sums to 1 over C."""
    import torch

    logits = _at_least_float32(logits)
    target = target.to(logits.dtype)
    log_p = torch.log_softmax(logits, 1)
    ce = -(target * log_p).sum(1).mean()
    p = log_p.exp()[:, 1:]
    y = target[:, 1:]
    axes = tuple(range(2, logits.ndim))
    intersect, sum_pred, sum_gt = (p * y).sum(axes), p.sum(axes), y.sum(axes)
    if batch_dice:
        intersect, sum_pred, sum_gt = intersect.sum(0), sum_pred.sum(0), sum_gt.sum(0)
    dc = (2 * intersect + smooth) / (sum_gt + sum_pred + smooth).clamp_min(1e-8)
    return ce - dc.mean()


def _at_least_float32(tensor):
    import torch

    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def deep_supervision_weights(n_outputs: int) -> list[float]:
    """nnU-Net's weights: 1/2^i per resolution, the lowest resolution 0, normalised to sum to 1 (one output: [1])."""
    if n_outputs <= 1:
        return [1.0]
    weights = [1.0 / 2 ** i for i in range(n_outputs)]
    weights[-1] = 0.0
    total = sum(weights)
    return [w / total for w in weights]


def segmentation_loss(outputs, targets: Sequence, batch_dice: bool):
    """``L_seg``: deep-supervised soft DC+CE. outputs: a tensor or nnU-Net's list (full resolution first);
    targets: list of soft labels at the same resolutions (``aggregation.multiscale_soft_targets``)."""
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    weights = deep_supervision_weights(len(outputs))
    return sum(w * soft_dc_ce(o, t, batch_dice) for w, o, t in zip(weights, outputs, targets) if w != 0.0)


def roi_loss(outputs, labels, n_targets: int):
    """``L_ROI`` (Eq. 10-12): one-versus-all binary cross-entropy of each target channel, full resolution only.

    outputs: logits (b, C, *spatial) or nnU-Net's list (the first is used); labels: (b, 1, *spatial) hard labels
    (targets 1..n_targets). ``p_j`` is the softmax probability of target j against all other channels (context and
    supports included), as the paper's ``L_c`` (BCE); computed from log-sum-exps for stability. Mean over targets and
    voxels.
    """
    import torch

    logits = _at_least_float32(outputs[0] if isinstance(outputs, (list, tuple)) else outputs)
    hard = labels.round().long()
    if hard.ndim == logits.ndim - 1:
        hard = hard[:, None]
    total = torch.logsumexp(logits, 1, keepdim=True)
    loss = 0.0
    for j in range(1, n_targets + 1):
        others = torch.cat([logits[:, :j], logits[:, j + 1:]], 1)
        log_p = logits[:, j:j + 1] - total
        log_not_p = torch.logsumexp(others, 1, keepdim=True) - total
        y = (hard == j).to(logits.dtype)
        loss = loss - (y * log_p + (1 - y) * log_not_p).mean()
    return loss / n_targets
