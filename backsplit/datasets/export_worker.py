"""The export in a child process, fed with cases through files: ``python -m backsplit.datasets.export_worker
REQUEST.json``. The Slicer panel reads each case from the scene in short timer steps and hands it over
(``backsplit.io.handover``); this child runs ``iter_export`` over the handed cases (checks, label composition,
context, compression, dataset.json, the moves), so no whole-volume work runs in Slicer's process. Events on stdout
(the engine's ``export`` events, ``handover`` requests), the ``done`` event carries the ``ExportResult`` as JSON
(``result_to_json``). A cancel (``handover.request_cancel``) is seen before each case and between two events: the
engine then removes its staging folder, nothing is written.
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

from backsplit.datasets.export import ExportRequest, ExportResult, iter_export
from backsplit.io.handover import CANCEL_TEXT, handed_cases, handover_cancelled, relay_until_done
from backsplit.labels.context import ContextSpec
from backsplit.runtime.childprocess import PopenFactory
from backsplit.runtime.progress import ProgressEvent, emit_event
from backsplit.runtime.workerprocess import JsonRequest, WorkerProcess, run_worker

MODULE = "backsplit.datasets.export_worker"
CANCELLED = f"export {CANCEL_TEXT}"


def request_to_json(request: ExportRequest) -> dict:
    """An ``ExportRequest`` as JSON types (paths as text, the context as its fields); ``request_from_json`` inverts
    it exactly."""
    raw = {f.name: getattr(request, f.name) for f in dataclasses.fields(request)}
    raw["out_root"] = str(request.out_root)
    raw["context"] = dataclasses.asdict(request.context)
    for key in ("targets", "supports", "channel_names"):
        raw[key] = list(raw[key])
    raw["name_mapping"], raw["colors"] = dict(request.name_mapping), {k: list(v) for k, v in request.colors.items()}
    return raw


def request_from_json(raw: dict) -> ExportRequest:
    raw = dict(raw)
    raw["out_root"] = Path(raw["out_root"])
    raw["context"] = ContextSpec(**raw["context"])
    raw["colors"] = {k: tuple(v) for k, v in raw["colors"].items()}
    return ExportRequest(**raw)


def result_to_json(result: ExportResult) -> dict:
    return {"dataset_dir": str(result.dataset_dir), "case_ids": list(result.case_ids),
            "binary_dataset_dir": str(result.binary_dataset_dir) if result.binary_dataset_dir else None,
            "negative_cases": list(result.negative_cases), "absent_segments": dict(result.absent_segments),
            "seconds": float(result.seconds)}


def result_from_json(raw: dict) -> ExportResult:
    twin = raw.get("binary_dataset_dir")
    return ExportResult(Path(raw["dataset_dir"]), Path(twin) if twin else None, list(raw["case_ids"]),
                        list(raw["negative_cases"]), dict(raw["absent_segments"]), float(raw["seconds"]))


@dataclass
class ExportJobRequest(JsonRequest):
    export: dict                          # request_to_json(ExportRequest)
    cases: list                           # [[case_id, description], ...] in export order
    handover_dir: str                     # where the parent writes the cases (backsplit.io.handover)
    parent_pid: Optional[int] = None      # the child stops when its parent went away (POSIX)


emit = emit_event


def main(argv: Optional[list] = None) -> int:
    """``python -m backsplit.datasets.export_worker REQUEST.json``: exit 0, 1 (the user's error), 2 (unexpected,
    traceback in the log) or 130 (cancelled)."""
    return run_worker(_export, ExportJobRequest, "export", emit, argv)


def _export(job: ExportJobRequest) -> ProgressEvent:
    root = Path(job.handover_dir)
    try:
        sources = handed_cases(job.cases, root, emit, job.parent_pid)
        events = iter_export(sources, request_from_json(job.export), lambda: handover_cancelled(root, job.parent_pid))
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return relay_until_done(events, root, job.parent_pid, emit, result_to_json, CANCELLED)


class ExportProcess(WorkerProcess):
    """The export child: ``ExportProcess(request).start()``, ``poll_events()``, ``cancel()``."""

    def __init__(self, request: ExportJobRequest, python: Optional[str] = None,
                 popen: PopenFactory = subprocess.Popen, base_env=None):
        super().__init__(MODULE, request, "backsplit-export-", python, popen, base_env,
                         request_file=Path(request.handover_dir) / "request.json")


def job_request(request: ExportRequest, cases: list, handover_dir: Path) -> ExportJobRequest:
    """The child's request for ``cases`` ([[case_id, description], ...]) handed over in ``handover_dir``."""
    return ExportJobRequest(request_to_json(request), [list(c) for c in cases], str(handover_dir), os.getpid())


if __name__ == "__main__":
    sys.exit(main())
