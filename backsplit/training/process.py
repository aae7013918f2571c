"""Start, follow and cancel a training run in a child process (command line and Slicer panel alike).

The shared worker protocol (``runtime/workerprocess.py``) with two training choices: the options file is written
into the work folder (``<work>/jobs/train-<time>-<pid>-<n>.json``, kept beside its log), and the child's
environment carries nnU-Net's variables for this dataset and work folder (``environment.py``).
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Mapping, Optional

from backsplit.runtime.childprocess import PopenFactory, child_environment
from backsplit.runtime.workerprocess import WorkerProcess, worker_command
from backsplit.training.environment import nnunet_environment
from backsplit.training.options import TrainOptions

MODULE = "backsplit.training.worker"


def training_command(options_file: Path, python: str) -> list[str]:
    """``[python, "-m", "backsplit.training.worker", options_file]``: the training child's command line."""
    return worker_command(MODULE, options_file, python)


def training_environment(options: TrainOptions, base_env: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The training child's environment: ``base_env`` (default: this process's) with nnU-Net's variables for the
    options' dataset and work folder, this package on PYTHONPATH and unbuffered output; this process's own
    environment is not changed."""
    env = nnunet_environment(Path(options.dataset_dir).resolve().parent, Path(options.work_dir).resolve(), base_env,
                             augmentation_workers=options.num_workers, processes=options.preprocess_processes,
                             honour_user=options.nnunet_folders)
    return child_environment(env)


def options_file_for(work_dir: Path, suffix: str = ".json") -> Path:
    """A new file name for one training's options in ``<work>/jobs/`` (the folder is made): time, process, count."""
    jobs = Path(work_dir) / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    stamp = f"train-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    n = 0
    while (jobs / f"{stamp}-{n}{suffix}").exists():
        n += 1
    return jobs / f"{stamp}-{n}{suffix}"


class TrainingProcess(WorkerProcess):
    """``TrainingProcess(options).start()``; then ``poll_events()`` from a timer; ``cancel()`` ends the tree.

    Raises InputError from ``options.validate()`` before anything is written. ``result_models``: the model folders
    of the 'done' event; ``log_file``: nnU-Net's and torch's own output, kept beside the options file."""

    def __init__(self, options: TrainOptions, python: Optional[str] = None, popen: PopenFactory = subprocess.Popen,
                 base_env: Optional[Mapping[str, str]] = None):
        options.validate()
        self.options = options
        options_file = options_file_for(options.work_dir)
        super().__init__(MODULE, options, python=python, popen=popen, base_env=training_environment(options, base_env),
                         request_file=options_file, log_file=options_file.with_suffix(".log"))

    @property
    def options_file(self) -> Path:
        """The options file the child reads (``request_file``)."""
        return self.request_file

    @property
    def result_models(self) -> list[str]:
        """The model folders of the 'done' event (empty before it, or after an error)."""
        return list(self.done_data.get("models", []))
