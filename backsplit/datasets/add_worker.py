"""``dataset add`` in a child process, fed with cases through files: ``python -m backsplit.datasets.add_worker
REQUEST.json``. The Slicer panel's *Add to dataset* reads the corrected case from the scene in short timer steps and
hands it over (``backsplit.io.handover``); the checks, label merge, compression and the version swap
(``add.iter_add``) run here, never in Slicer's process. The ``done`` event carries the ``AddResult``
(``result_to_json`` / ``result_from_json``). A cancel is seen while waiting for the case and between two events.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from backsplit.datasets.add import AddRequest, AddResult, iter_add
from backsplit.io.handover import CANCEL_TEXT, handed_cases, handover_cancelled, relay_until_done
from backsplit.runtime.childprocess import PopenFactory
from backsplit.runtime.progress import ProgressEvent, emit_event
from backsplit.runtime.workerprocess import JsonRequest, WorkerProcess, run_worker

MODULE = "backsplit.datasets.add_worker"
PATH_FIELDS = ("dataset_dir", "binary_dataset_dir", "previous_version_dir")


def request_to_json(request: AddRequest) -> dict:
    """An ``AddRequest`` as JSON types; ``AddRequest(**raw)`` with ``dataset_dir`` as a path gives it back."""
    raw = dataclasses.asdict(request)
    raw["dataset_dir"], raw["ignore_segments"] = str(request.dataset_dir), list(request.ignore_segments)
    raw["name_mapping"] = dict(request.name_mapping)
    return raw


def result_to_json(result: AddResult) -> dict:
    raw = dataclasses.asdict(result)
    for key in PATH_FIELDS:
        raw[key] = str(raw[key]) if raw[key] is not None else None
    return raw


def result_from_json(raw: dict) -> AddResult:
    raw = dict(raw)
    for key in PATH_FIELDS:
        raw[key] = Path(raw[key]) if raw[key] is not None else None
    return AddResult(**raw)


@dataclass
class AddJobRequest(JsonRequest):
    add: dict                             # request_to_json(AddRequest)
    cases: list                           # [[case_id, description], ...]
    handover_dir: str
    parent_pid: Optional[int] = None


emit = emit_event


def main(argv: Optional[list] = None) -> int:
    """``python -m backsplit.datasets.add_worker REQUEST.json``: exit 0, 1, 2 or 130 (``runtime.exits``)."""
    return run_worker(_add, AddJobRequest, "adding the case", emit, argv)


def _add(job: AddJobRequest) -> ProgressEvent:
    root = Path(job.handover_dir)
    try:
        sources = handed_cases(job.cases, root, emit, job.parent_pid)
        raw = dict(job.add, dataset_dir=Path(job.add["dataset_dir"]))
        events = iter_add(sources, AddRequest(**raw), lambda: handover_cancelled(root, job.parent_pid))
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return relay_until_done(events, root, job.parent_pid, emit, result_to_json, f"adding the case {CANCEL_TEXT}")


class AddProcess(WorkerProcess):
    """The add child: ``AddProcess(request, cases, handover_dir).start()``, ``poll_events()``, ``cancel()``."""

    def __init__(self, request: AddRequest, cases: list, handover_dir: Path, python: Optional[str] = None,
                 popen: PopenFactory = subprocess.Popen):
        job = AddJobRequest(request_to_json(request), [list(c) for c in cases], str(handover_dir), os.getpid())
        super().__init__(MODULE, job, "backsplit-add-", python, popen,
                         request_file=Path(handover_dir) / "request.json")


if __name__ == "__main__":
    sys.exit(main())
