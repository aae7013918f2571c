"""What executors share: the command that runs one unit, the result of a unit, reading its status and log tail.

An executor has one method, ``run(study_dir, unit_ids, echo) -> dict[unit_id, UnitResult]``: it starts each unit
(``python -m backsplit.study.runtask STUDY UNIT``, stdout appended to ``units/<unit>/log.txt``) and waits for all of
them; it decides nothing about what to run (the runner does) and never trains by itself."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Protocol, Sequence

from backsplit.runtime.exits import ended_text

Echo = Callable[[str], None]


@dataclass
class UnitResult:
    unit_id: str
    ok: bool
    returncode: Optional[int]
    message: str = ""
    log_tail: str = ""
    state: str = ""           # executor's own state (e.g. SLURM's COMPLETED / FAILED / CANCELLED)


class Executor(Protocol):
    def run(self, study_dir: Path, unit_ids: Sequence[str], echo: Echo) -> dict[str, UnitResult]:
        """Run the units (in any order, possibly in parallel) and return one result per unit."""


def unit_command(study_dir: Path, unit_id: str, python: Optional[str] = None) -> list[str]:
    return [python or sys.executable, "-m", "backsplit.study.runtask", str(Path(study_dir).resolve()), unit_id]


def unit_folder(study_dir: Path, unit_id: str) -> Path:
    return Path(study_dir) / "units" / unit_id


def log_path(study_dir: Path, unit_id: str) -> Path:
    return unit_folder(study_dir, unit_id) / "log.txt"


def log_tail(study_dir: Path, unit_id: str, lines: int = 20) -> str:
    path = log_path(study_dir, unit_id)
    if not path.is_file():
        return "(no log written)"
    with path.open("rb") as handle:
        handle.seek(0, 2)
        size = handle.tell()
        handle.seek(max(0, size - 64_000))
        text = handle.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def read_result(study_dir: Path, unit_id: str, returncode: Optional[int] = None, state: str = "") -> UnitResult:
    """The unit's outcome from the status.json that runtask writes (missing: the process died before writing it)."""
    path = unit_folder(study_dir, unit_id) / "status.json"
    try:
        status = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        status = None
    if status is None:
        how = ended_text(returncode) if returncode is not None and returncode < 0 else f"exit code {returncode}"
        why = f"ended without a status ({how}{', ' + state if state else ''})"   # e.g. killed by SIGKILL
        return UnitResult(unit_id, False, returncode, why, log_tail(study_dir, unit_id), state)
    ok = bool(status.get("ok"))
    return UnitResult(unit_id, ok, int(status.get("returncode", returncode or 0)), str(status.get("message", "")),
                      "" if ok else log_tail(study_dir, unit_id), state)
