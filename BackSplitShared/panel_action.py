"""One rule for every button of both panels: after any way out (success, error, install cancelled, run cancelled,
scene closed) the panel is usable again, and each failure is reported exactly once.

``PanelAction`` is a button that starts work (Apply, Start, Export, Generate, Fine-tune, ...): ``click(start)``
disables the start button and enables its Cancel, runs ``start()``; ``start()`` returns True while work goes on
(a timer follows it), anything else means nothing is running. ``wrap_tick(timer, tick)`` guards the timer that
follows the work. ``finish(text)`` is the one way back to idle (idempotent); ``failed(message)`` is finish plus one
report. ``once(what, fn)`` guards a button that does its work at once (Add case, Import model, ...).

Why not ``slicer.util.tryWithErrorDisplay``: it shows its dialog and then **re-raises** (``Base/Python/slicer/util.py``
v5.10.0:3409, v5.12.3:3589), so the code after the ``with`` block, which put the buttons back, never ran (audit F1),
and a second guard reported the same error again (F8). Here a user's own Cancel (``backsplit.errors.CancelledError``)
is a status line, never an error dialog. No Qt import: buttons and timers are handed in (tests use slicer-core's real
``slicer.util`` with small stand-ins).
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from typing import Callable, Optional

from backsplit.errors import BackSplitError, CancelledError

from .panel_support import report_error

Report = Callable[[str, str], None]


def _wait_cursor(enabled: bool):
    """Slicer's wait cursor while a start or a one-shot action runs, through Slicer's own helper with ``show=False``
    (no dialog; it restores the cursor and re-raises: util.py v5.10.0:3367-3409)."""
    if not enabled:
        return contextlib.nullcontext()
    import slicer  # only here: the rest of this module runs without Slicer

    return slicer.util.tryWithErrorDisplay(show=False, waitCursor=True)


def _detail(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


def _set_enabled(button, enabled: bool) -> None:
    if button is not None:
        button.enabled = enabled


class PanelAction:
    """``PanelAction(what, start_button, cancel_button, status=..., on_idle=...)``.

    ``what``: the first line of the error dialog ("Could not apply the model"); ``status(text)``: the section's
    status line; ``on_idle()``: the section's own clean-up (stop timers, end a child without waiting, close a job),
    run once by every way back to idle; ``report(message, detail)``: the dialog (``slicer.util.errorDisplay``)."""

    def __init__(self, what: str, start_button=None, cancel_button=None, *, status: Optional[Callable[[str], None]]
                 = None, on_idle: Optional[Callable[[], None]] = None, report: Report = report_error,
                 wait_cursor: bool = False):
        self.what = what
        self.start_button, self.cancel_button = start_button, cancel_button
        self.status, self.on_idle, self.report, self.wait_cursor = status, on_idle, report, wait_cursor
        self.busy = False
        self._in_tick = False
        _set_enabled(cancel_button, False)

    # ---- the ways in ------------------------------------------------------------------------------------------------
    def slot(self, start: Callable[[], object]) -> Callable[..., None]:
        """The callable to connect to ``clicked`` (Qt passes a ``checked`` argument, which is ignored)."""
        return lambda *_args: self.click(start)

    def click(self, start: Callable[[], object]) -> None:
        if self.busy:
            return
        self.busy = True
        _set_enabled(self.start_button, False)
        _set_enabled(self.cancel_button, True)
        try:
            with _wait_cursor(self.wait_cursor):
                running = start()
        except Exception as exc:  # noqa: BLE001 - every error must end in an idle panel, reported once
            self.fail(exc)
            return
        if running is not True:
            self.finish()

    def wrap_tick(self, timer, tick: Callable[[], object]) -> Callable[[], None]:
        """The callable to connect to ``timer.timeout``. ``tick()`` calls ``finish``/``failed`` when the work ended;
        an exception stops the timer, ends the action and is reported once. Not re-entered while a dialog it opened
        runs Qt's event loop."""
        def guarded() -> None:
            if self._in_tick:
                return
            self._in_tick = True
            try:
                tick()
            except Exception as exc:  # noqa: BLE001
                timer.stop()
                self.fail(exc)
            finally:
                self._in_tick = False
        return guarded

    # ---- the ways out -----------------------------------------------------------------------------------------------
    def finish(self, text: Optional[str] = None) -> None:
        """Back to idle: buttons, then the section's clean-up (once per run), then the status text if given."""
        was_busy, self.busy = self.busy, False
        _set_enabled(self.start_button, True)
        _set_enabled(self.cancel_button, False)
        if was_busy and self.on_idle is not None:
            try:
                self.on_idle()
            except Exception:  # noqa: BLE001 - the panel is idle anyway; the clean-up error goes to the log
                logging.warning("%s: cleaning up failed", self.what, exc_info=True)
        if text is not None and self.status is not None:
            self.status(text)

    def failed(self, message: str, detail: str = "") -> None:
        """The work ended with an error that is not an exception here (a child's message): idle, one dialog."""
        self.finish()
        self.report(f"{self.what}: {message}", detail)

    def fail(self, exc: BaseException) -> None:
        """Idle, then the user's Cancel as a status line, any other error as one dialog. The traceback goes to the
        log always, and into the dialog's details only for an unexpected error: a ``BackSplitError`` (the user's
        input, a file, the disk) is explained by its message, and no traceback reaches the user for it."""
        self.finish()
        if isinstance(exc, CancelledError):
            if self.status is not None:
                self.status(str(exc))
            return
        detail = _detail(exc)
        logging.warning(detail)   # the traceback for developers; the dialog (one ERROR record) comes next
        self.report(f"{self.what}: {exc}", "" if isinstance(exc, BackSplitError) else detail)


def once(what: str, fn: Callable[[], object], *, status: Optional[Callable[[str], None]] = None,
         report: Report = report_error, wait_cursor: bool = False) -> Callable[..., None]:
    """The ``clicked`` slot of a button whose work is done when ``fn`` returns (no Cancel, no timer): errors are
    reported once (a ``CancelledError`` as a status line) and never leave the slot."""
    action = PanelAction(what, status=status, report=report, wait_cursor=wait_cursor)

    def run(*_args) -> None:
        action.click(lambda: (fn(), None)[1])
    return run
