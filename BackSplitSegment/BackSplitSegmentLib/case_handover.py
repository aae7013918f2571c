"""Hand scene cases to a child process in short GUI steps (the Slicer side of ``backsplit.io.handover``).

``CaseHandover(sources, start_child).step()`` from a panel's timer: each call does at most one bounded piece on the
GUI thread (reading a case from the scene: ``case_read_steps``, about ``read_budget_s`` seconds; or writing part of
a read case for the child: ``handover.write_parts_steps``) and returns the child's new events (its ``handover``
requests are consumed here). Cases are read only as far ahead of the child as it asked (``read_ahead``). The child
does every whole-volume computation (Export, Suggest, Add to dataset), so Slicer's process only copies voxels.

A reading error (a missing segment, a volume removed) is kept (``read_error``) and the child is stopped once it
asks for that case, so that an earlier case's error, found by the child, still comes first. ``cancel()`` stops the
reading and asks the child to stop (it ends at its next look and removes its folder); ``close()`` does the same
without waiting for anything (scene close, module closed). No Qt here (tested with slicer-core).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

from backsplit.errors import BackSplitError, CancelledError, OutputError
from backsplit.io.handover import HANDOVER, request_cancel, write_parts_steps
from backsplit.runtime.exits import EXIT_CANCELLED, EXIT_DONE, EXIT_ERROR
from backsplit.runtime.progress import ProgressEvent


class CaseHandover:
    """``sources``: ``CaseSource``s, read by ``read_steps(budget_s)`` when they have it (``SceneCaseSource``), else
    by ``load()`` in one step; ``start_child(root)``: starts the child (a ``WorkerProcess``) that takes the cases
    from ``root``."""

    def __init__(self, sources: Sequence, start_child: Callable[[Path], object], read_budget_s: float = 0.04,
                 read_ahead: int = 1):
        self.sources = list(sources)
        self.start_child = start_child
        self.read_budget_s, self.read_ahead = read_budget_s, read_ahead
        self.child = None
        self.root: Optional[Path] = None
        self.wanted = -1                    # the highest case index the child asked for
        self.taken = -1                     # the highest case index the child took
        self.read_error: Optional[tuple[int, BaseException]] = None
        self.message = ""                   # what the last GUI piece did
        self.pieces = 0                     # GUI pieces done (tests count them)
        self.stopping = False               # the child was asked to stop
        self._next = 0
        self._steps: Optional[Iterator[str]] = None
        self._writing = False

    # ---- the timer's call ---------------------------------------------------------------------------------------
    def step(self) -> list[ProgressEvent]:
        """One bounded piece of GUI work (or none) and the child's new events (without its ``handover`` ones)."""
        if self.child is None:
            self.root = None
            try:
                self.root = Path(tempfile.mkdtemp(prefix="backsplit-handover-"))
                self.child = self.start_child(self.root)
            except OSError as error:   # a full, read-only or missing temporary folder (the request file is in it)
                in_temp = self.root is None or str(error.filename or self.root).startswith(str(self.root))
                if self.root is not None:
                    shutil.rmtree(self.root, ignore_errors=True)
                if not in_temp:        # not the folder (the worker's Python could not be started): as it is
                    raise
                raise OutputError(
                    f"the temporary folder '{tempfile.gettempdir()}' cannot hold the hand-over to the worker process "
                    f"({error.strerror or error}); free space there, or set TMPDIR to a writable folder and restart "
                    "Slicer") from error
            except BaseException:
                if self.root is not None:
                    shutil.rmtree(self.root, ignore_errors=True)
                raise
        events = []
        for event in self.child.poll_events():
            if event.stage == HANDOVER:
                self.wanted = max(self.wanted, int(event.data.get("want", -1)))
                self.taken = max(self.taken, int(event.data.get("took", -1)))
            else:
                events.append(event)
        if self.read_error is not None and self.wanted >= self.read_error[0]:
            self._stop_child()                 # the child now needs the case that could not be read
        self.message = ""
        if not self.ended and not self.stopping and self._piece():
            self.pieces += 1
        return events

    @property
    def ended(self) -> bool:
        """The child ended and its output was read to the end."""
        return self.child is not None and self.child.output_done

    @property
    def busy_reading(self) -> bool:
        return self._steps is not None

    def cancel(self) -> None:
        """Stop reading and ask the child to stop; the caller keeps stepping until ``ended``."""
        self._close_steps()
        self._stop_child()

    def close(self) -> None:
        """Stop without waiting: the child is asked to stop (it removes the folder itself); an ended child's folder
        is removed here."""
        self.cancel()
        if self.root is not None and (self.child is None or self.child.returncode is not None):
            shutil.rmtree(self.root, ignore_errors=True)

    # ---- GUI pieces -----------------------------------------------------------------------------------------------
    def _stop_child(self) -> None:
        self.stopping = True
        if self.root is not None and not request_cancel(self.root) and self.child is not None:
            self.child.cancel(grace_seconds=2.0, wait=False)   # it cannot see the request: ended (never waited for)

    def _close_steps(self) -> None:
        if self._steps is not None:
            self._steps.close()
            self._steps = None

    def _piece(self) -> bool:
        """Advance the reading or writing of the next case by one step; False when there is nothing to do now."""
        index = self._next
        if self._steps is None:
            if index >= len(self.sources) or index > self.wanted + self.read_ahead or self.read_error is not None:
                return False
            source = self.sources[index]
            self._steps = source.read_steps(self.read_budget_s) if hasattr(source, "read_steps") \
                else _load_at_once(source)
            self._writing = False
        try:
            self.message = next(self._steps)
            return True
        except StopIteration as stop:
            if self._writing:
                self._steps, self._next = None, index + 1
                self.message = f"checking and writing case '{self.sources[index].case_id}'"
            else:
                self._steps, self._writing = write_parts_steps(stop.value, self.root, index,
                                                               self.read_budget_s), True
                self.message = f"handing case '{self.sources[index].case_id}' to the worker"
            return True
        except OSError as error:
            self._steps = None
            if self.ended or self.stopping:       # the child ended and removed the folder: nothing to hand over
                return False
            self.read_error = (index, OutputError(
                f"handing case '{self.sources[index].case_id}' to the worker process failed "
                f"({error.strerror or error}) in the temporary folder '{self.root}'; free space there (or set TMPDIR "
                "to another folder) and try again"))
        except BaseException as error:          # the child is stopped when it comes to this case
            self._steps = None
            self.read_error = (index, error)
        if self.wanted >= index:
            self._stop_child()
        return True


def _load_at_once(source) -> Iterator[str]:
    yield f"reading case '{source.case_id}'"
    return _as_parts(source.load())


def _as_parts(case):
    """A loaded ``Case`` as ``CaseParts`` (every segment a full mask)."""
    from backsplit.io.handover import CaseParts, SegmentPiece

    return CaseParts(case.case_id, list(case.channels), case.geometry,
                     [SegmentPiece(name, mask=mask, route="loaded") for name, mask in case.segments.items()],
                     colors=dict(case.colors), terminology=dict(case.terminology), description=case.description)


class ChildJobError(BackSplitError):
    """An unexpected error of a child job; the message ends with the child's last output (its traceback)."""


def child_outcome(handover: CaseHandover, cancel_requested: bool) -> tuple[str, str, Optional[BaseException], bool]:
    """Once ``handover.ended``: (state, message, error, expected) with state ``finished`` (the child's ``done`` data
    is ``handover.child.done_data``), ``cancelled`` (the user's Cancel, or a ``CancelledError``) or ``failed``: a
    reading error of this side when the child stopped for it, else the child's own error (``expected``: a user's
    error, shown without a traceback)."""
    child = handover.child
    code = child.returncode
    if code == EXIT_DONE:
        return "finished", "", None, True
    if handover.read_error is not None and code == EXIT_CANCELLED and not cancel_requested:
        error = handover.read_error[1]
        if isinstance(error, CancelledError):
            return "cancelled", str(error), None, True
        if isinstance(error, BackSplitError):
            return "failed", str(error), error, True
        return "failed", f"{type(error).__name__}: {error}", error, False   # with its traceback
    if cancel_requested or code == EXIT_CANCELLED:
        return "cancelled", "", None, True
    message = child.failure or f"the worker ended with exit code {code}"
    if code == EXIT_ERROR:
        return "failed", message, BackSplitError(message), True
    detail = "\n".join(child.log_lines[-30:])
    return "failed", message, ChildJobError(f"{message}\n{detail}".strip()), False


class HandoverJob:
    """A child job fed with scene cases, for a panel's timer: ``step()`` (one bounded piece) until ``state`` is not
    ``running``; then ``message`` and, when ``finished``, ``data`` (the child's ``done`` data). ``fraction``: the
    child's last progress (0..1) or None. ``cancel()`` and ``close()`` never wait."""

    def __init__(self, sources: Sequence, start_child: Callable[[Path], object], read_budget_s: float = 0.04):
        self.handover = CaseHandover(sources, start_child, read_budget_s)
        self.state, self.message, self.fraction, self.data = "running", "", None, {}
        self.error: Optional[BaseException] = None
        self.expected = True
        self._cancel_requested = False

    @property
    def done(self) -> bool:
        return self.state != "running"

    def step(self) -> "HandoverJob":
        if self.done:
            return self
        for event in self.handover.step():
            if event.fraction is not None:
                self.fraction = event.fraction
            if event.message and event.stage not in ("done", "error", "log"):
                self.message = event.message
        if self.handover.message:
            self.message = self.handover.message
        if self.handover.ended:
            self.state, message, self.error, self.expected = child_outcome(self.handover, self._cancel_requested)
            self.message = message or self.message
            self.data = dict(self.handover.child.done_data)
            self.close()
        return self

    def run_to_end(self, wait: float = 0.02) -> "HandoverJob":
        """Scripts and tests: step until done, sleeping ``wait`` seconds while the child works."""
        import time

        while not self.step().done:
            if not self.handover.busy_reading:
                time.sleep(wait)
        return self

    def cancel(self) -> None:
        self._cancel_requested = True
        self.handover.cancel()

    def close(self) -> None:
        self.handover.close()
