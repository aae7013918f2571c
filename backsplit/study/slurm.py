"""SLURM executor: one job array per wave of units (one array task per arm x fold x seed), submitted with
``sbatch``, followed with ``squeue`` (and ``sacct`` when accounting is on), cancelled with ``scancel`` on Ctrl-C.
SLURM does the scheduling; each array task runs ``python -m backsplit.study.runtask STUDY UNIT`` on its node.

Resources come from options or a JSON config file (``--slurm-config``), e.g.
``{"partition": "gpu", "time": "04:00:00", "cpus_per_task": 8, "mem": "32G", "gres": "gpu:1",
"extra_args": ["--account=lab"], "python": "/opt/venvs/backsplit/bin/python", "max_parallel": 10}``.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Optional, Sequence

from backsplit.errors import BackSplitError, InputError
from backsplit.study.executors import Echo, UnitResult, log_path, read_result, shell_line, unit_command

Runner = Callable[..., subprocess.CompletedProcess]


@dataclass
class SlurmConfig:
    partition: Optional[str] = None
    time: Optional[str] = None            # wall time per unit, SLURM format (e.g. "02:00:00")
    cpus_per_task: Optional[int] = None
    mem: Optional[str] = None             # e.g. "16G"
    gres: Optional[str] = None            # e.g. "gpu:1"
    account: Optional[str] = None
    extra_args: list = field(default_factory=list)   # more #SBATCH options, e.g. ["--qos=short"]
    python: Optional[str] = None          # the Python with backsplit on the nodes (default: this one)
    max_parallel: Optional[int] = None    # array throttle (%N)
    poll_s: float = 5.0
    job_name: str = "backsplit-study"

    @staticmethod
    def load(path: Optional[Path], **overrides) -> "SlurmConfig":
        """The config file's values, then every override that is not None."""
        raw: dict = {}
        if path is not None:
            try:
                raw = json.loads(Path(path).read_text(encoding="utf-8"))
            except OSError as exc:
                raise InputError(f"the SLURM config file cannot be read ({exc.strerror})", path=str(path)) from None
            except ValueError as exc:
                raise InputError(f"the SLURM config file is not JSON ({exc})", path=str(path)) from None
            known = {f.name for f in fields(SlurmConfig)}
            unknown = sorted(set(raw) - known)
            if unknown:
                raise InputError(f"unknown SLURM config key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}",
                                 path=str(path))
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return SlurmConfig(**raw)

    def directives(self) -> list[str]:
        options = []
        for flag, value in (("partition", self.partition), ("time", self.time), ("cpus-per-task", self.cpus_per_task),
                            ("mem", self.mem), ("gres", self.gres), ("account", self.account)):
            if value not in (None, ""):
                options.append(f"--{flag}={value}")
        return options + [str(a) for a in self.extra_args]


def array_script(study_dir: Path, unit_ids: Sequence[str], config: SlurmConfig, output_dir: Path) -> str:
    """The sbatch script of one job array: task i runs unit_ids[i], appending to the unit's log.txt."""
    study_dir = Path(study_dir).resolve()
    throttle = f"%{config.max_parallel}" if config.max_parallel else ""
    lines = ["#!/bin/bash", f"#SBATCH --job-name={config.job_name}", f"#SBATCH --array=0-{len(unit_ids) - 1}{throttle}",
             f"#SBATCH --output={output_dir.resolve()}/%A_%a.out", f"#SBATCH --chdir={study_dir}"]
    lines += [f"#SBATCH {option}" for option in config.directives()]
    command = shell_line(unit_command(study_dir, "UNIT_PLACEHOLDER", config.python)).replace("UNIT_PLACEHOLDER",
                                                                                             '"$UNIT"')
    lines += ["set -u", "UNITS=(" + " ".join(unit_ids) + ")", 'UNIT="${UNITS[$SLURM_ARRAY_TASK_ID]}"',
              f'LOG="{study_dir}/units/$UNIT/log.txt"', 'mkdir -p "$(dirname "$LOG")"',
              'echo "--- $(date "+%Y-%m-%d %H:%M:%S") slurm job ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} on '
              '$(hostname)" >> "$LOG"', f'exec {command} >> "$LOG" 2>&1', ""]
    return "\n".join(lines)


class SlurmExecutor:
    def __init__(self, config: SlurmConfig = SlurmConfig(), run: Runner = subprocess.run,
                 sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self._run = run
        self._sleep = sleep

    def _call(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess:
        try:
            result = self._run(args, capture_output=True, text=True, timeout=120)
        except FileNotFoundError:
            raise BackSplitError(f"'{args[0]}' was not found: SLURM's client commands must be on PATH for "
                                 "--executor slurm (run the study on a SLURM login node)") from None
        if check and result.returncode != 0:
            raise BackSplitError(f"{shell_line(args)} failed (exit {result.returncode}): "
                                 f"{(result.stderr or result.stdout).strip()}")
        return result

    def submit(self, study_dir: Path, unit_ids: Sequence[str]) -> str:
        folder = Path(study_dir) / "slurm"
        folder.mkdir(parents=True, exist_ok=True)
        script = folder / f"array-{time.strftime('%Y%m%d-%H%M%S')}-{len(unit_ids)}.sh"
        script.write_text(array_script(study_dir, unit_ids, self.config, folder), encoding="utf-8")
        (folder / (script.stem + ".units.json")).write_text(json.dumps(list(unit_ids)), encoding="utf-8")
        out = self._call(["sbatch", "--parsable", str(script)]).stdout.strip()
        return out.split(";")[0].strip()

    def queued(self, job_id: str) -> dict[str, str]:
        """Array task -> state (PENDING, RUNNING, ...) of the job's tasks still in the queue."""
        result = self._call(["squeue", "-h", "-j", job_id, "-o", "%i|%T"], check=False)
        if result.returncode != 0:   # the job left the queue and SLURM forgot it: nothing queued
            if "Invalid job id" in (result.stderr or ""):
                return {}
            raise BackSplitError(f"squeue failed (exit {result.returncode}): {result.stderr.strip()}")
        states = {}
        for line in result.stdout.splitlines():
            task, _, state = line.strip().partition("|")
            if task:
                states[task] = state
        return states

    def accounting(self, job_id: str) -> dict[int, tuple[str, Optional[int]]]:
        """Array index -> (state, exit code) from sacct; empty when accounting is off."""
        result = self._call(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "JobID,State,ExitCode"], check=False)
        if result.returncode != 0:
            return {}
        states = {}
        for line in result.stdout.splitlines():
            parts = line.split("|")
            if len(parts) >= 3 and "_" in parts[0]:
                index = parts[0].split("_", 1)[1]
                if index.isdigit():
                    code = parts[2].split(":")[0]
                    states[int(index)] = (parts[1].split()[0], int(code) if code.isdigit() else None)
        return states

    def run(self, study_dir: Path, unit_ids: Sequence[str], echo: Echo = print) -> dict[str, UnitResult]:
        if not unit_ids:
            return {}
        job_id = self.submit(study_dir, unit_ids)
        echo(f"submitted SLURM job array {job_id} ({len(unit_ids)} task(s)); cancel with Ctrl-C or scancel {job_id}")
        last: dict[str, str] = {}
        try:
            while True:
                states = self.queued(job_id)
                if states != last:
                    counts: dict[str, int] = {}
                    for state in states.values():
                        counts[state] = counts.get(state, 0) + 1
                    echo(f"job {job_id}: " + (", ".join(f"{k.lower()} {v}" for k, v in sorted(counts.items()))
                                              or "every task has left the queue"))
                    last = states
                if not states:
                    break
                self._sleep(self.config.poll_s)
        except KeyboardInterrupt:
            echo(f"interrupted: scancel {job_id}")
            self._call(["scancel", job_id], check=False)
            raise
        accounting = self.accounting(job_id)
        results = {}
        for index, unit_id in enumerate(unit_ids):
            state, code = accounting.get(index, ("", None))
            result = read_result(study_dir, unit_id, code, state)
            if not result.ok and not log_path(study_dir, unit_id).is_file():
                slurm_out = Path(study_dir) / "slurm" / f"{job_id}_{index}.out"
                if slurm_out.is_file():
                    result.log_tail = "\n".join(slurm_out.read_text(errors="replace").splitlines()[-20:])
            results[unit_id] = result
            echo(f"{'finished' if result.ok else 'FAILED'} {unit_id} (array task {job_id}_{index}"
                 f"{', ' + state if state else ''})")
        return results
