"""Step an export from a panel's timer so that no tick blocks the GUI for long.

``ExportRun(sources, request).step()`` until ``step().done``. The engine's ``iter_export`` (checking, label
composition, context, file writing, dataset.json, moves) runs in a child process (``backsplit.datasets.
export_worker``), never in a Python thread of Slicer's process (PythonQt keeps the GIL while Slicer idles, so such
a thread barely runs: docs/SLICER_COMPATIBILITY.md). Reading a case from the scene must happen on the GUI thread:
each ``step()`` does one short piece of it (``case_read_steps``: volumes in slabs, a segment's labelmap in slabs or,
when Slicer must resample it, one ``ExportSegmentsToLabelmapNode``) or of writing the read case for the child
(``case_handover``), which assembles the masks and writes the case; the next case is read only when the child asked
for the one before (``read_ahead``), which bounds memory and disk. Each step returns what the panel shows (progress,
message, and at the end a summary, a cancellation or an error). Cancelling is not an error: nothing is written and
the status says so. The files are the ones ``export_dataset`` writes from the same cases, byte for byte (tested).
No Qt here (tested with slicer-core).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

from backsplit.io.cases import CaseSource
from backsplit.runtime.progress import ProgressEvent, Stage

from .case_handover import CaseHandover, child_outcome

RUNNING = "running"
FINISHED = "finished"
CANCELLED = "cancelled"
FAILED = "failed"
CANCEL_TEXT = "export cancelled; nothing was written"


@dataclass
class ExportStep:
    state: str                           # running | finished | cancelled | failed
    percent: int = 0                     # 0..100 for the progress bar
    message: str = ""                    # status text
    result: Optional[object] = None      # the engine's ExportResult when finished
    error: Optional[BaseException] = None
    expected: bool = True                # failed with a user-facing BackSplitError (no traceback needed)

    @property
    def done(self) -> bool:
        return self.state != RUNNING


@dataclass
class ExportRun:
    """``ExportRun(sources, request).step()`` until ``step().done``; ``cancel()`` at any time; ``close()`` when the
    panel goes away (never waits). Sources with ``read_steps(budget_s)`` (``SceneCase.source()``) are read in steps
    of about ``read_budget_s`` seconds; others are loaded in one step, on the GUI thread too. ``python``: the
    interpreter of the child (default: PythonSlicer inside Slicer)."""
    sources: Sequence[CaseSource]
    request: object                                   # backsplit.datasets.export.ExportRequest
    read_budget_s: float = 0.04
    read_ahead: int = 1
    python: Optional[str] = None
    _cancel_requested: bool = field(default=False, init=False)
    _last: Optional[ExportStep] = field(default=None, init=False, repr=False)
    _handover: Optional[CaseHandover] = field(default=None, init=False, repr=False)

    def cancel(self) -> None:
        self._cancel_requested = True
        if self._handover is not None:
            self._handover.cancel()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_requested

    @property
    def handover(self) -> Optional[CaseHandover]:
        """The hand-over to the child (tests look at its pieces)."""
        return self._handover

    def step(self, wait: float = 0.0) -> ExportStep:
        """One short piece of work on the calling (GUI) thread and a look at the child's progress; ``wait``: seconds
        to sleep first when the last step had nothing to do (scripts)."""
        if self._last is not None and self._last.done:
            return self._last
        if self._handover is None:
            self._start()
        elif wait > 0 and not self._handover.busy_reading:
            time.sleep(wait)
        handover = self._handover
        for event in handover.step():
            if event.stage == "export":       # the engine's progress (not log lines, done or error)
                self._last = step_from_event(event)
        percent = self._last.percent
        if handover.message:
            self._last = ExportStep(RUNNING, percent, handover.message)
        if handover.ended:
            self._last = self._end(percent)
            self.close()
        return self._last

    def run_to_end(self) -> ExportStep:
        step = self.step()
        while not step.done:
            step = self.step(wait=0.02)
        return step

    def close(self) -> None:
        """Stop (the module is closed, the scene closed, or the export ended) without waiting: the child ends at its
        next case or event and the engine removes its staging folder."""
        if self._handover is not None:
            self._handover.close()

    def _start(self) -> None:
        from backsplit.datasets.export_worker import ExportProcess, job_request

        cases = [[s.case_id, getattr(s, "description", s.case_id)] for s in self.sources]
        self._last = ExportStep(RUNNING, 0, "starting the export")
        self._handover = CaseHandover(
            self.sources, lambda root: ExportProcess(job_request(self.request, cases, root), self.python).start(),
            self.read_budget_s, self.read_ahead)

    def _end(self, percent: int) -> ExportStep:
        """The child ended: what the panel shows."""
        state, message, error, expected = child_outcome(self._handover, self._cancel_requested)
        data = self._handover.child.done_data
        if state == FINISHED and data.get("result"):
            from backsplit.datasets.export_worker import result_from_json

            result = result_from_json(data["result"])
            return ExportStep(FINISHED, 100, "\n".join(result.summary_lines()), result=result)
        if state == CANCELLED:
            return ExportStep(CANCELLED, percent, CANCEL_TEXT)
        return ExportStep(FAILED, percent, message or "the export ended without its result", error=error,
                          expected=expected)


def step_from_event(event: ProgressEvent) -> ExportStep:
    fraction = event.fraction
    percent = int(round(100 * fraction)) if fraction is not None else 0
    if event.stage == Stage.DONE:
        result = event.data.get("result")
        message = "\n".join(result.summary_lines()) if result is not None and hasattr(result, "summary_lines") \
            else event.message
        return ExportStep(FINISHED, 100, message, result=result)
    return ExportStep(RUNNING, percent, event.message)


def context_choice(method: str, detail: str) -> str:
    """The panel's context choice as the command line writes it ('rings:5,15', 'kmeans:3', 'none')."""
    method, detail = (method or "none").strip(), (detail or "").strip()
    return f"{method}:{detail}" if detail and method != "none" else method


def export_request(parameters, targets: Sequence[str], supports: Sequence[str]):
    """The engine's ExportRequest from the panel's parameter node (``BackSplitSegmentParameterNode``). The output
    folder never resolves against Slicer's working directory: empty or "." (a cleared field, a scene close) is
    ``<home>/BackSplit/nnUNet_raw``, a relative path is under the home folder (``BackSplitShared.paths``)."""
    from backsplit.datasets.export import ExportRequest
    from backsplit.labels.context import ContextSpec
    from backsplit.labels.matching import parse_mapping, split_names
    from BackSplitShared.paths import default_export_folder, resolve_folder

    mapping = parse_mapping([line for line in parameters.nameMapping.replace(";", "\n").splitlines()
                             if line.strip()])
    return ExportRequest(
        out_root=resolve_folder(parameters.outputFolder, default_export_folder()), dataset_id=int(parameters.datasetId),
        dataset_name=parameters.datasetName.strip(), targets=list(targets), supports=list(supports),
        name_mapping=mapping, channel_names=split_names(parameters.channelNames) or ["CT"],
        binary_twin=bool(parameters.binaryTwin), allow_negative_cases=bool(parameters.allowNegative),
        missing_segments="absent" if parameters.missingAsAbsent else "error", overwrite=bool(parameters.overwrite),
        context=ContextSpec.parse(context_choice(parameters.contextLabels, parameters.contextDetail)))
