"""The BackSplit nnU-Net trainer (imported only inside the training child process).

A subclass of ``nnUNetTrainer`` that keeps the base ``__init__`` signature (nnU-Net stores it in checkpoints) and
the stock network architecture (so inference builds the network from the plans with the stock trainer), and adds:
epochs / iterations / learning rate / checkpoint interval from ``BackSplitTrainer.settings`` (or the
``BACKSPLIT_TRAINER_SETTINGS`` JSON environment variable), progress events after every epoch, and target-aware
forced-foreground sampling. The training variants (support schedules, separate support head) are hooks of
``variants.VariantsMixin``; with the paper's recipe they pass straight to nnU-Net's code.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Optional

import torch
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from nnunetv2.training.nnUNetTrainer import nnUNetTrainer as trainer_module
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from backsplit.runtime.progress import ProgressEvent
from backsplit.training.sampling import choose_forced_class
from backsplit.training.variants import VariantsMixin


class TargetAwareDataLoader(nnUNetDataLoader):
    """nnU-Net's data loader whose forced-foreground patches are centred on target classes."""

    def __init__(self, *args, target_labels=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.target_labels = tuple(int(v) for v in target_labels)

    def get_bbox(self, data_shape, force_fg, class_locations, overwrite_class=None, verbose=False):
        if force_fg and overwrite_class is None and class_locations:
            overwrite_class = choose_forced_class(class_locations, self.target_labels)
        return super().get_bbox(data_shape, force_fg, class_locations, overwrite_class, verbose)


class BackSplitTrainer(VariantsMixin, nnUNetTrainer):
    settings: dict = {}
    event_sink: Optional[Callable[[ProgressEvent], None]] = None
    step_sink: Optional[Callable] = None   # (kind 'train' | 'val', trainer, batch): times iterations

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):  # noqa: B008 (nnU-Net's own signature)
        super().__init__(plans, configuration, fold, dataset_json, device)
        settings = dict(self.settings or json.loads(os.environ.get("BACKSPLIT_TRAINER_SETTINGS", "{}")))
        self.num_epochs = int(settings.get("epochs", self.num_epochs))
        self.num_iterations_per_epoch = int(settings.get("iterations_per_epoch", self.num_iterations_per_epoch))
        self.num_val_iterations_per_epoch = int(settings.get("val_iterations_per_epoch",
                                                             self.num_val_iterations_per_epoch))
        self.initial_lr = float(settings.get("initial_lr", self.initial_lr))
        self.save_every = int(settings.get("save_every", self.save_every))
        self.sampling = settings.get("sampling", "stock")
        self.target_labels = [int(v) for v in settings.get("target_labels", [])]
        self._epoch_started = None
        self._init_variants(settings)

    # ---- sampling ------------------------------------------------------------------------------------------------
    def get_dataloaders(self):
        if self.sampling != "target" or not self.target_labels:
            return super().get_dataloaders()
        targets = tuple(self.target_labels)
        original = trainer_module.nnUNetDataLoader

        def target_aware(*args, **kwargs):
            return TargetAwareDataLoader(*args, target_labels=targets, **kwargs)

        trainer_module.nnUNetDataLoader = target_aware
        try:
            return super().get_dataloaders()
        finally:
            trainer_module.nnUNetDataLoader = original

    # ---- iteration timing (the up-front estimate: estimate_training.TrainingClock) ------------------------------
    def train_step(self, batch: dict) -> dict:
        result = super().train_step(batch)
        if type(self).step_sink is not None:
            type(self).step_sink("train", self, batch)
        return result

    def validation_step(self, batch: dict) -> dict:
        result = super().validation_step(batch)
        if type(self).step_sink is not None:
            type(self).step_sink("val", self, batch)
        return result

    # ---- progress events -----------------------------------------------------------------------------------------
    def _emit(self, event: ProgressEvent) -> None:
        sink = type(self).event_sink
        if sink is not None:
            sink(event)

    def on_train_start(self):
        super().on_train_start()
        self._emit(ProgressEvent("train", f"training from epoch {self.current_epoch} to {self.num_epochs}",
                                 self.current_epoch, self.num_epochs,
                                 {"epoch": self.current_epoch, "num_epochs": self.num_epochs,
                                  "start_epoch": self.current_epoch, "output_folder": self.output_folder,
                                  "device": str(self.device), "sampling": self.sampling,
                                  "iterations_per_epoch": self.num_iterations_per_epoch,
                                  "learning_rate": self.initial_lr}))

    def on_epoch_end(self):
        epoch = self.current_epoch
        checkpoint = (epoch + 1) % self.save_every == 0 and epoch != self.num_epochs - 1
        super().on_epoch_end()
        log = self.logger.get_value
        start, end = log("epoch_start_timestamps", -1), log("epoch_end_timestamps", -1)
        dice = [float(d) for d in log("dice_per_class_or_region", -1)]
        data = {"epoch": epoch + 1, "num_epochs": self.num_epochs,
                "train_loss": float(log("train_losses", -1)), "val_loss": float(log("val_losses", -1)),
                "pseudo_dice": dice, "ema_fg_dice": float(log("ema_fg_dice", -1)),
                "learning_rate": float(log("lrs", -1)), "epoch_time": float(end - start),
                "checkpoint": "checkpoint_latest.pth" if checkpoint else None,
                "labels": [int(v) for v in self.label_manager.foreground_labels]}
        self._emit(ProgressEvent("epoch", f"epoch {epoch + 1}/{self.num_epochs}: train loss "
                                 f"{data['train_loss']:.4f}, val loss {data['val_loss']:.4f}, pseudo Dice "
                                 f"{', '.join(f'{d:.3f}' for d in dice)}", epoch + 1, self.num_epochs, data))
