"""``BackSplitLearnedContextTrainer``: BackSplit's nnU-Net trainer with a CoLab task generator (imported only in the
training child process).

The trainer is built with the *extended* dataset.json (``spec.extend_dataset_json``): its label manager, network
(``1 + T + S + t`` outputs), saved ``dataset.json`` and checkpoints are those of an ordinary nnU-Net model whose last
``t`` classes are the learned context. The learned-context settings travel in that dataset.json
(``backsplit.learned_context``), which nnU-Net also stores in every checkpoint's ``init_args``.

Each iteration (Algorithm 1 of the paper):
1. the generator (no gradient, except on meta iterations) gives ``q``; Eq. 5-9 give the soft labels at every
   deep-supervision resolution; the segmentation network takes one nnU-Net step (SGD, Nesterov, clipping, AMP on
   CUDA) on soft-target DC+CE;
2. every ``k``-th iteration, before that step is applied, the meta step: ``theta* = theta - lr * grad`` with the
   real step's own gradient (Eq. 13), ``L_ROI(theta*)`` on the target channels (Eq. 12) and the meta-gradient on the
   generator (``meta.py``), applied with Adam (Eq. 15).
Deviation from Algorithm 1 (measured cost reason): the segmentation step of a meta iteration uses the labels of the
generator *before* its update (Algorithm 1 recomputes them after); this reuses the real step's gradient for Eq. 13
and saves one forward/backward of the segmentation network per meta step. The next iteration uses the new generator.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from nnunetv2.training.loss.dice import get_tp_fp_fn_tn
from nnunetv2.utilities.helpers import dummy_context
from torch import autocast

from backsplit.training.colab import aggregation, losses
from backsplit.training.colab.checkpoints import add_generator_state, read_generator_state
from backsplit.training.colab.functional import functional_forward, parameter_slots
from backsplit.training.colab.generator import build_generator
from backsplit.training.colab.meta import MetaProblem, meta_gradient_exact, meta_gradient_fd
from backsplit.training.colab.spec import spec_from_json
from backsplit.training.trainer import BackSplitTrainer

AMP_ROI_SCALE = 2.0 ** 12     # L_ROI multiplier before its half-precision backward (fd; the result is scale-free)


def _finite(tensors: list) -> bool:
    """Whether every value of ``tensors`` is finite, from their total 2-norm (one multi-tensor kernel instead of two
    ops and a sync per tensor; a norm that overflows float32, |g| > ~1e19, also counts as not finite)."""
    return not tensors or bool(torch.isfinite(torch.nn.utils.get_total_norm(tensors, 2.0)))


class BackSplitLearnedContextTrainer(BackSplitTrainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):  # noqa: B008 (nnU-Net's own signature)
        super().__init__(plans, configuration, fold, dataset_json, device)
        section = dataset_json.get("backsplit", {})
        if "learned_context" not in section:
            raise ValueError("BackSplitLearnedContextTrainer needs the dataset.json extended by "
                             "backsplit.training.colab.extend_dataset_json")
        self.context_spec = spec_from_json(section["learned_context"])
        self.n_context = int(self.context_spec.classes)
        self.n_fixed = self.label_manager.num_segmentation_heads - 1 - self.n_context
        self.n_targets = len(section.get("schema", {}).get("targets", [])) or 1
        self.generator = self.generator_optimizer = None
        self.context_iterations = 0          # training iterations so far (the meta schedule survives resume)
        self.generator_updates = 0
        self.skipped_meta_steps = 0
        self._epoch_meta: list[tuple[float, float]] = []
        self._slots = None                   # (network, functional.parameter_slots(network)) of the meta step

    # ---- set-up --------------------------------------------------------------------------------------------------
    def initialize(self):
        super().initialize()
        self.generator = build_generator(self.configuration_manager, self.num_input_channels, self.n_context,
                                         self.context_spec.generator_width).to(self.device)
        self.generator_optimizer = torch.optim.Adam(self.generator.parameters(), lr=self.context_spec.generator_lr,
                                                    betas=(0.9, 0.999), weight_decay=0.0, foreach=True)
        n_gen = sum(p.numel() for p in self.generator.parameters())
        n_seg = sum(p.numel() for p in self.network.parameters())
        self.print_to_log_file(f"learned context: {self.context_spec.to_option()}; segmentation network "
                               f"{self.label_manager.num_segmentation_heads} outputs, {n_seg} parameters; generator "
                               f"{self.n_context} outputs, {n_gen} parameters")

    @property
    def spacing(self) -> list[float]:
        return [float(s) for s in self.configuration_manager.spacing]

    def _plain_network(self):
        network = self.network.module if self.is_ddp else self.network
        return getattr(network, "_orig_mod", network)

    def _autocast(self):
        return autocast(self.device.type, enabled=True) if self.device.type == "cuda" else dummy_context()

    def _batch(self, batch: dict):
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"]
        targets = [t.to(self.device, non_blocking=True) for t in target] if isinstance(target, list) \
            else [target.to(self.device, non_blocking=True)]
        return data, targets

    def context_probabilities(self, data, with_grad: bool):
        """q (b, t, *patch), float32: softmax of the generator's output (Eq. 4). With gradient (meta iterations) the
        generator runs in full precision: its meta-gradients are small enough to underflow in half precision."""
        with (torch.enable_grad() if with_grad else torch.no_grad()), \
                (dummy_context() if with_grad else self._autocast()):
            logits = self.generator(data)
        return torch.softmax(logits.float(), 1)

    def soft_labels(self, data, targets, with_grad: bool) -> list:
        mask = aggregation.context_mask(targets[0], self.n_targets, self.spacing, self.context_spec.margin_mm,
                                        self.context_spec.temperature_mm)
        q = self.context_probabilities(data, with_grad)
        return aggregation.multiscale_soft_targets(targets, q, self.n_fixed, mask)

    def _seg_loss(self, output, soft):
        return losses.segmentation_loss(output, soft, bool(self.configuration_manager.batch_dice))

    # ---- training ------------------------------------------------------------------------------------------------
    def train_step(self, batch: dict) -> dict:
        data, targets = self._batch(batch)
        meta_now = self.context_iterations % int(self.context_spec.update_every) == 0
        self.context_iterations += 1
        soft = self.soft_labels(data, targets, with_grad=meta_now)
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            output = self.network(data)
        loss = self._seg_loss(output, [s.detach() for s in soft])
        del output
        if self.grad_scaler is not None:
            self.grad_scaler.scale(loss).backward()
            self.grad_scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if meta_now:
            self._meta_step(data, targets, soft, float(loss.detach()))
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
        if self.grad_scaler is not None:
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            self.optimizer.step()
        if type(self).step_sink is not None:          # the training estimate times this step too (BackSplitTrainer)
            type(self).step_sink("train", self, batch)
        return {"loss": loss.detach().cpu().numpy()}

    def _meta_step(self, data, targets, soft, seg_loss_value: float) -> None:
        """Eq. 12-15 on this batch with the current (not yet updated) segmentation weights."""
        network = self._plain_network()
        params = dict(network.named_parameters())
        if self._slots is None or self._slots[0] is not network:      # fixed after initialize: computed once
            self._slots = (network, parameter_slots(network))
        slots = self._slots[1]

        def forward(weights):
            with self._autocast():
                return functional_forward(network, weights, data, slots=slots)

        def full_precision_forward(weights):
            return functional_forward(network, weights, data, slots=slots)

        exact = self.context_spec.meta_method == "exact"    # second order in half precision: not attempted
        problem = MetaProblem(full_precision_forward if exact else forward, params, self._seg_loss,
                              lambda out: losses.roi_loss(out, targets[0], self.n_targets),
                              lambda: soft, list(self.generator.parameters()),
                              float(self.optimizer.param_groups[0]["lr"]), full_precision_forward)
        if exact:
            result = meta_gradient_exact(problem)
        else:
            # the real step's gradients as they are: nothing changes them before clipping, after the meta step
            grads = {n: (p.grad.detach() if p.grad is not None else None) for n, p in params.items()}
            if not _finite([g for g in grads.values() if g is not None]):
                self.skipped_meta_steps += 1       # an AMP overflow step: nnU-Net's scaler skips it too
                return
            result = meta_gradient_fd(problem, self.context_spec.fd_radius, grads, soft, seg_loss_value,
                                      AMP_ROI_SCALE if self.grad_scaler is not None else 1.0)
        if not _finite(result.generator_grads):
            self.skipped_meta_steps += 1
            return
        self.generator_optimizer.zero_grad(set_to_none=True)
        for p, g in zip(self.generator.parameters(), result.generator_grads):
            p.grad = g.to(p.dtype)
        self.generator_optimizer.step()
        self.generator_updates += 1
        self._epoch_meta.append((result.roi_loss, result.seg_loss))

    def on_train_epoch_end(self, train_outputs):
        super().on_train_epoch_end(train_outputs)
        if self._epoch_meta:
            roi = float(np.mean([r for r, _ in self._epoch_meta]))
            self.print_to_log_file(f"learned context: {len(self._epoch_meta)} generator updates this epoch "
                                   f"({self.generator_updates} in all, {self.skipped_meta_steps} skipped), mean "
                                   f"L_ROI(theta*) {roi:.4f}")
        self._epoch_meta = []

    # ---- validation: soft-target loss; pseudo Dice of targets and supports (context predicted = background) ------
    def validation_step(self, batch: dict) -> dict:
        data, targets = self._batch(batch)
        soft = self.soft_labels(data, targets, with_grad=False)
        with self._autocast():
            output = self.network(data)
        loss = self._seg_loss(output, soft)
        logits = output[0] if isinstance(output, (list, tuple)) else output
        predicted = logits.argmax(1, keepdim=True)
        predicted[predicted > self.n_fixed] = 0
        onehot = torch.zeros((logits.shape[0], 1 + self.n_fixed) + tuple(logits.shape[2:]), device=logits.device,
                             dtype=torch.float16)
        onehot.scatter_(1, predicted, 1)
        axes = [0] + list(range(2, logits.ndim))
        tp, fp, fn, _ = get_tp_fp_fn_tn(onehot, targets[0].clamp(0, self.n_fixed), axes=axes)
        if type(self).step_sink is not None:
            type(self).step_sink("val", self, batch)
        return {"loss": loss.detach().cpu().numpy(), "tp_hard": tp.detach().cpu().numpy()[1:],
                "fp_hard": fp.detach().cpu().numpy()[1:], "fn_hard": fn.detach().cpu().numpy()[1:]}

    # ---- checkpoints: both networks --------------------------------------------------------------------------------
    def generator_state(self) -> dict:
        return {"spec": self.context_spec.to_json(), "weights": self.generator.state_dict(),
                "optimizer": self.generator_optimizer.state_dict(), "iterations": self.context_iterations,
                "updates": self.generator_updates, "skipped": self.skipped_meta_steps}

    def save_checkpoint(self, filename: str) -> None:
        super().save_checkpoint(filename)
        if self.local_rank == 0 and not self.disable_checkpointing and self.generator is not None:
            add_generator_state(filename, self.generator_state())

    def load_checkpoint(self, filename_or_checkpoint) -> None:
        super().load_checkpoint(filename_or_checkpoint)
        state: Optional[dict] = read_generator_state(filename_or_checkpoint)
        if state is None:
            self.print_to_log_file("learned context: the checkpoint has no generator; the generator starts anew")
            return
        self.generator.load_state_dict(state["weights"])
        self.generator_optimizer.load_state_dict(state["optimizer"])
        self.context_iterations = int(state.get("iterations", 0))
        self.generator_updates = int(state.get("updates", 0))
        self.skipped_meta_steps = int(state.get("skipped", 0))
        self.print_to_log_file(f"learned context: generator restored ({self.generator_updates} updates so far)")

