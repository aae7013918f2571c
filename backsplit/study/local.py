"""Local executor: units one after another, or one per GPU at the same time when several GPUs are given
(nnU-Net's guidance: one fold per GPU), or on a CPU-only machine ``parallel`` units at the same time, each with its
share of the cores. Each unit runs in its own process group; Ctrl-C ends them all."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from backsplit.runtime.devices import usable_cpu_count
from backsplit.study.executors import Echo, UnitResult, log_path, read_result, unit_command
from backsplit.study.gpus import gpu_groups


def visible_gpus() -> list[str]:
    """The GPUs units may use: the entries of ``CUDA_VISIBLE_DEVICES`` when it is set (a shared machine's share;
    ``nvidia-smi`` ignores it), else the indices from ``nvidia-smi -L`` (none when the tool is missing or fails);
    no torch import needed."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [entry.strip() for entry in visible.split(",") if entry.strip() and entry.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(x for x in out.stdout.splitlines() if x.startswith("GPU "))]


class LocalExecutor:
    """``gpus``: device indices to spread units over (one unit per GPU at a time); empty: one unit at a time.
    ``gpus_per_unit`` > 1 (a DDP training per unit): each unit gets a group of that many GPUs of the pool as its
    CUDA_VISIBLE_DEVICES (e.g. "0,1"), one unit per group at a time (``gpus.gpu_groups``).
    ``parallel`` (no GPUs given): that many units at the same time, each with ``OMP_NUM_THREADS`` = cores // parallel
    (at least 1) unless the environment already sets it; on few cores this is faster than one unit using every
    core, since nnU-Net's data loading and augmentation run in the unit's main thread.

    Raises ValueError when ``parallel`` < 1."""

    def __init__(self, gpus: Sequence[str] = (), python: Optional[str] = None, poll_s: float = 0.5,
                 popen: Callable[..., subprocess.Popen] = subprocess.Popen, nice: int = 0, gpus_per_unit: int = 1,
                 parallel: int = 1):
        if int(parallel) < 1:
            raise ValueError(f"parallel must be at least 1 unit, not {parallel}")
        self.gpus = gpu_groups(gpus, gpus_per_unit)   # slots: "0" (or "0,1" for 2 GPUs a unit)
        self.parallel = 1 if self.gpus else int(parallel)
        self.python = python
        self.poll_s = poll_s
        self.popen = popen
        self.nice = nice

    def _start(self, study_dir: Path, unit_id: str, gpu: Optional[str]) -> subprocess.Popen:
        log = log_path(study_dir, unit_id)
        log.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        if self.parallel > 1 and not env.get("OMP_NUM_THREADS", "").strip().isdigit():
            env["OMP_NUM_THREADS"] = str(max(1, usable_cpu_count() // self.parallel))
        command = unit_command(study_dir, unit_id, self.python)
        if self.nice:
            command = ["nice", "-n", str(self.nice)] + command
        with log.open("a", encoding="utf-8") as handle:
            handle.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} local start{f' (GPU {gpu})' if gpu else ''}\n")
            handle.flush()
            return self.popen(command, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                              start_new_session=True)

    def run(self, study_dir: Path, unit_ids: Sequence[str], echo: Echo = print) -> dict[str, UnitResult]:
        pending = list(unit_ids)
        slots: list[Optional[str]] = list(self.gpus) or [None]
        running: dict[str, tuple[subprocess.Popen, Optional[str]]] = {}
        results: dict[str, UnitResult] = {}
        try:
            while pending or running:
                free = [s for s in slots if s not in {gpu for _, gpu in running.values()}] if self.gpus else \
                    [None] * max(0, self.parallel - len(running))
                while pending and free:
                    unit_id, gpu = pending.pop(0), free.pop(0)
                    running[unit_id] = (self._start(study_dir, unit_id, gpu), gpu)
                    echo(f"started {unit_id}{f' on GPU {gpu}' if gpu is not None else ''}")
                for unit_id, (process, _) in list(running.items()):
                    code = process.poll()
                    if code is None:
                        continue
                    del running[unit_id]
                    results[unit_id] = read_result(study_dir, unit_id, code)
                    echo(f"{'finished' if results[unit_id].ok else 'FAILED'} {unit_id}")
                time.sleep(self.poll_s)
        except KeyboardInterrupt:
            echo(f"interrupted: ending {len(running)} running unit(s)")
            for process, _ in running.values():
                _end_group(process)
            raise
        return results


def _end_group(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM to the unit's process group, SIGKILL after a grace period."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
