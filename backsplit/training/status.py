"""Follow a training from its progress events: epoch, elapsed time, time left, and the curves to plot.

Pure bookkeeping shared by the command line's progress bar and the Slicer panel's progress bar and live plot.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

from backsplit.runtime.progress import ProgressEvent, Stage, format_duration  # noqa: F401 - format_duration re-exported


@dataclass
class Curves:
    epochs: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    pseudo_dice: list[list[float]] = field(default_factory=list)  # per epoch, one value per foreground class


@dataclass
class TrainingStatus:
    started: float = field(default_factory=time.time)
    stage: str = "starting"
    message: str = ""
    model: str = ""
    epoch: int = 0
    num_epochs: int = 0
    start_epoch: int = 0
    epoch_times: list[float] = field(default_factory=list)
    curves: dict[str, Curves] = field(default_factory=dict)  # per model label
    finished: bool = False
    error: Optional[str] = None
    models: list[str] = field(default_factory=list)
    models_total: int = 1
    models_done: int = 0
    estimate_s: Optional[float] = None    # the up-front estimate of the whole job (seconds from its start)
    estimate_message: str = ""

    def update(self, event: ProgressEvent) -> None:
        if event.stage == Stage.LOG:
            return
        self.stage, self.message = event.stage, event.message
        data = event.data
        if event.stage == "train" and "model" in data:
            if self.model and self.model != data["model"]:
                self.models_done += 1
            self.model = data["model"]
            self.epoch_times = []
            self.epoch, self.start_epoch = 0, 0
        if event.stage == "train" and "start_epoch" in data:
            self.start_epoch = self.epoch = int(data["start_epoch"])
        if "num_epochs" in data:
            self.num_epochs = int(data["num_epochs"])
        elif event.stage == "train" and event.total:
            self.num_epochs = int(event.total)
        if event.stage == "epoch":
            self.epoch = int(data.get("epoch", self.epoch))
            if "epoch_time" in data:
                self.epoch_times.append(float(data["epoch_time"]))
            curves = self.curves.setdefault(self.model or "model", Curves())
            curves.epochs.append(self.epoch)
            curves.train_loss.append(float(data.get("train_loss", float("nan"))))
            curves.val_loss.append(float(data.get("val_loss", float("nan"))))
            curves.pseudo_dice.append([float(d) for d in data.get("pseudo_dice", [])])
        if event.stage == Stage.ESTIMATE and data.get("seconds") is not None:
            self.estimate_s = float(data["seconds"])
            self.estimate_message = event.message
        if event.stage == Stage.DONE:
            self.finished = True
            self.models = list(data.get("models", []))
        if event.stage == Stage.ERROR:
            self.finished = True
            self.error = event.message

    @property
    def elapsed(self) -> float:
        return time.time() - self.started

    @property
    def fraction(self) -> float:
        if self.finished and not self.error:
            return 1.0
        if not self.num_epochs:
            return 0.0
        per_model = self.epoch / self.num_epochs
        return min(1.0, (self.models_done + per_model) / max(1, self.models_total))

    def seconds_left(self) -> Optional[float]:
        """Mean of the last five epoch times x epochs left (including models still to train); before the first epoch
        the up-front estimate's remainder; None before either is known."""
        if (not self.epoch_times or not self.num_epochs) and self.estimate_s is not None:
            return max(0.0, self.estimate_s - self.elapsed)
        if not self.epoch_times or not self.num_epochs:
            return None
        recent = self.epoch_times[-5:]
        per_epoch = sum(recent) / len(recent)
        epochs_left = (self.num_epochs - self.epoch) + (self.models_total - self.models_done - 1) * self.num_epochs
        return max(0.0, per_epoch * epochs_left)

    def summary(self) -> str:
        left = self.seconds_left()
        eta = f", about {format_duration(left)} left" if left is not None else ""
        head = f"{self.model}: " if self.model else ""
        if self.num_epochs and self.stage in ("epoch", "train"):
            return f"{head}epoch {self.epoch}/{self.num_epochs}, {format_duration(self.elapsed)} elapsed{eta}"
        return f"{head}{self.message}"
