"""Start one training on a SLURM cluster from the training panel, and follow it like a local training.

``ClusterTraining(options, config).start()`` writes the options file and an sbatch script (nnU-Net's variables for
this training exported in it, resources from ``backsplit.study.slurm.SlurmConfig``), submits it with ``sbatch`` and
then behaves like ``backsplit.training.process.TrainingProcess`` for the panel's timer: ``poll_events()`` reads the
progress events the training prints into the job's output file (a shared file system between this machine and the
nodes is assumed, as for any SLURM use), ``is_running()`` asks ``squeue``, ``cancel()`` calls ``scancel``.
No Qt here; SLURM does the scheduling, the node runs the same ``backsplit.training.worker`` as a local training.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path
from typing import Callable, Optional

from backsplit.errors import BackSplitError
from backsplit.runtime.childprocess import python_executable
from backsplit.runtime.progress import ProgressEvent, parse_event_line
from backsplit.study.slurm import SlurmConfig
from backsplit.training.options import TrainOptions
from backsplit.training.process import training_command, training_environment

EXPORTED = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_def_n_proc", "nnUNet_compile",
            "BACKSPLIT_N_PROC_DA", "PYTHONUNBUFFERED")


def training_script(options_file: Path, env: dict, config: SlurmConfig, output: Path, python: str) -> str:
    """The sbatch script of one training (pure)."""
    lines = ["#!/bin/bash", f"#SBATCH --job-name={config.job_name}-train", f"#SBATCH --output={output}"]
    lines += [f"#SBATCH {option}" for option in config.directives()]
    lines += [f"export {key}={shlex.quote(env[key])}" for key in EXPORTED if key in env]
    lines += ["exec " + " ".join(shlex.quote(a) for a in training_command(options_file, python)), ""]
    return "\n".join(lines)


class ClusterTraining:
    def __init__(self, options: TrainOptions, config: SlurmConfig = SlurmConfig(),
                 run: Callable[..., subprocess.CompletedProcess] = subprocess.run):
        options.validate()
        self.options = options
        self.config = config
        self._run = run
        self.job_id: Optional[str] = None
        self.log_lines: list[str] = []
        self.result_models: list[str] = []
        self.error: Optional[str] = None
        self.cancelled = False
        self._offset = 0
        self._final: Optional[int] = None
        jobs = Path(options.work_dir).resolve() / "jobs"
        jobs.mkdir(parents=True, exist_ok=True)
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        self.options_file = jobs / f"train-{stamp}.json"
        self.script_file = jobs / f"train-{stamp}.sbatch"
        self.output_file = jobs / f"train-{stamp}.out"

    def _call(self, args: list[str]) -> subprocess.CompletedProcess:
        try:
            return self._run(args, capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            raise BackSplitError(f"'{args[0]}' was not found: the SLURM client commands must be installed here to "
                                 "train on the cluster") from None

    def start(self) -> "ClusterTraining":
        self.options_file.write_text(self.options.to_json(), encoding="utf-8")
        env = training_environment(self.options)
        self.script_file.write_text(training_script(self.options_file, env, self.config, self.output_file,
                                                    self.config.python or python_executable()), encoding="utf-8")
        result = self._call(["sbatch", "--parsable", str(self.script_file)])
        if result.returncode != 0:
            raise BackSplitError(f"sbatch refused the training: {(result.stderr or result.stdout).strip()}")
        self.job_id = result.stdout.strip().split(";")[0]
        return self

    def poll_events(self) -> list[ProgressEvent]:
        """Events printed by the training since the last call (log lines as 'log' events); never blocks long."""
        if not self.output_file.is_file():
            return []
        with self.output_file.open("r", encoding="utf-8", errors="replace") as handle:
            handle.seek(self._offset)
            text = handle.read()
        complete = text[: text.rfind("\n") + 1]   # keep a half-written last line for the next call
        self._offset += len(complete.encode("utf-8"))
        events = []
        for line in complete.splitlines():
            event = parse_event_line(line)
            if event is None:
                self.log_lines.append(line)
                event = ProgressEvent("log", line)
            elif event.stage == "done":
                self.result_models = list(event.data.get("models", []))
                self._final = 0
            elif event.stage == "error":
                self.error = event.message
                self._final = 1
            events.append(event)
        return events

    def is_running(self) -> bool:
        if self.job_id is None:
            return False
        result = self._call(["squeue", "-h", "-j", self.job_id, "-o", "%T"])
        return result.returncode == 0 and bool(result.stdout.strip())

    @property
    def returncode(self) -> Optional[int]:
        """0 done, 1 the training reported an error, 2 the job ended without a final event; None while running."""
        if self._final is not None:
            return self._final
        if self.job_id is None or self.is_running():
            return None
        self.poll_events()
        return self._final if self._final is not None else (130 if self.cancelled else 2)

    def cancel(self, grace_seconds: float = 0.0, wait: bool = False) -> None:
        """``scancel`` the job (SLURM ends the process tree on the node). Same signature as ``ChildProcess.cancel``
        so the panel treats both alike; ``scancel`` returns at once, so ``wait`` and ``grace_seconds`` change
        nothing (SLURM applies its own KillWait grace)."""
        if self.job_id is not None:
            self.cancelled = True
            self._call(["scancel", self.job_id])


def slurm_config(config_file: Optional[Path], partition: str = "") -> SlurmConfig:
    """The panel's SLURM settings: the optional JSON config file (``backsplit study --slurm-config`` format), then
    the partition typed in the panel when not empty. InputError names the file and the allowed keys."""
    return SlurmConfig.load(config_file,
                            partition=(partition or "").strip() or None)
