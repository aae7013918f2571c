"""The SLURM client shared by the study's executor (``study/slurm.py``) and training on a cluster
(``training/cluster.py``): resources (``SlurmConfig``), and ``sbatch`` / ``squeue`` / ``sacct`` / ``scancel`` called
as SLURM's own client commands (``SlurmClient``), each with its failure worded for the user.

Resources come from options or a JSON config file (``--slurm-config``), e.g.
``{"partition": "gpu", "time": "04:00:00", "cpus_per_task": 8, "mem": "32G", "gres": "gpu:1",
"extra_args": ["--account=lab"], "python": "/opt/venvs/backsplit/bin/python", "max_parallel": 10}``.
The command formats follow SLURM's man pages (sbatch ``--parsable``: "jobid[;cluster]"; squeue ``-h -o``;
sacct ``-n -P -X``).
"""

from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Optional, Sequence

from backsplit.errors import BackSplitError, InputError

Runner = Callable[..., subprocess.CompletedProcess]


@dataclass
class SlurmConfig:
    """Resources of a SLURM job (one study unit, or one training), as ``#SBATCH`` directives."""
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
        """The config file's values, then every override that is not None. Raises InputError for a file that
        cannot be read, is not JSON, or has keys not in the config (naming them and the allowed ones)."""
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
                raise InputError(f"unknown SLURM config key(s) {', '.join(unknown)}; allowed: "
                                 f"{', '.join(sorted(known))}", path=str(path))
        raw.update({k: v for k, v in overrides.items() if v is not None})
        return SlurmConfig(**raw)

    def directives(self) -> list[str]:
        """The sbatch options of the resources set ("--partition=gpu", ...), then ``extra_args``."""
        options = []
        for flag, value in (("partition", self.partition), ("time", self.time), ("cpus-per-task", self.cpus_per_task),
                            ("mem", self.mem), ("gres", self.gres), ("account", self.account)):
            if value not in (None, ""):
                options.append(f"--{flag}={value}")
        return options + [str(a) for a in self.extra_args]


def shell_line(args: Sequence[str]) -> str:
    """``args`` as one shell command line, each argument quoted where needed."""
    return " ".join(shlex.quote(str(a)) for a in args)


class SlurmClient:
    """SLURM's client commands, run with ``run`` (``subprocess.run``; a stand-in in tests).

    ``missing``: what to tell the user when a command is not on PATH (where to run instead). Every method raises
    BackSplitError naming the command and SLURM's own message when it fails; ``queued`` and ``accounting`` treat a
    job SLURM has forgotten, or accounting that is off, as empty."""

    def __init__(self, run: Runner = subprocess.run, timeout_s: float = 120,
                 missing: str = "SLURM's client commands must be on PATH (run on a SLURM login node)"):
        self.run = run
        self.timeout_s = timeout_s
        self.missing = missing

    def call(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess:
        """Run one client command, its output captured as text; with ``check``, a non-zero exit raises."""
        try:
            result = self.run(args, capture_output=True, text=True, timeout=self.timeout_s)
        except FileNotFoundError:
            raise BackSplitError(f"'{args[0]}' was not found: {self.missing}") from None
        if check and result.returncode != 0:
            raise BackSplitError(f"{shell_line(args)} failed (exit {result.returncode}): "
                                 f"{(result.stderr or result.stdout).strip()}")
        return result

    def submit(self, script: Path) -> str:
        """``sbatch --parsable SCRIPT``; returns the job id."""
        out = self.call(["sbatch", "--parsable", str(script)]).stdout.strip()
        return out.split(";")[0].strip()

    def queued(self, job_id: str) -> dict[str, str]:
        """Task (the job id, or "<job>_<index>" for an array) -> state (PENDING, RUNNING, ...) of the job's tasks
        still in the queue; empty once the job has left it."""
        result = self.call(["squeue", "-h", "-j", job_id, "-o", "%i|%T"], check=False)
        if result.returncode != 0:   # the job left the queue and SLURM forgot it: nothing queued
            if "Invalid job id" in (result.stderr or ""):
                return {}
            raise BackSplitError(f"squeue failed (exit {result.returncode}): {(result.stderr or '').strip()}")
        states = {}
        for line in result.stdout.splitlines():
            task, _, state = line.strip().partition("|")
            if task:
                states[task] = state
        return states

    def accounting(self, job_id: str) -> dict[int, tuple[str, Optional[int]]]:
        """Array index -> (state, exit code) from sacct; empty when accounting is off."""
        result = self.call(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "JobID,State,ExitCode"], check=False)
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

    def cancel(self, job_id: str) -> None:
        """``scancel JOB`` (SLURM ends the job's process tree on its node); its failure is not raised (the job
        may have ended already)."""
        self.call(["scancel", job_id], check=False)
