"""Suggest support structures in a child process, fed with the panel's cases through files: ``python -m
backsplit.supports.suggest_worker REQUEST.json``. The Slicer panel reads each case from the scene in short timer
steps and hands it over (``backsplit.io.handover``); the measures over whole masks (``suggest.suggest``) run here,
never in Slicer's process. The ``done`` event carries the report (``report_to_json``, ``report_from_json``)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from backsplit.io.handover import handed_cases
from backsplit.runtime.childprocess import PopenFactory
from backsplit.runtime.progress import ProgressEvent, Stage, emit_event
from backsplit.runtime.workerprocess import JsonRequest, WorkerProcess, run_worker
from backsplit.supports.suggest import CandidateStats, SuggestCase, SuggestionReport, SuggestOptions, suggest

MODULE = "backsplit.supports.suggest_worker"


def report_to_json(report: SuggestionReport) -> dict:
    """The whole report as JSON types (every field; ``report_from_json`` gives an equal report back)."""
    return dataclasses.asdict(report)


def report_from_json(raw: dict) -> SuggestionReport:
    raw = dict(raw)
    raw["ranked"] = [CandidateStats(**c) for c in raw["ranked"]]
    raw["options"] = SuggestOptions(**raw["options"])
    return SuggestionReport(**raw)


@dataclass
class SuggestJobRequest(JsonRequest):
    options: dict                         # dataclasses.asdict(SuggestOptions)
    cases: list                           # [[case_id, description], ...]
    handover_dir: str
    parent_pid: Optional[int] = None


emit = emit_event


def main(argv: Optional[list] = None) -> int:
    """``python -m backsplit.supports.suggest_worker REQUEST.json``: exit 0, 1, 2 or 130 (``runtime.exits``)."""
    return run_worker(_suggest, SuggestJobRequest, "suggestion", emit, argv)


def _suggest(job: SuggestJobRequest) -> ProgressEvent:
    root = Path(job.handover_dir)
    try:
        sources = handed_cases(job.cases, root, emit, job.parent_pid)

        def cases():
            for source in sources:
                case = source.load()
                yield SuggestCase(case.case_id, tuple(case.geometry.spacing[::-1]), case.segments)

        report = suggest(cases(), SuggestOptions(**job.options), emit, total=len(sources))
        return ProgressEvent(Stage.DONE, f"ranked {len(report.ranked)} candidate(s)", report.cases, report.cases,
                             {"report": report_to_json(report)})
    finally:
        shutil.rmtree(root, ignore_errors=True)


class SuggestProcess(WorkerProcess):
    def __init__(self, options: SuggestOptions, cases: list, handover_dir: Path, python: Optional[str] = None,
                 popen: PopenFactory = subprocess.Popen):
        request = SuggestJobRequest(dataclasses.asdict(options), [list(c) for c in cases], str(handover_dir),
                                    os.getpid())
        super().__init__(MODULE, request, "backsplit-suggest-", python, popen,
                         request_file=Path(handover_dir) / "request.json")


if __name__ == "__main__":
    sys.exit(main())
