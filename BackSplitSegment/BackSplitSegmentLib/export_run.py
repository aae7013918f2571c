"""Step an export one case at a time, so that a panel can drive it from a timer and stay responsive.

``ExportRun`` wraps the engine's ``iter_export`` generator: each ``step()`` reads, checks and writes at most one case
and returns what the panel shows (progress, message, and at the end a summary, a cancellation or an error).
Cancelling is not an error: nothing is written and the status says so. No Qt here (tested with slicer-core).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence

from backsplit.cases import CaseSource
from backsplit.errors import BackSplitError, CancelledError
from backsplit.progress import ProgressEvent

RUNNING = "running"
FINISHED = "finished"
CANCELLED = "cancelled"
FAILED = "failed"


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
    """``ExportRun(sources, request).step()`` until ``step().done``; ``cancel()`` at any time."""
    sources: Sequence[CaseSource]
    request: object                                   # backsplit.export.ExportRequest
    exporter: Optional[Callable[..., Iterator[ProgressEvent]]] = None   # default: backsplit.export.iter_export
    _events: Optional[Iterator[ProgressEvent]] = field(default=None, init=False, repr=False)
    _cancel_requested: bool = field(default=False, init=False)
    _last: Optional[ExportStep] = field(default=None, init=False, repr=False)

    def cancel(self) -> None:
        self._cancel_requested = True

    @property
    def cancel_requested(self) -> bool:
        return self._cancel_requested

    def step(self) -> ExportStep:
        if self._last is not None and self._last.done:
            return self._last
        if self._events is None:
            exporter = self.exporter
            if exporter is None:
                from backsplit.export import iter_export as exporter
            self._events = exporter(self.sources, self.request, lambda: self._cancel_requested)
        try:
            event = next(self._events)
        except StopIteration:
            self._last = ExportStep(FINISHED, 100, self._last.message if self._last else "")
        except CancelledError as exc:
            self._last = ExportStep(CANCELLED, self._last.percent if self._last else 0, str(exc))
        except BackSplitError as exc:
            self._last = ExportStep(FAILED, self._last.percent if self._last else 0, str(exc), error=exc)
        except Exception as exc:  # unexpected: the panel shows it with its traceback
            self._last = ExportStep(FAILED, self._last.percent if self._last else 0, f"{type(exc).__name__}: {exc}",
                                    error=exc, expected=False)
        else:
            self._last = step_from_event(event)
        if self._last.done:
            self.close()
        return self._last

    def run_to_end(self) -> ExportStep:
        step = self.step()
        while not step.done:
            step = self.step()
        return step

    def close(self) -> None:
        """Stop early (e.g. the module is closed): the engine removes its staging folder."""
        if self._events is not None and hasattr(self._events, "close"):
            self._events.close()


def step_from_event(event: ProgressEvent) -> ExportStep:
    fraction = event.fraction
    percent = int(round(100 * fraction)) if fraction is not None else 0
    if event.stage == "done":
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
    """The engine's ExportRequest from the panel's parameter node (``BackSplitSegmentParameterNode``)."""
    from pathlib import Path

    from backsplit.commands.export import parse_mapping, split_names
    from backsplit.context import ContextSpec
    from backsplit.export import ExportRequest

    mapping = parse_mapping([line for line in parameters.nameMapping.replace(";", "\n").splitlines()
                             if line.strip()])
    return ExportRequest(
        out_root=Path(parameters.outputFolder), dataset_id=int(parameters.datasetId),
        dataset_name=parameters.datasetName.strip(), targets=list(targets), supports=list(supports),
        name_mapping=mapping, channel_names=split_names(parameters.channelNames) or ["CT"],
        binary_twin=bool(parameters.binaryTwin), allow_negative_cases=bool(parameters.allowNegative),
        missing_segments="absent" if parameters.missingAsAbsent else "error", overwrite=bool(parameters.overwrite),
        context=ContextSpec.parse(context_choice(parameters.contextLabels, parameters.contextDetail)))
