"""Small pieces the two panels share that need no Qt themselves (Qt objects are passed in, so tests fake them).

``TickGuard``: every timer callback of a panel runs through it. An exception stops the timer, restores the panel
(buttons back) and is reported once, instead of repeating every few hundred milliseconds with the buttons left
disabled.

``GuiBinding``: the parameter node is connected to the GUI once per parameter node, whatever the release does with
the tag that ``connectGui`` returns (Slicer 5.8 returned none, so ``disconnectGui(None)`` did nothing and every
module entry stacked another set of connectors; 5.10.0 returns it; see docs/SLICER_COMPATIBILITY.md).
"""

from __future__ import annotations

import logging
from typing import Callable, Optional


def report_error(message: str, detail: str = "") -> None:
    """The ``report`` most panels give ``TickGuard``: Slicer's error dialog with the traceback as detail."""
    import slicer  # here, not at the top: the rest of this module runs without Slicer (tests with fakes)

    slicer.util.errorDisplay(message, detailedText=detail)


class TickGuard:
    """``timer.timeout.connect(TickGuard(timer, restore, report).wrap(self._poll))``.

    ``timer`` needs ``stop()``; ``restore()`` puts the panel back to idle (enables Start, disables Cancel);
    ``report(message, detail)`` shows the error (``slicer.util.errorDisplay``). A tick that is still running (for
    example while a dialog it opened is shown) is not entered again."""

    def __init__(self, timer, restore: Callable[[], None], report: Callable[[str, str], None],
                 what: str = "The panel's background task failed"):
        self.timer = timer
        self.restore = restore
        self.report = report
        self.what = what
        self._running = False
        self.failures = 0

    def wrap(self, tick: Callable[[], None]) -> Callable[[], None]:
        def guarded() -> None:
            if self._running:
                return
            self._running = True
            try:
                tick()
            except Exception as exc:  # any error: the timer must not fire again with it
                self.failures += 1
                self._fail(exc)
            finally:
                self._running = False
        return guarded

    def _fail(self, exc: BaseException) -> None:
        import traceback

        detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        try:
            self.timer.stop()
        finally:
            try:
                self.restore()
            except Exception:  # the report below must still come
                logging.exception("restoring the panel failed")
            finally:
                logging.error(detail)
                self.report(f"{self.what}: {exc}", detail)


class GuiBinding:
    """Connect a parameter-node wrapper to the panel's widgets exactly once per MRML parameter node.

    ``bind(wrapper)`` on every ``enter()`` and after a scene close: nothing happens while the wrapper wraps the
    same MRML node as the bound one; otherwise the old connection is removed and the new one made. The tag is the
    one ``connectGui`` returns; when a release returns None the wrapper's last tag (``_nextParameterGUIsTag - 1``,
    Slicer's own counter) is used, so ``disconnectGui`` really disconnects."""

    def __init__(self, gui) -> None:
        self.gui = gui
        self.wrapper = None
        self.tag = None

    @staticmethod
    def _mrml_node(wrapper):
        return getattr(wrapper, "parameterNode", wrapper)

    def bind(self, wrapper) -> bool:
        """Returns True when a new connection was made."""
        if wrapper is not None and self.wrapper is not None and \
                self._mrml_node(wrapper) is self._mrml_node(self.wrapper):
            return False
        self.unbind()
        if wrapper is None:
            return False
        tag = wrapper.connectGui(self.gui)
        if tag is None and hasattr(wrapper, "_nextParameterGUIsTag"):
            tag = wrapper._nextParameterGUIsTag - 1
        self.wrapper, self.tag = wrapper, tag
        return True

    def unbind(self) -> None:
        if self.wrapper is not None:
            self.wrapper.disconnectGui(self.tag)
        self.wrapper, self.tag = None, None

    @property
    def parameters(self) -> Optional[object]:
        return self.wrapper
