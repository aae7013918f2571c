"""Up-front duration estimates for training and prediction, and the faster choices to offer when a job is long.

Pure arithmetic on timings measured on the chosen device (a few training iterations, a few sliding-window tiles):
no torch here. The measuring is done where the work runs (``training/clock.py``, ``inference/tiles.py``); the
estimate travels as an ``estimate`` progress event and is recorded in the model manifest (training) or the
prediction's ``summary.json`` folder (``prediction_estimate.json``) next to the real time, so its accuracy can be
checked (``benchmarks/bench_estimate.py``).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Optional

from backsplit.runtime.progress import ProgressEvent, Stage, format_duration

LONG_JOB_S = 15 * 60            # a CPU job longer than this gets the plain warning and the faster choices
# Rough guide, NOT measured by BackSplit: nnU-Net's documented epoch times (documentation/benchmarking.md: 250
# iterations of 3d_fullres in roughly 30-60 s on a recent GPU) against ~65 s per such iteration on 2 CPU cores
# (measured here) put a GPU at very roughly 150-600 CPU cores' worth; the range shown is cpu_time * cores / 600 ..
# cpu_time * cores / 150.
GPU_CORE_EQUIVALENT = (150.0, 600.0)
VALIDATION_COST = 0.4           # a validation iteration (forward only) against a training iteration, until measured


@dataclass
class Estimate:
    job: str                          # "training" or "prediction"
    seconds: float                    # expected duration of the whole job, from its start
    device: str                       # "cpu", "cuda", "mps"
    basis: str                        # what was timed, in words
    details: dict = field(default_factory=dict)    # the numbers behind it (seconds per iteration / tile, counts)
    advice: list = field(default_factory=list)     # faster choices with their cost (long CPU jobs)
    made_after_s: float = 0.0         # seconds into the job when the estimate was made
    created: float = field(default_factory=time.time)

    @property
    def long_on_cpu(self) -> bool:
        return self.device == "cpu" and self.seconds > LONG_JOB_S

    def message(self) -> str:
        where = "on this CPU" if self.device == "cpu" else f"on {self.device}"
        text = f"expected {self.job} time: about {format_duration(self.seconds)} {where}"
        if self.made_after_s >= 10:  # planning/preprocessing already ran: the total alone read as the time to come
            left = max(0.0, self.seconds - self.made_after_s)
            text += f" in all, {format_duration(self.made_after_s)} done, about {format_duration(left)} left"
        text += f" (timed: {self.basis})"
        if self.long_on_cpu:
            text += ". This is a long job for a CPU. Faster choices: " + "; ".join(self.advice)
        return text

    def to_json(self) -> dict:
        return asdict(self)

    def event(self) -> ProgressEvent:
        return ProgressEvent(Stage.ESTIMATE, self.message(), None, None, self.to_json())

    @staticmethod
    def from_json(raw: dict) -> "Estimate":
        known = {k: raw[k] for k in ("job", "seconds", "device", "basis", "details", "advice", "made_after_s",
                                     "created") if k in raw}
        return Estimate(**known)


def gpu_range(cpu_seconds: float, cpu_cores: int) -> tuple[float, float]:
    """A rough (fast, slow) range for the same job on a recent GPU; an assumption, see GPU_CORE_EQUIVALENT."""
    cores = max(1, int(cpu_cores))
    return cpu_seconds * cores / GPU_CORE_EQUIVALENT[1], cpu_seconds * cores / GPU_CORE_EQUIVALENT[0]


def _gpu_advice(seconds: float, cores: int) -> str:
    fast, slow = gpu_range(seconds, cores)
    return (f"a GPU (--device cuda): very roughly {format_duration(fast)} to {format_duration(slow)} (a rough guide "
            "from nnU-Net's published epoch times, not measured here); no loss of accuracy")


def training_seconds(*, train_iteration_s: float, epochs: int, iterations_per_epoch: int,
                     val_iterations_per_epoch: int, val_iteration_s: Optional[float] = None,
                     epoch_overhead_s: float = 0.0, setup_s: float = 0.0, runs: int = 1) -> float:
    """Seconds for ``runs`` trainings (folds, binary twin) of ``epochs`` epochs:
    runs * (setup + epochs * (iterations * t_train + val_iterations * t_val + overhead))."""
    t_val = VALIDATION_COST * train_iteration_s if val_iteration_s is None else val_iteration_s
    per_epoch = iterations_per_epoch * train_iteration_s + val_iterations_per_epoch * t_val + epoch_overhead_s
    return max(1, runs) * (setup_s + epochs * per_epoch)


def training_advice(*, seconds: float, cores: int, configuration: str, batch_size: int, epochs: int,
                    iterations_per_epoch: int, val_iterations_per_epoch: int, train_iteration_s: float,
                    val_iteration_s: float) -> list[str]:
    """The faster choices for a training, each with its expected time (linear models) and its cost."""
    advice = [_gpu_advice(seconds, cores)]
    if configuration != "2d":
        advice.append("--configuration 2d: several times faster per iteration on most plans (not timed here); "
                      "less 3D context, often a little lower Dice on 3D structures")
    if batch_size > 2:
        smaller = max(2, batch_size // 4)
        advice.append(f"--batch-size {smaller}: about {format_duration(seconds * smaller / batch_size)} (time "
                      "per iteration scales with the batch on a CPU); noisier gradient steps, sees fewer patches")
    val_share = epochs * val_iterations_per_epoch * val_iteration_s
    if val_share > 0.3 * seconds and val_iterations_per_epoch > 5:
        fewer = max(2, val_iterations_per_epoch // 5)
        saved = epochs * (val_iterations_per_epoch - fewer) * val_iteration_s
        advice.append(f"--val-iterations {fewer}: about {format_duration(seconds - saved)} (validation is "
                      f"{100 * val_share / seconds:.0f}% of the time); a noisier pseudo-Dice curve, same model")
    if epochs * iterations_per_epoch > 200:
        advice.append(f"fewer --epochs or --iterations-per-epoch: time scales linearly (half the epochs: about "
                      f"{format_duration(seconds / 2)}); an undertrained model")
    return advice


def prediction_seconds(*, tiles: int, tile_s: float, voxels: int, voxel_overhead_s: float, cases: int,
                       case_overhead_s: float = 0.0) -> float:
    """Seconds to predict: tiles * t_tile + voxels * t_voxel (reading, resampling, writing) + per-case set-up."""
    return tiles * tile_s + voxels * voxel_overhead_s + cases * case_overhead_s


def prediction_advice(*, seconds: float, cores: int, mirroring: bool, seconds_without_mirroring: Optional[float],
                      configuration: str) -> list[str]:
    advice = [_gpu_advice(seconds, cores)]
    if mirroring and seconds_without_mirroring is not None:
        advice.append(f"without test-time mirroring (backsplit predict --no-mirroring; Slicer's Fast preview also "
                      f"uses one fold only): about {format_duration(seconds_without_mirroring)}, usually a slightly "
                      "lower Dice")
    if configuration != "2d":
        advice.append("a model trained with --configuration 2d: faster per case; often a little lower Dice on 3D "
                      "structures")
    return advice
