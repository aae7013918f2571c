"""Step an export from a panel's timer so that no tick blocks the GUI for long.

``ExportRun(sources, request).step()`` until ``step().done``. The engine's ``iter_export`` (checking, label
composition, context, file writing, dataset.json, moves) runs in one worker thread, which never touches MRML or VTK.
Reading a case from the scene must happen on the GUI thread: each ``step()`` does one short piece of it
(``case_read_steps``: volumes in slabs, a segment's labelmap in slabs or, when Slicer must resample it, one
``ExportSegmentsToLabelmapNode``) and hands the finished case to the worker, which assembles the masks and writes the
case; meanwhile the next case is read (at most ``read_ahead`` cases ahead, which bounds memory). Otherwise ``step()``
only looks at what the worker reported and returns at once. Each step returns what the panel shows (progress,
message, and at the end a summary, a cancellation or an error). Cancelling is not an error: nothing is written and
the status says so. No Qt here (tested with slicer-core).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence

from backsplit.errors import BackSplitError, CancelledError
from backsplit.io.cases import CaseSource
from backsplit.runtime.progress import ProgressEvent, Stage

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


class CaseHandoff:
    """Cases go from the GUI thread (``deliver``) to the worker (``take``), by index, in order."""

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._results: dict[int, tuple[bool, object]] = {}
        self.requested = -1                  # the highest case index the worker has asked for
        self.closed = False

    def take(self, index: int):
        """Worker thread: wait for case ``index``; returns what was delivered (raises a delivered error, or
        ``CancelledError`` once closed)."""
        with self._ready:
            self.requested = max(self.requested, index)
            while index not in self._results and not self.closed:
                self._ready.wait(0.1)
            if index not in self._results:
                raise CancelledError(CANCEL_TEXT)
            ok, value = self._results.pop(index)
        if not ok:
            raise value
        return value

    def deliver(self, index: int, value, ok: bool = True) -> None:
        with self._ready:
            self._results[index] = (ok, value)
            self._ready.notify_all()

    def close(self) -> None:
        with self._ready:
            self.closed = True
            self._results.clear()
            self._ready.notify_all()


@dataclass
class HandedCase:
    """The worker's view of a case: ``load()`` waits for the GUI thread's reading and assembles the ``Case``."""
    case_id: str
    description: str
    index: int
    handoff: CaseHandoff

    def load(self):
        value = self.handoff.take(self.index)
        return value.assemble() if hasattr(value, "assemble") else value


@dataclass
class ExportRun:
    """``ExportRun(sources, request).step()`` until ``step().done``; ``cancel()`` at any time; ``close()`` when the
    panel goes away. Sources with ``read_steps(budget_s)`` (``SceneCase.source()``) are read in steps of about
    ``read_budget_s`` seconds; others are loaded in one step, on the GUI thread too."""
    sources: Sequence[CaseSource]
    request: object                                   # backsplit.datasets.export.ExportRequest
    exporter: Optional[Callable[..., Iterator[ProgressEvent]]] = None   # default: backsplit.datasets.export.iter_export
    read_budget_s: float = 0.04
    read_ahead: int = 1
    _cancel_requested: bool = field(default=False, init=False)
    _last: Optional[ExportStep] = field(default=None, init=False, repr=False)
    _thread: Optional[threading.Thread] = field(default=None, init=False, repr=False)
    _reports: queue.Queue = field(default_factory=lambda: queue.Queue(maxsize=1), init=False, repr=False)
    _handoff: CaseHandoff = field(default_factory=CaseHandoff, init=False, repr=False)
    _closed: bool = field(default=False, init=False)
    _next_read: int = field(default=0, init=False)
    _reading: Optional[Iterator[str]] = field(default=None, init=False, repr=False)

    def cancel(self) -> None:
        self._cancel_requested = True

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_requested

    def step(self, wait: float = 0.0) -> ExportStep:
        """One short piece of work on the calling (GUI) thread, or a look at the worker's progress; ``wait``:
        seconds to wait for the worker's next report when there is nothing to read (scripts)."""
        if self._last is not None and self._last.done:
            return self._last
        if self._thread is None:
            self._start()
        read = self._read_one_piece()
        try:   # also while reading: the worker goes on with the case before (its report would block it)
            kind, value = self._reports.get(timeout=wait) if wait > 0 and not read else self._reports.get_nowait()
        except queue.Empty:
            return self._last
        step = self._step_from_report(kind, value)
        self._last = step if step.done or not read else ExportStep(RUNNING, step.percent, self._last.message)
        if self._last.done:
            self.close()
        return self._last

    def run_to_end(self) -> ExportStep:
        step = self.step()
        while not step.done:
            step = self.step(wait=0.05)
        return step

    def close(self) -> None:
        """Stop (the module is closed, or the export ended): the worker ends at its next case or report and the
        engine removes its staging folder; waits for that, as closing the engine's generator did."""
        self._closed = True
        self._handoff.close()
        if self._reading is not None:
            self._reading.close()
            self._reading = None
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    # ---- GUI thread ----------------------------------------------------------------------------------------------
    def _start(self) -> None:
        exporter = self.exporter
        if exporter is None:
            from backsplit.datasets.export import iter_export as exporter
        handed = [HandedCase(s.case_id, getattr(s, "description", s.case_id), i, self._handoff)
                  for i, s in enumerate(self.sources)]
        self._last = ExportStep(RUNNING, 0, "starting the export")
        self._thread = threading.Thread(target=self._work, args=(exporter, handed), daemon=True,
                                        name="backsplit-export")
        self._thread.start()

    def _read_one_piece(self) -> bool:
        """Advance the reading of the next case by one step; False when there is nothing to read now."""
        if self._reading is None:
            index = self._next_read
            if index >= len(self.sources) or index > self._handoff.requested + self.read_ahead \
                    or self._handoff.closed:
                return False
            source = self.sources[index]
            self._reading = source.read_steps(self.read_budget_s) if hasattr(source, "read_steps") \
                else _load_at_once(source)
        index = self._next_read
        try:
            if self._cancel_requested:
                raise CancelledError(CANCEL_TEXT)
            message = next(self._reading)
        except StopIteration as stop:
            self._handoff.deliver(index, stop.value)
            self._reading, self._next_read = None, index + 1
            self._last = ExportStep(RUNNING, self._last.percent if self._last else 0,
                                    f"checking and writing case '{self.sources[index].case_id}'")
            return True
        except BaseException as error:         # the worker raises it when it comes to this case
            self._handoff.deliver(index, error, ok=False)
            self._reading, self._next_read = None, len(self.sources)
            return False
        self._last = ExportStep(RUNNING, self._last.percent if self._last else 0, message)
        return True

    def _step_from_report(self, kind: str, value) -> ExportStep:
        percent = self._last.percent if self._last else 0
        if kind == "event":
            return step_from_event(value)
        if kind == "end":
            return ExportStep(FINISHED, 100, self._last.message if self._last else "")
        if isinstance(value, CancelledError):
            return ExportStep(CANCELLED, percent, str(value))
        if isinstance(value, BackSplitError):
            return ExportStep(FAILED, percent, str(value), error=value)
        return ExportStep(FAILED, percent, f"{type(value).__name__}: {value}", error=value,  # with its traceback
                          expected=False)

    # ---- worker thread (no MRML, no VTK) --------------------------------------------------------------------------
    def _work(self, exporter, handed) -> None:
        events = None
        try:
            events = exporter(handed, self.request, lambda: self._cancel_requested or self._closed)
            for event in events:
                if not self._report("event", event):
                    return
            self._report("end", None)
        except BaseException as error:
            self._report("error", error)
        finally:
            if events is not None and hasattr(events, "close"):
                events.close()                   # the engine removes its staging folder

    def _report(self, kind: str, value) -> bool:
        """Hand one report to the GUI thread (one waits at most: the engine advances as the panel reads);
        False when the run was closed meanwhile."""
        while not self._closed:
            try:
                self._reports.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False


def _load_at_once(source) -> Iterator[str]:
    yield f"reading case '{source.case_id}'"
    return source.load()


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
