"""How the support structures enter training (support schedules, a separate support head) as hooks of nnU-Net's
trainer (a mixin of ``BackSplitTrainer``).

Settings (``BackSplitTrainer.settings``): ``support_schedule`` (``schedule.parse_schedule`` text; ``plain`` = the
paper), ``support_head`` (the support head's loss weight, or None), ``n_targets`` (T: the targets are labels 1..T,
the export's order). With ``plain`` and no support head every hook below passes straight to nnU-Net's own code, so
the paper's recipe trains bit-identically to a trainer without this mixin.

Hooks used (nnU-Net 2.8.1 ``nnUNetTrainer``):

* ``build_network_architecture`` (called as ``self.build_network_architecture(...)`` by ``initialize``; an instance
  method here, which the 2.8.1 signature check accepts): support head only -- the stock network for ``1 + T`` classes
  plus ``supporthead.attach_support_head``. Inference never calls it (it builds the stock network from the exported
  lesion-head model).
* ``_build_loss``: ``losses.BackSplitLoss`` in nnU-Net's ``DeepSupervisionWrapper`` (schedule variants) or
  ``supporthead.SupportHeadLoss`` (deep supervision inside); the paper's recipe keeps nnU-Net's own loss.
* ``on_train_epoch_start`` / ``train_step``: the optimiser step counter (resume-safe: epoch x iterations) and the
  schedule's weights set on the loss before each step; the support head's step (both heads, nnU-Net's AMP, grad
  scaler and gradient clipping at 12, as ``nnUNetTrainer.train_step``).
* ``validation_step`` (support head): pseudo Dice of the targets from the lesion head and of the supports from the
  support head, in label order, so nnU-Net's logger and BackSplit's curves see one value per foreground class.
* ``on_train_end``: the peak GPU memory (``torch.cuda.max_memory_allocated``, MiB) for the manifest.
"""

from __future__ import annotations

import numpy as np

from backsplit.training.losses import BackSplitLoss, capped_support_weights, wrap_deep_supervision
from backsplit.training.schedule import parse_schedule
from backsplit.training.supporthead import (
    SupportHeadLoss,
    attach_support_head,
    forward_both,
    lesion_labels,
    support_labels,
)


class VariantsMixin:
    """Mixed in before ``nnUNetTrainer``; call ``_init_variants(settings)`` at the end of ``__init__``."""

    def _init_variants(self, settings: dict) -> None:
        self.n_targets = int(settings.get("n_targets") or 1)
        self.loss_schedule = parse_schedule(settings.get("support_schedule") or "plain")
        weight = settings.get("support_head")
        self.support_head = weight is not None
        self.w_support = float(weight) if weight is not None else 0.0
        self.n_supports = self.label_manager.num_segmentation_heads - 1 - self.n_targets
        if (self.support_head or not self.loss_schedule.is_plain) and self.n_supports < 1:
            raise ValueError(f"the dataset has no support structures ({self.n_targets} target(s) of "
                             f"{self.label_manager.num_segmentation_heads - 1} classes): support schedules and the "
                             "support head need them")
        self.optimizer_step = 0
        self.loss_weights_seen: list = []       # [step, w_multi, w_lvr] at each epoch start (manifest)
        self.peak_gpu_memory_mb = None

    @property
    def _variant_active(self) -> bool:
        return self.support_head or not self.loss_schedule.is_plain

    # ---- network ---------------------------------------------------------------------------------------------
    def build_network_architecture(self, plans_manager, configuration_manager, num_input_channels,
                                   num_output_channels, enable_deep_supervision=True):
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

        if not getattr(self, "support_head", False):
            return nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                            num_output_channels, enable_deep_supervision)
        network = nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                           1 + self.n_targets, enable_deep_supervision)
        return attach_support_head(network, num_output_channels - self.n_targets)

    # ---- loss ------------------------------------------------------------------------------------------------
    def _build_loss(self):
        if not self._variant_active:
            return super()._build_loss()                      # the paper's recipe: nnU-Net's own loss
        n_outputs = len(self._get_deep_supervision_scales()) if self.enable_deep_supervision else 1
        batch_dice = bool(self.configuration_manager.batch_dice)
        if self.support_head:
            return SupportHeadLoss(self.n_targets, self.n_supports, batch_dice, n_outputs, self.w_support,
                                   self.is_ddp)
        schedule = self.loss_schedule
        weights = None if schedule.cap is None else \
            capped_support_weights(self.n_targets, self.n_supports, schedule.cap)
        inner = BackSplitLoss(self.n_targets, batch_dice, self.label_manager.ignore_label, weights, ddp=self.is_ddp)
        if not self.enable_deep_supervision:
            return inner
        return wrap_deep_supervision(inner, n_outputs, self.is_ddp and not self._do_i_compile())

    def _set_loss_weights(self) -> None:
        inner = getattr(self.loss, "loss", self.loss)
        if isinstance(inner, BackSplitLoss):
            inner.w_multi, inner.w_lvr = self.loss_schedule.weights(self.optimizer_step)
            if self.optimizer_step % self.num_iterations_per_epoch == 0:
                self.loss_weights_seen.append([self.optimizer_step, inner.w_multi, inner.w_lvr])

    # ---- steps -----------------------------------------------------------------------------------------------
    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        self.optimizer_step = self.current_epoch * self.num_iterations_per_epoch   # resume continues the schedule

    def _batch_to_device(self, batch):
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"]
        target = [t.to(self.device, non_blocking=True) for t in target] if isinstance(target, list) \
            else target.to(self.device, non_blocking=True)
        return data, target

    def _autocast(self):
        from nnunetv2.utilities.helpers import dummy_context
        from torch import autocast

        return autocast(self.device.type, enabled=True) if self.device.type == "cuda" else dummy_context()

    def train_step(self, batch: dict) -> dict:
        import torch

        if not self._variant_active:
            return super().train_step(batch)
        self._set_loss_weights()
        self.optimizer_step += 1
        if not self.support_head:
            return super().train_step(batch)
        data, target = self._batch_to_device(batch)
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            lesion, support = forward_both(self.network, data)
            loss = self.loss(lesion, support, target)
        if self.grad_scaler is not None:
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.optimizer.step()
        return {"loss": loss.detach().cpu().numpy()}

    def validation_step(self, batch: dict) -> dict:
        if not self.support_head:
            return super().validation_step(batch)
        import torch
        from nnunetv2.training.loss.dice import get_tp_fp_fn_tn

        data, target = self._batch_to_device(batch)
        with torch.no_grad(), self._autocast():
            lesion, support = forward_both(self.network, data)
            loss = self.loss(lesion, support, target)
        full = target[0] if isinstance(target, list) else target
        lo = lesion[0] if isinstance(lesion, list) else lesion
        so = support[0] if isinstance(support, list) else support
        axes = [0] + list(range(2, lo.ndim))
        values = []
        for logits, labels, masked in ((lo, lesion_labels(full, self.n_targets), False),
                                       (so, support_labels(full, self.n_targets, self.n_supports), True)):
            ignore = logits.shape[1]
            valid = (labels != ignore).float() if masked else None
            labels = torch.where(labels == ignore, torch.zeros_like(labels), labels)
            onehot = torch.zeros(logits.shape, device=logits.device, dtype=torch.float32)
            onehot.scatter_(1, logits.argmax(1, keepdim=True), 1)
            tp, fp, fn, _ = get_tp_fp_fn_tn(onehot, labels, axes=axes, mask=valid)
            values.append([v.detach().cpu().numpy()[1:] for v in (tp, fp, fn)])
        tp, fp, fn = (np.concatenate([values[0][i], values[1][i]]) for i in range(3))
        return {"loss": loss.detach().cpu().numpy(), "tp_hard": tp, "fp_hard": fp, "fn_hard": fn}

    def on_train_end(self):
        import torch

        if self.device.type == "cuda":
            self.peak_gpu_memory_mb = round(torch.cuda.max_memory_allocated(self.device) / 2 ** 20, 1)
        super().on_train_end()

    def variants_record(self) -> dict:
        """What the manifest says about the variant (``manifest.build_manifest(dynamics=...)``)."""
        record = {"loss_schedule": {**self.loss_schedule.to_json(), "weights_at_epoch_start": self.loss_weights_seen}}
        if self.support_head:
            record["support_head"] = {"weight": self.w_support, "supports": self.n_supports}
        if self.peak_gpu_memory_mb is not None:
            record["peak_gpu_memory_mb"] = self.peak_gpu_memory_mb
        return record
