"""BackSplit training losses that keep the target's binary gradient from the first step: the paper's multi-class loss
plus a weighted lesion-vs-rest term, and a Dice term with a capped share for the supports.

Shapes and axis order: logits ``(b, C, *spatial)`` with ``C = 1 + T + S`` (background, T targets, S supports, the
export's label order); targets ``(b, 1, *spatial)`` label maps (nnU-Net's layout), optionally with nnU-Net's ignore
label ``C`` (the highest value).

* ``merge_rest``: the binary model's view of the same softmax: ``[log(P_bg + sum_s P_s), log P_t...]`` as logits
  ``(b, 1 + T, *spatial)``; softmax of it is exactly ``[P_bg + sum_s P_s, P_1, ..., P_T]`` (log-sum-exp over the
  background and support logits).
* ``BackSplitLoss``: ``w_multi * DC_CE_{1+T+S}(z, y) + w_lvr * DC_CE_{1+T}(merge_rest(z), merge_labels(y))`` with
  nnU-Net's own ``DC_and_CE_loss`` (CE + soft Dice without background, smooth 1e-5, batch Dice as planned;
  ``nnunetv2/training/loss/compound_losses.py``) for both terms, at one resolution. The lesion-vs-rest term is binary
  training's loss evaluated on the multi-class softmax: with ``w_multi = 0, w_lvr = 1`` training *is* binary
  training (same loss, same gradient through the merged logits; tested).
* ``weighted_dice_class`` with ``capped_support_weights``: per-class Dice weights so that the S supports hold at
  most ``cap`` of the Dice term (uniform weights give them ``S / (T + S)``).
* ``wrap_deep_supervision``: nnU-Net's ``DeepSupervisionWrapper`` with nnU-Net's weights (1/2^i, last 0, sum 1).

The weights are plain attributes, set by ``schedule.LossSchedule`` at every training step; nothing is recompiled.
"""

from __future__ import annotations

from typing import Optional, Sequence


def merge_rest(logits, n_targets: int):
    """``(b, 1+T+S, ...)`` logits -> ``(b, 1+T, ...)``: channel 0 = logsumexp of background and support logits,
    channels 1..T the target logits unchanged. Exact: softmax(result) = [P_rest, P_targets] of softmax(logits)."""
    import torch

    rest = torch.cat([logits[:, :1], logits[:, 1 + n_targets:]], 1)
    return torch.cat([torch.logsumexp(rest, 1, keepdim=True), logits[:, 1:1 + n_targets]], 1)


def merge_labels(target, n_targets: int, ignore_label: Optional[int] = None):
    """Label map ``(b, 1, ...)`` with supports folded into background (the binary twin's labels); the ignore label
    (if any) becomes ``1 + T`` (the binary loss's ignore label)."""
    import torch

    merged = torch.where(target > n_targets, torch.zeros_like(target), target)
    if ignore_label is not None:
        merged = torch.where(target == ignore_label, torch.full_like(target, n_targets + 1), merged)
    return merged


def capped_support_weights(n_targets: int, n_supports: int, cap: float) -> list[float]:
    """Per-foreground-class Dice weights (targets first, then supports): targets 1, each support
    ``min(1, cap / (1 - cap) * T / S)``, so that the supports' share of the weights is at most ``cap``.
    ``cap`` in (0, 1); e.g. T=1, S=2, cap=0.5 -> [1, 0.5, 0.5] (uniform would give supports 2/3)."""
    if not 0 < cap < 1:
        raise ValueError(f"the supports' Dice share cap must be between 0 and 1, got {cap}")
    each = min(1.0, cap / (1.0 - cap) * n_targets / max(1, n_supports))
    return [1.0] * n_targets + [each] * n_supports


def weighted_dice_class(class_weights: Sequence[float]):
    """A class-weighted variant of nnU-Net's ``MemoryEfficientSoftDiceLoss`` for ``DC_and_CE_loss(dice_class=...)``:
    ``-sum_c w_c dc_c / sum_c w_c`` over the foreground classes (``class_weights``: one per foreground class, in label
    order) instead of ``-mean_c dc_c``. nnU-Net's own loss computes each group of equally weighted classes (same
    float32 sums, smooth, batch Dice and DDP gathering; ``nnunetv2/training/loss/dice.py``); the groups' means are
    combined by weight x size. With equal weights it equals nnU-Net's Dice (tested)."""
    import torch
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    weights = [float(w) for w in class_weights]
    groups = {w: [1 + i for i, v in enumerate(weights) if v == w] for w in sorted(set(weights)) if w > 0}
    total = sum(w * len(channels) for w, channels in groups.items())

    class WeightedDice(torch.nn.Module):
        def __init__(self, apply_nonlin=None, batch_dice=False, do_bg=False, smooth=1.0, ddp=True):
            super().__init__()
            if do_bg:
                raise ValueError("class-weighted Dice is defined over the foreground classes (do_bg False)")
            self.apply_nonlin = apply_nonlin
            self.base = MemoryEfficientSoftDiceLoss(None, batch_dice, True, smooth, ddp)

        def forward(self, x, y, loss_mask=None):
            if self.apply_nonlin is not None:
                x = self.apply_nonlin(x)
            with torch.no_grad():
                if x.ndim != y.ndim:
                    y = y.view((y.shape[0], 1, *y.shape[1:]))
                onehot = torch.zeros(x.shape, device=x.device, dtype=torch.float32)
                onehot.scatter_(1, y.long(), 1)
            loss = 0.0
            for w, channels in groups.items():   # base returns -mean dc over its channels
                loss = loss + w * len(channels) * self.base(x[:, channels], onehot[:, channels], loss_mask)
            return loss / total

    return WeightedDice


def nnunet_dc_ce(batch_dice: bool, ignore_label: Optional[int] = None, class_weights: Optional[Sequence] = None,
                 ddp: bool = False):
    """nnU-Net's ``DC_and_CE_loss`` exactly as ``nnUNetTrainer._build_loss`` makes it (2.8.1); with
    ``class_weights`` the Dice is the class-weighted variant (CE unchanged)."""
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    dice = MemoryEfficientSoftDiceLoss if class_weights is None else weighted_dice_class(class_weights)
    return DC_and_CE_loss({"batch_dice": batch_dice, "smooth": 1e-5, "do_bg": False, "ddp": ddp}, {}, weight_ce=1,
                          weight_dice=1, ignore_label=ignore_label, dice_class=dice)


def _module():
    import torch

    return torch.nn.Module


class BackSplitLoss(_module()):
    """One resolution: ``w_multi * L_multi(z, y) + w_lvr * L_binary(merge_rest(z), merge_labels(y))``.

    ``n_targets``: T. ``batch_dice``, ``ignore_label``: from nnU-Net's configuration / label manager.
    ``support_dice_weights``: None (nnU-Net's uniform Dice) or the supports' Dice weights (``capped_support_weights``
    gives the targets' too). ``w_multi``, ``w_lvr``: start values; ``LossSchedule`` changes them per step.
    """

    def __init__(self, n_targets: int, batch_dice: bool, ignore_label: Optional[int] = None,
                 class_weights: Optional[Sequence[float]] = None, w_multi: float = 1.0, w_lvr: float = 1.0,
                 ddp: bool = False):
        super().__init__()
        self.n_targets = int(n_targets)
        self.ignore_label = ignore_label
        self.multi = nnunet_dc_ce(batch_dice, ignore_label, class_weights, ddp)
        self.binary = nnunet_dc_ce(batch_dice, None if ignore_label is None else self.n_targets + 1, None, ddp)
        self.w_multi, self.w_lvr = float(w_multi), float(w_lvr)

    def forward(self, logits, target):
        total = 0.0
        if self.w_multi:
            total = total + self.w_multi * self.multi(logits, target)
        if self.w_lvr:
            merged = merge_rest(_at_least_float32(logits), self.n_targets)   # AMP: log-sum-exp in float32
            total = total + self.w_lvr * self.binary(merged, merge_labels(target, self.n_targets, self.ignore_label))
        return total


def _at_least_float32(tensor):
    import torch

    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def deep_supervision_weights(n_outputs: int, ddp_without_compile: bool = False) -> list[float]:
    """nnU-Net's: 1/2^i, the lowest resolution 0 (1e-6 under DDP without torch.compile, as nnU-Net does to keep
    every parameter used), normalised to sum 1 (``nnUNetTrainer._build_loss``, 2.8.1)."""
    if n_outputs <= 1:
        return [1.0]
    weights = [1.0 / 2 ** i for i in range(n_outputs)]
    weights[-1] = 1e-6 if ddp_without_compile else 0.0
    return [w / sum(weights) for w in weights]


def wrap_deep_supervision(loss, n_outputs: int, ddp_without_compile: bool = False):
    """nnU-Net's ``DeepSupervisionWrapper`` around ``loss``; ``loss.w_*`` stay reachable as ``wrapped.loss.w_*``."""
    import numpy as np
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper

    return DeepSupervisionWrapper(loss, np.array(deep_supervision_weights(n_outputs, ddp_without_compile)))
