"""The panel's *Support structures* section (widgets only; the logic is in ``supports_scene`` and the engine).

1. *Generate*: run an organ model on every listed case (an nnU-Net model folder or the TotalSegmentator command in
   a child process; Cancel ends the process tree; or the TotalSegmentator extension's logic, asked for and never
   installed) and add the structures as new segments to each case's segmentation (one undo step per case).
2. *Suggest*: rank the segments of the listed cases as support structures for the chosen target, with the reasons.
3. *Accept*: move the top suggestions into the support list, smaller structures first (overlap policy).
Attached to the module widget by one line in ``BackSplitSegment.setup``, which hands in what the section uses: the
panel's widgets, the case list (``CaseListView``), the dependency check of the logic, and the Qt pieces (a timer, the
table item class): this module itself imports no Qt, like every ``BackSplitSegmentLib`` module, and never reaches into
the module widget.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Protocol, Sequence

import slicer

from backsplit.supports.suggest import SuggestOptions, suggest
from BackSplitShared.panel_support import TickGuard, report_error

from .scene_cases import SceneCase
from .supports_scene import (
    import_events,
    run_totalsegmentator_extension,
    start_generation,
    suggest_cases_from_scene,
    undo_last_case,
)

try:
    from slicer.i18n import tr as _
except ImportError:  # slicer-core (the tests) has no i18n
    def _(text: str) -> str:
        return text

SOURCES = ["nnU-Net model folder", "TotalSegmentator (command)", "TotalSegmentator (extension)"]


class CaseListView(Protocol):
    """What the section needs of the panel's case list (``case_list.CaseList``): the listed cases, and a redraw of
    the table and class lists after segments were added, undone or moved."""
    cases: Sequence[SceneCase]

    def refresh(self) -> None: ...


class SupportsSection:
    """``SupportsSection(ui, case_list, ensure_dependencies, timer, table_item)``: ``ui`` the panel's widgets
    (``childWidgetVariables``), ``case_list`` a ``CaseListView``, ``ensure_dependencies()`` True when nnU-Net can run
    (installing after asking), ``timer`` a ``qt.QTimer`` (its ticks run through ``TickGuard``), ``table_item`` the
    table item class (``qt.QTableWidgetItem``)."""

    def __init__(self, ui, case_list: CaseListView, ensure_dependencies: Callable[[], bool], timer, table_item):
        self.ui = ui
        self.case_list = case_list
        self.ensure_dependencies = ensure_dependencies
        self.job = None
        self.report = None
        self.table_item = table_item
        self.timer = timer
        self.timer.setInterval(300)
        self.timer.timeout.connect(TickGuard(self.timer, self._idle, report_error,
                                             _("Adding the generated segments failed")).wrap(self._poll))
        self.ui.supportsSourceComboBox.clear()
        for text in SOURCES:
            self.ui.supportsSourceComboBox.addItem(_(text))
        self.ui.supportsGenerateButton.clicked.connect(self.onGenerate)
        self.ui.supportsCancelButton.clicked.connect(self.onCancel)
        self.ui.supportsUndoButton.clicked.connect(self.onUndo)
        self.ui.supportsSuggestButton.clicked.connect(self.onSuggest)
        self.ui.supportsAcceptButton.clicked.connect(self.onAccept)
        self.ui.supportsCancelButton.enabled = False
        slicer.app.connect("aboutToQuit()", self.cleanup)

    def cleanup(self) -> None:
        self.timer.stop()
        if self.job is not None:
            self.job.close()
            self.job = None

    def _idle(self) -> None:
        """Buttons back after a failed tick; a child still running is ended without waiting."""
        self.ui.supportsGenerateButton.enabled = True
        self.ui.supportsCancelButton.enabled = False
        job, self.job = self.job, None
        if job is not None and job.process.is_running():
            job.process.cancel(wait=False)
        elif job is not None:
            job.close()

    def _cases(self) -> list:
        return list(self.case_list.cases)

    def _refresh(self) -> None:
        self.case_list.refresh()

    def _classes(self) -> list:
        return [n.strip() for n in self.ui.supportsClassesLineEdit.text.split(",") if n.strip()]

    # ---- generate ---------------------------------------------------------------------------------------------
    def onGenerate(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not run the organ model."), waitCursor=True):
            cases = self._cases()
            source = self.ui.supportsSourceComboBox.currentIndex
            conflict = "refuse" if self.ui.supportsRefuseCheckBox.checked else "suffix"
            device = self.ui.supportsDeviceComboBox.currentText
            if source == 2:  # the extension's logic runs in Slicer, one case after the other
                for case in cases:
                    added = run_totalsegmentator_extension(case, subset=self._classes(),
                                                           fast=self.ui.supportsFastCheckBox.checked,
                                                           cpu=device == "cpu", on_conflict=conflict)
                    self.ui.supportsStatusLabel.text = _("Case {case}: added {names}").format(
                        case=case.case_id, names=", ".join(added.values()))
                    slicer.app.processEvents()
                self._refresh()
                return
            if source == 0 and not self.ensure_dependencies():
                return
            model = self.ui.supportsModelPathLineEdit.currentPath.strip()
            if source == 0 and not model:
                raise ValueError(_("Choose the organ model folder (an nnU-Net v2 model folder)."))
            self.job = start_generation(cases, model_dir=Path(model) if source == 0 else None,
                                        classes=self._classes(), device=device,
                                        fast=self.ui.supportsFastCheckBox.checked, on_conflict=conflict)
            self.ui.supportsGenerateButton.enabled = False
            self.ui.supportsCancelButton.enabled = True
            self.ui.supportsProgressBar.value = 0
            self.ui.supportsStatusLabel.text = _("Running the organ model...")
            self.timer.start()

    def _poll(self) -> None:
        job = self.job
        events = job.process.poll_events()
        for event in events:
            if event.fraction is not None and event.stage == "generate":
                self.ui.supportsProgressBar.value = int(100 * event.fraction)
        with slicer.util.tryWithErrorDisplay(_("Could not add the generated segments."), waitCursor=False):
            for message in import_events(job, events):
                self.ui.supportsStatusLabel.text = message
        if job.process.is_running():
            return
        self.timer.stop()
        job.process.wait()
        import_events(job, job.process.poll_events())
        self.ui.supportsGenerateButton.enabled = True
        self.ui.supportsCancelButton.enabled = False
        if job.process.cancelled:
            text = _("Cancelled; the cases finished before stay added.")
        elif job.process.error:
            text = _("Failed: {error}").format(error=job.process.error)
        else:
            text = _("{done} case(s) got generated segments; {failed} failed.").format(
                done=len(job.imported), failed=len(job.failed))
        self.ui.supportsStatusLabel.text = text
        if job.failed:
            slicer.util.errorDisplay(_("Some cases failed:") + "\n" +
                                     "\n".join(f"{k}: {v}" for k, v in job.failed.items()))
        job.close()
        self.job = None
        self._refresh()

    def onCancel(self) -> None:
        if self.job is not None:
            self.job.process.cancel()
            self.ui.supportsStatusLabel.text = _("Cancelling...")

    def onUndo(self) -> None:
        undone = [case.case_id for case in self._cases() if undo_last_case(case.segmentation)]
        self.ui.supportsStatusLabel.text = _("Undone in: {cases}").format(cases=", ".join(undone) or _("none"))
        self._refresh()

    # ---- suggest and accept -----------------------------------------------------------------------------------
    def onSuggest(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not rank the support structures."), waitCursor=True):
            target = self.ui.supportsTargetLineEdit.text.strip()
            if not target:
                raise ValueError(_("Type the target (lesion) segment name."))
            cases = self._cases()
            self.report = suggest(suggest_cases_from_scene(cases),
                                  SuggestOptions(target, neighbour_mm=float(self.ui.supportsDistanceSpinBox.value)),
                                  total=len(cases))
            table = self.ui.supportsTable
            table.setRowCount(len(self.report.ranked))
            for row, c in enumerate(self.report.ranked):
                for column, text in enumerate([c.name, c.role, f"{c.score:.2f}", "; ".join(c.reasons)]):
                    table.setItem(row, column, self.table_item(text))
            self.ui.supportsStatusLabel.text = _("{target}: {n} of {total} cases have it").format(
                target=target, n=self.report.target_cases, total=self.report.cases)

    def onAccept(self) -> None:
        if self.report is None:
            return
        accepted = self.report.accepted(int(self.ui.supportsTopSpinBox.value) or None)
        supports = self.ui.supportList
        present = {supports.item(i).text() for i in range(supports.count)}
        for name in accepted:
            if name not in present:
                supports.addItem(name)
        self._refresh()
        self.ui.supportsStatusLabel.text = _("Support list: {names}").format(names=", ".join(accepted))
