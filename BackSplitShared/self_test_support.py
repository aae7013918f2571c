"""Helpers of both modules' Slicer self-tests: waiting for a panel's work, catching its error reports, skip reasons.

What ``BackSplitSegmentLib/self_test.py`` and ``BackSplitTrainLib/self_test.py`` need besides the panels: waiting
for a panel's timers while Qt runs, catching the error dialogs that Slicer's testing mode only logs, the reason to
skip the training part, and temporary folders that are removed when the test passed.

No Qt here and no Slicer import at module level: tested with slicer-core (``Testing/test_selftest_panels.py``). The
self-tests never install or download anything: without PyTorch and nnU-Net they skip the training and prediction
parts and say why (``training_skip_reason``).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

from backsplit.runtime.requirements import installed_torch_version, missing, torch_problem


def process_events() -> None:
    """Let Qt deliver timer ticks and paint (``slicer.app.processEvents()``, qSlicerCoreApplication is a
    QApplication); the self-tests call it while they wait for a panel's timer-driven work."""
    import slicer

    slicer.app.processEvents()


def wait_until(condition: Callable[[], bool], timeout_s: float, *, step: Optional[Callable[[], None]] = None,
               sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
               interval_s: float = 0.05) -> bool:
    """Call ``step()`` (default: ``process_events``) and sleep ``interval_s`` seconds until ``condition()`` is true
    or ``timeout_s`` seconds have passed; returns whether the condition became true. The sleep releases the GIL, so
    a panel's worker thread moves on while the test waits."""
    step = step or process_events
    deadline = clock() + timeout_s
    while True:
        step()
        if condition():
            return True
        if clock() >= deadline:
            return False
        sleep(interval_s)


class ErrorLog(logging.Handler):
    """``with ErrorLog() as errors: ...``: the ERROR records logged meanwhile (``errors.messages``). In Slicer's
    testing mode ``slicer.util.errorDisplay`` shows no dialog and only logs the text at ERROR level
    (``_messageDisplay``, Base/Python/slicer/util.py v5.10.0:3124-3152), so a panel's error report is a record here."""

    def __init__(self, logger: Optional[logging.Logger] = None):
        super().__init__(level=logging.ERROR)
        self.logger = logger or logging.getLogger()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self) -> "ErrorLog":
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        self.logger.removeHandler(self)

    def since(self, count: int) -> list[str]:
        """The messages logged after the first ``count`` ones."""
        return self.messages[count:]


def open_module(module: str):
    """Open ``module`` (``slicer.util.selectModule``, which calls its widget's ``enter()``) and return its widget
    (``slicer.util.getModuleWidget``: the Python object of a scripted module's widget, created on first use).
    Both raise RuntimeError without a main window or when the module is not loaded (util.py v5.10.0:1242-1330)."""
    import slicer

    slicer.util.selectModule(module)
    return slicer.util.getModuleWidget(module)


def press_and_wait(test, start_button, cancel_button, timeout_s: float, what: str, errors: ErrorLog,
                   ready_timeout_s: float = 10.0, wait: Callable[..., bool] = wait_until) -> None:
    """Press a panel's start button once it is enabled (the panels re-check their inputs twice a second), then wait
    until the work it started has ended: its Cancel button is greyed out again (every way back to idle goes through
    ``BackSplitShared.panel_action.PanelAction.finish``). ``test`` is the module's self-test case (a
    ``unittest.TestCase``): it fails with the button's tooltip (what is missing) when the button stays greyed out,
    cancels and fails after ``timeout_s`` seconds, and fails with the panel's own report when it logged an error."""
    if not wait(lambda: start_button.enabled, ready_timeout_s):
        test.fail(f"{what}: the button stays greyed out: {start_button.toolTip}")
    before = len(errors.messages)
    start_button.click()
    if not wait(lambda: not cancel_button.enabled, timeout_s):
        cancel_button.click()
        wait(lambda: not cancel_button.enabled, 30.0)
        test.fail(f"{what} did not end within {timeout_s:.0f} s; it was cancelled")
    test.assertEqual(errors.since(before), [], f"{what} reported an error")


def training_skip_reason() -> Optional[str]:
    """Why the self-tests cannot train and apply a model here (None: they can). Read from package metadata
    (``backsplit.runtime.requirements``), without importing torch; never installs anything."""
    needed = missing()
    if needed:
        return (f"{' and '.join(needed)} not installed in this Slicer's Python; the self-test never installs or "
                "downloads them. Install them once (press Start in BackSplit Train outside testing mode), then run "
                "the self-test again to include training and Apply.")
    problem = torch_problem(installed_torch_version())
    if problem:
        return f"the installed PyTorch does not suit nnU-Net: {problem}"
    return None


class ScratchFolder:
    """A new temporary folder (``path``) for one self-test; ``close(passed)`` removes it when the test passed and
    keeps it (for a look at what was written) when it failed."""

    def __init__(self, prefix: str = "BackSplitSelfTest-"):
        self.path = Path(tempfile.mkdtemp(prefix=prefix))

    def close(self, passed: bool) -> Optional[Path]:
        """Remove the folder after a pass; returns the folder kept after a failure (None when removed)."""
        if passed:
            shutil.rmtree(self.path, ignore_errors=True)
            return None
        return self.path


def new_folders(parent: Path, before: set) -> list[Path]:
    """The sub-folders of ``parent`` that are not in ``before`` (a set of names taken earlier), sorted."""
    parent = Path(parent)
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if p.is_dir() and p.name not in before)


def folder_names(parent: Path) -> set:
    """The names of the sub-folders of ``parent`` now (empty when it does not exist)."""
    parent = Path(parent)
    return {p.name for p in parent.iterdir() if p.is_dir()} if parent.is_dir() else set()
