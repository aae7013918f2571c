"""Start, follow and cancel a training run in a child process (command line and Slicer panel alike)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

from backsplit.runtime.childprocess import ChildProcess, PopenFactory, child_environment, python_executable
from backsplit.runtime.progress import ProgressEvent
from backsplit.training.environment import nnunet_environment
from backsplit.training.options import TrainOptions

import subprocess


def append_log(path: Path, events) -> None:
    """Third-party output of a child (its 'log' events) appended to ``path``; BackSplit's own events as one line."""
    lines = [e.message if e.stage == "log" else f"[backsplit {e.stage}] {e.message}" for e in events]
    if lines:
        with open(path, "a", encoding="utf-8", errors="replace") as out:
            out.write("\n".join(lines) + "\n")


def training_command(options_file: Path, python: str) -> list[str]:
    return [python, "-m", "backsplit.training.worker", str(options_file)]


def training_environment(options: TrainOptions, base_env=None) -> dict[str, str]:
    env = nnunet_environment(Path(options.dataset_dir).resolve().parent, Path(options.work_dir).resolve(), base_env,
                             augmentation_workers=options.num_workers, processes=options.preprocess_processes)
    return child_environment(env)


class TrainingProcess(ChildProcess):
    """``TrainingProcess(options).start()``; then ``poll_events()`` from a timer; ``cancel()`` ends the tree."""

    def __init__(self, options: TrainOptions, python: Optional[str] = None, popen: PopenFactory = subprocess.Popen,
                 base_env=None):
        options.validate()
        self.options = options
        jobs = Path(options.work_dir) / "jobs"
        jobs.mkdir(parents=True, exist_ok=True)
        self.options_file = jobs / f"train-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{id(self)}.json"
        self.options_file.write_text(options.to_json(), encoding="utf-8")
        super().__init__(training_command(self.options_file, python or python_executable()),
                         training_environment(options, base_env), popen=popen)
        self.result_models: list[str] = []
        self.error: Optional[str] = None
        self.log_file = self.options_file.with_suffix(".log")   # nnU-Net's and torch's own output, kept aside
        self.estimate: Optional[dict] = None

    def poll_events(self) -> list[ProgressEvent]:
        events = super().poll_events()
        append_log(self.log_file, events)
        for event in events:
            if event.stage == "estimate":
                self.estimate = dict(event.data)
            elif event.stage == "done":
                self.result_models = list(event.data.get("models", []))
            elif event.stage == "error":
                self.error = event.message
        return events
