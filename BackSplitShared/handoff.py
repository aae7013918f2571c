"""The connected flow between the two panels: a button that hands a folder to the other module and opens it
("Train on this dataset" after an export, "Use in BackSplit Segment" after a training), and the taking side.

The folder crosses through ``backsplit.models.recent`` (``recent.json`` in the user's BackSplit folder), not through
the other module's widget or parameter node, so it survives a scene close and needs the other module only when
the user opens it. No Qt import: the button is handed in (``qt.QPushButton``; tests use a stand-in) and so is
``select_module`` (``slicer.util.selectModule``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from backsplit.models import recent


class HandoffButton:
    """``HandoffButton(button, kind, module, select_module, tooltip, guard)``: hidden until ``offer(folder)``; a
    click hands the folder over (``recent.hand_over(kind, folder)``) and opens ``module``. ``offer(None)`` hides it
    again. ``kind``: "datasets" or "models"; ``tooltip``: a format text with ``{folder}``; ``guard(fn)``: wraps the
    click so that an error is reported (``BackSplitShared.panel_action.once``)."""

    def __init__(self, button, kind: str, module: str, select_module: Callable[[str], object], tooltip: str,
                 guard: Callable[[Callable], Callable] = lambda fn: fn, recent_file: Optional[Path] = None):
        self.button, self.kind, self.module = button, kind, module
        self.select_module, self.tooltip, self.recent_file = select_module, tooltip, recent_file
        self.folder: Optional[Path] = None
        button.visible = False
        button.clicked.connect(guard(self.click))   # guard: the panel's error report (``panel_action.once``)

    def offer(self, folder: Optional[Path]) -> None:
        """Show the button for ``folder`` (also remembered as recent), or hide it (None)."""
        self.folder = Path(folder) if folder else None
        self.button.visible = self.folder is not None
        if self.folder is not None:
            self.button.toolTip = self.tooltip.format(folder=self.folder)
            try:
                recent.remember(self.kind, self.folder, self.recent_file)
            except OSError:
                pass   # the list of recent folders is a convenience; the hand-over below still says why it failed

    def click(self, *_args) -> None:
        """Hand the folder over and open the other module (raises OSError when ``recent.json`` cannot be written)."""
        if self.folder is None:
            return
        recent.hand_over(self.kind, self.folder, self.recent_file)
        self.select_module(self.module)


def take_handoff(kind: str, recent_file: Optional[Path] = None) -> Optional[Path]:
    """The folder the other panel handed over for ``kind`` (taken once), or None."""
    return recent.take_handoff(kind, recent_file)
