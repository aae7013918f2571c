"""Start buttons enabled only when their inputs are valid: Export, Apply, Generate and Suggest of BackSplit Segment,
each greyed out with a tooltip that says what is missing ("Add at least one case", "Choose the input volume").

The rules are pure functions of what the panel holds (no file is read except one ``is_dir`` for a typed folder);
``ReadyButtons.update()`` applies them from a slow timer and leaves alone a button whose work is running (its
``PanelAction`` owns it then). No Qt import: buttons are handed in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from BackSplitShared.paths import resolve_folder

try:
    from slicer.i18n import tr as _
except ImportError:  # slicer-core (the tests) has no i18n
    def _(text: str) -> str:
        return text


def export_missing(case_count: int, targets: Sequence[str], dataset_name: str) -> Optional[str]:
    """What Export still needs, or None."""
    if case_count < 1:
        return _("Add at least one case (Cases section)")
    if not list(targets):
        return _("Mark at least one target (section Targets and support structures)")
    if not (dataset_name or "").strip():
        return _("Type a dataset name")
    return None


def apply_missing(model_folder, volume) -> Optional[str]:
    """What Apply still needs, or None: a model folder that exists (a cleared field is refused, never ".") and an
    input volume."""
    folder = resolve_folder(model_folder)
    if folder is None:
        return _("Choose a model folder, or a model in the models list and Use for Apply")
    if not folder.is_dir():
        return _("The model folder {folder} does not exist").format(folder=folder)
    if volume is None:
        return _("Choose the input volume")
    return None


def generate_missing(case_count: int, needs_model_folder: bool, model_folder) -> Optional[str]:
    """What Generate still needs, or None (an nnU-Net organ model needs its folder)."""
    if case_count < 1:
        return _("Add at least one case (Cases section)")
    if needs_model_folder and resolve_folder(model_folder) is None:
        return _("Choose the organ model folder (an nnU-Net v2 model folder)")
    return None


def suggest_missing(case_count: int, target: str) -> Optional[str]:
    """What Suggest still needs, or None."""
    if case_count < 1:
        return _("Add at least one case (Cases section)")
    if not (target or "").strip():
        return _("Type the target (lesion) segment name")
    return None


@dataclass
class _Entry:
    button: object
    busy: Callable[[], bool]
    missing: Callable[[], Optional[str]]
    tooltip: str


class ReadyButtons:
    """``add(button, busy, missing, tooltip)``; ``update()`` enables each idle button only when ``missing()`` is
    None, with its own tooltip, else greys it out with the missing input as the tooltip. A rule that fails counts
    as "ready" (the button's own handler then reports the problem): this never raises out of a timer."""

    def __init__(self) -> None:
        self.entries: list[_Entry] = []

    def add(self, button, busy: Callable[[], bool], missing: Callable[[], Optional[str]], tooltip: str) -> None:
        self.entries.append(_Entry(button, busy, missing, tooltip))

    def update(self) -> None:
        for entry in self.entries:
            if entry.busy():
                continue
            try:
                problem = entry.missing()
            except Exception:  # noqa: BLE001 (a half-set-up panel, a closed scene: let the click say it)
                problem = None
            entry.button.enabled = problem is None
            entry.button.toolTip = entry.tooltip if problem is None else problem
