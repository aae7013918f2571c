"""Time a training's first iterations on the chosen device and state the expected duration of the whole job.

Runs inside the training child process. ``BackSplitTrainer.step_sink`` calls ``TrainingClock.step`` after every
training and validation step. After the first ``TIMED_STEPS`` + 1 training iterations of the first run (seconds on a
GPU) the clock emits an ``estimate`` event: the time so far (planning, preprocessing) plus every remaining epoch of
every run (folds, binary twin) at the measured speed (``estimate.training_seconds``). Validation iterations are
timed once on the same batch (a forward pass without gradients). When the first epoch ends it emits a refined
estimate from the real epoch time. The iterations timed are the training's own first iterations: nothing is spent
on the estimate but one forward pass, and the model trains exactly as without it.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from backsplit.runtime.devices import usable_cpu_count
from backsplit.runtime.durations import Estimate, training_advice, training_seconds
from backsplit.runtime.progress import ProgressEvent

TIMED_STEPS = 3                 # training iterations timed after the first (which includes warm-up)


class TrainingClock:
    def __init__(self, emit: Callable[[ProgressEvent], None], *, epochs: int, iterations_per_epoch: int,
                 val_iterations_per_epoch: int, runs: int, configuration: str, device: str,
                 clock: Callable[[], float] = time.time, job_started: Optional[float] = None):
        self.emit = emit
        self.epochs, self.iterations, self.val_iterations = epochs, iterations_per_epoch, val_iterations_per_epoch
        self.runs, self.configuration, self.device = max(1, runs), configuration, device
        self._clock = clock
        self.job_started = clock() if job_started is None else job_started
        self.run_index = -1
        self.run_started = 0.0
        self.start_epoch = 0
        self.batch_size = 0
        self._ends: list[float] = []
        self._probe_s = 0.0
        self.val_iteration_s: Optional[float] = None
        self.first: Optional[Estimate] = None
        self.refined: Optional[Estimate] = None

    # ---- called by the worker and the trainer ---------------------------------------------------------------------
    def start_run(self) -> None:
        """A training run (one fold of one dataset) begins."""
        self.run_index += 1
        self.run_started = self._clock()
        self._ends, self._probe_s = [], 0.0

    def observing(self, emit: Callable[[ProgressEvent], None]) -> Callable[[ProgressEvent], None]:
        """``emit`` that also lets the clock see the trainer's epoch events (for the refined estimate)."""
        def sink(event: ProgressEvent) -> None:
            emit(event)
            if event.stage == "epoch" and "epoch" in event.data:
                self.epoch_ended(int(event.data["epoch"]))
        return sink

    def step(self, kind: str, trainer=None, batch=None) -> None:
        if self.run_index != 0 or self.first is not None:
            return
        if kind == "train":
            self._ends.append(self._clock() - self._probe_s)
            if trainer is not None and len(self._ends) == 1:
                self.batch_size = int(getattr(trainer, "batch_size", 0) or 0)
                self.start_epoch = int(getattr(trainer, "current_epoch", 0) or 0)   # > 0 when resuming
            if len(self._ends) == 2 and trainer is not None and batch is not None:
                self._time_validation(trainer, batch)
            if len(self._ends) >= TIMED_STEPS + 1:
                self._estimate_from_steps()
        elif kind == "val" and self._ends:
            self._estimate_from_steps()            # fewer iterations per epoch than the steps timed

    def epoch_ended(self, epoch: int) -> None:
        """After the first epoch of the first run: refine with the real wall time of that epoch."""
        if self.run_index != 0 or self.refined is not None or self.first is None:
            return
        epochs_done = epoch - self.start_epoch
        if epochs_done < 1:
            return
        now = self._clock()
        t_train = self.first.details["train_iteration_s"]
        first_iteration_start = self.first.details["first_iteration_end"] - t_train
        per_epoch = (now - first_iteration_start) / epochs_done
        setup = self.first.details["setup_s"]
        left_this_run = (self.epochs - epoch) * per_epoch
        other_runs = (self.runs - 1) * (setup + self.epochs * per_epoch)
        seconds = (now - self.job_started) + left_this_run + other_runs
        details = dict(self.first.details, epoch_s=per_epoch)
        self.refined = Estimate("training", seconds, self.device, f"the first epoch ({per_epoch:.1f} s)", details,
                                self.first.advice, made_after_s=now - self.job_started)
        event = self.refined.event()
        event.data["refined"] = True
        self.emit(event)

    def record(self) -> dict:
        """For the manifest: the estimates and the job's real time so far (its accuracy can be checked)."""
        return {"estimated_s": round(self.first.seconds, 1) if self.first else None,
                "estimate_basis": self.first.basis if self.first else None,
                "estimate_made_after_s": round(self.first.made_after_s, 1) if self.first else None,
                "refined_estimate_s": round(self.refined.seconds, 1) if self.refined else None,
                "actual_s": round(self._clock() - self.job_started, 1),
                "details": self.first.details if self.first else None}

    # ---- internals ------------------------------------------------------------------------------------------------
    def _time_validation(self, trainer, batch) -> None:
        """One forward pass without gradients on this batch: what a validation iteration costs."""
        import torch

        started = self._clock()
        try:
            data = batch["data"].to(trainer.device, non_blocking=True)
            autocast = torch.autocast(trainer.device.type) if trainer.device.type == "cuda" else None
            with torch.no_grad():
                if autocast is not None:
                    with autocast:
                        trainer.network(data)
                else:
                    trainer.network(data)
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            self.val_iteration_s = self._clock() - started
        except Exception:  # noqa: BLE001 - the estimate then assumes the usual validation cost
            self.val_iteration_s = None
        self._probe_s += self._clock() - started

    def _estimate_from_steps(self) -> None:
        ends = self._ends
        if len(ends) >= 2:
            t_train = (ends[-1] - ends[1]) / max(1, len(ends) - 2) if len(ends) > 2 else ends[1] - ends[0]
            setup = max(0.0, ends[0] - self.run_started - t_train)
        else:
            t_train, setup = ends[0] - self.run_started, 0.0
        t_val = self.val_iteration_s
        now = self._clock()
        epochs_left = self.epochs - self.start_epoch
        this_run = training_seconds(train_iteration_s=t_train, epochs=epochs_left,
                                    iterations_per_epoch=self.iterations,
                                    val_iterations_per_epoch=self.val_iterations, val_iteration_s=t_val)
        this_run -= len(ends) * t_train                           # already done
        other_runs = training_seconds(train_iteration_s=t_train, epochs=self.epochs,
                                      iterations_per_epoch=self.iterations,
                                      val_iterations_per_epoch=self.val_iterations, val_iteration_s=t_val,
                                      setup_s=setup, runs=self.runs - 1) if self.runs > 1 else 0.0
        seconds = (now - self.job_started) + max(0.0, this_run) + other_runs
        t_val_used = t_val if t_val is not None else 0.4 * t_train
        details = {"train_iteration_s": t_train, "val_iteration_s": t_val_used, "setup_s": setup,
                   "first_iteration_end": ends[0], "runs": self.runs, "epochs": self.epochs,
                   "iterations_per_epoch": self.iterations, "val_iterations_per_epoch": self.val_iterations,
                   "batch_size": self.batch_size, "configuration": self.configuration}
        basis = (f"{max(1, len(ends) - 1)} training iteration(s), {t_train:.2f} s each; validation "
                 f"{t_val_used:.2f} s per iteration; {self.runs} run(s) x {self.epochs} epochs x "
                 f"({self.iterations} + {self.val_iterations} validation) iterations")
        estimate = Estimate("training", seconds, self.device, basis, details, made_after_s=now - self.job_started)
        if estimate.long_on_cpu:
            estimate.advice = training_advice(
                seconds=seconds, cores=usable_cpu_count(), configuration=self.configuration,
                batch_size=self.batch_size, epochs=self.epochs * self.runs, iterations_per_epoch=self.iterations,
                val_iterations_per_epoch=self.val_iterations, train_iteration_s=t_train, val_iteration_s=t_val_used)
        self.first = estimate
        self.emit(estimate.event())
