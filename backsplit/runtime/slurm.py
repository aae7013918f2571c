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
import re
import shlex
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

from backsplit.errors import BackSplitError, InputError
from backsplit.runtime.slurm_poll import BackgroundCall

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

    def __post_init__(self):
        self.check()

    def check(self, source: Optional[str] = None) -> "SlurmConfig":
        """Check every value as it stands now (``check_slurm_values``), e.g. after a caller changed ``gres``; a text
        ``extra_args`` is split as a shell would split it. Raises InputError; returns self."""
        if isinstance(self.extra_args, str):
            self.extra_args = split_extra_args(self.extra_args, source)
        check_slurm_values(asdict(self), source)
        return self

    @staticmethod
    def load(path: Optional[Path], **overrides) -> "SlurmConfig":
        """The config file's values, then every override that is not None, all checked before any use
        (``check_slurm_values``; a JSON null keeps the default). Raises InputError for a file that cannot be read,
        is not a JSON object, has keys not in the config, or a value of the wrong type, out of range or holding a
        control character (naming the file, the key and the value)."""
        raw: Any = {}
        source = str(path) if path is not None else None
        if path is not None:
            try:
                raw = json.loads(Path(path).read_text(encoding="utf-8"))
            except OSError as exc:
                raise InputError(f"the SLURM config file cannot be read ({exc.strerror})", path=source) from None
            except ValueError as exc:
                raise InputError(f"the SLURM config file is not JSON ({exc})", path=source) from None
            check_slurm_values(raw, source)
        raw = {k: v for k, v in raw.items() if v is not None}
        raw.update({k: v for k, v in overrides.items() if v is not None})
        if isinstance(raw.get("extra_args"), str):
            raw["extra_args"] = split_extra_args(raw["extra_args"], source)
        check_slurm_values(raw, source)
        return SlurmConfig(**raw)

    def directives(self) -> list[str]:
        """The sbatch options of the resources set ("--partition=gpu", ...), then ``extra_args``."""
        options = []
        for flag, value in (("partition", self.partition), ("time", self.time), ("cpus-per-task", self.cpus_per_task),
                            ("mem", self.mem), ("gres", self.gres), ("account", self.account)):
            if value not in (None, ""):
                options.append(f"--{flag}={value}")
        return options + [str(a) for a in self.extra_args]


# key -> (Python types allowed, what the message asks for); every value lands in a line of a bash job script
# ("#SBATCH --key=value"), so a line break would start a script line of its own (run on the node)
SLURM_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "partition": ((str,), 'a text without spaces, e.g. "gpu"'),
    "time": ((str,), 'a SLURM time, e.g. "04:00:00" or "1-00:00:00"'),
    "cpus_per_task": ((int,), "a whole number >= 1"),
    "mem": ((str,), 'a SLURM memory size, e.g. "32G"'),
    "gres": ((str,), 'a text without spaces, e.g. "gpu:1"'),
    "account": ((str,), "a text without spaces"),
    "extra_args": ((list,), 'a list of sbatch options, e.g. ["--qos=short"] (or one text "--qos=short --nice=10")'),
    "python": ((str,), "the path of a Python with backsplit installed on the nodes"),
    "max_parallel": ((int,), "a whole number >= 1"),
    "poll_s": ((int, float), "seconds between queue checks, a number > 0"),
    "job_name": ((str,), "a text without spaces"),
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
# sbatch --time: "min", "min:sec", "h:m:s", "d-h", "d-h:m", "d-h:m:s" (sbatch(1)); --mem: a number, unit K/M/G/T
_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$|^(UNLIMITED|INFINITE)$", re.I)
_MEM = re.compile(r"^\d+(\.\d+)?[KMGT]?B?$", re.I)
_JSON_KIND = {list: "a list", dict: "an object", str: "a text", int: "a number", float: "a number",
              bool: "true/false", type(None): "null"}


def control_character(text: str) -> Optional[str]:
    """The first control character of ``text`` (line breaks included) as "U+000A", or None."""
    found = _CONTROL.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"


def split_extra_args(text: str, source: Optional[str] = None) -> list[str]:
    """A text ``extra_args`` ("--qos=short --nice=10") split as a shell would (``shlex.split``). InputError for a
    control character or unbalanced quotes."""
    bad = control_character(text)
    if bad:
        raise InputError(f"SLURM config 'extra_args' holds a control character ({bad}, e.g. a line break) in "
                         f"{text!r}; it would become a line of the job script of its own. Remove it", path=source)
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise InputError(f"SLURM config 'extra_args' {text!r} cannot be split into options ({exc}); give a list "
                         'such as ["--qos=short"]', path=source) from None


def check_slurm_values(raw: Any, source: Optional[str] = None) -> None:
    """Check a SLURM config (what the JSON file holds, or the merged values) before anything is written or
    submitted: a JSON object, known keys, the type of each value (true/false is not a number), no control
    characters, sbatch options starting with '-', SLURM's time and memory syntax, no spaces in names, whole numbers
    >= 1, ``poll_s`` > 0. None means "not set". Raises InputError naming the key, the value and what is allowed."""
    if not isinstance(raw, Mapping):
        raise InputError('the SLURM config must be a JSON object ({"partition": "gpu", ...}); it holds '
                         f"{_JSON_KIND.get(type(raw), type(raw).__name__)}", path=source)
    unknown = sorted(str(k) for k in raw if k not in SLURM_KEYS)
    if unknown:
        raise InputError(f"unknown SLURM config key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(SLURM_KEYS))}",
                         path=source)
    for key, value in raw.items():
        if value is None:
            continue
        types, wanted = SLURM_KEYS[key]
        if key == "extra_args" and isinstance(value, str):
            value = split_extra_args(value, source)
        if isinstance(value, bool) or not isinstance(value, types):
            raise InputError(f"SLURM config '{key}' is {value!r} ({_JSON_KIND.get(type(value), type(value).__name__)}"
                             f"); it must be {wanted}", path=source)
        for item in value if isinstance(value, list) else [value]:
            if key == "extra_args" and not isinstance(item, str):
                raise InputError(f"SLURM config 'extra_args' holds {item!r}; every entry must be a text such as "
                                 '"--qos=short"', path=source)
            bad = control_character(item) if isinstance(item, str) else None
            if bad:
                raise InputError(f"SLURM config '{key}' holds a control character ({bad}, e.g. a line break) in "
                                 f"{item!r}; it would become a line of the job script of its own. Remove it",
                                 path=source)
            if key == "extra_args" and not item.startswith("-"):
                raise InputError(f"SLURM config 'extra_args' entry {item!r} is not an sbatch option (they start "
                                 'with "-", e.g. "--qos=short")', path=source)
        wrong = ((key in ("cpus_per_task", "max_parallel") and value < 1) or (key == "poll_s" and not value > 0)
                 or (key == "time" and not _TIME.match(value)) or (key == "mem" and not _MEM.match(value))
                 or (key in ("job_name", "partition", "gres", "account") and re.search(r"\s", value)))
        if wrong:
            raise InputError(f"SLURM config '{key}' is {value!r}; it must be {wanted}", path=source)


def check_directive_path(path, what: str) -> None:
    """A path that goes into an ``#SBATCH`` line (``--chdir``, ``--output``): sbatch ends the value at white space
    and a line break would start a script line. Raises InputError naming the path."""
    text = str(path)
    bad = control_character(text)
    if bad or re.search(r"\s", text):
        raise InputError(f"the {what} path holds {'a control character (' + bad + ')' if bad else 'a space'}, "
                         "which an #SBATCH line cannot carry; use a folder without spaces", path=text)


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

    @staticmethod
    def submit_command(script: Path, options: Sequence[str] = ()) -> list[str]:
        """``sbatch --parsable [OPTIONS] SCRIPT`` (options such as ``--output=PATH`` on the command line: no shell, so
        spaces are safe)."""
        return ["sbatch", "--parsable", *map(str, options), str(script)]

    @staticmethod
    def job_id(answer: str) -> str:
        """The job id in the answer of ``sbatch --parsable`` ("jobid[;cluster]"); "" when there is none."""
        return (answer or "").strip().split(";")[0].strip()

    def submit(self, script: Path, options: Sequence[str] = ()) -> str:
        """Submit and wait for sbatch's answer (``submit_command``); returns the job id."""
        return self.job_id(self.call(self.submit_command(script, options)).stdout)

    def start(self, args: Sequence[str], stdout_file: Optional[Path] = None,
              stderr_file: Optional[Path] = None) -> BackgroundCall:
        """Start a client command without waiting for it (``runtime.slurm_poll.BackgroundCall``): what a panel's
        timer uses, so that Slicer's GUI thread never waits for slurmctld (audit N3). Raises BackSplitError when the
        command is not on PATH."""
        return BackgroundCall(args, self.missing, stdout_file, stderr_file)

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
