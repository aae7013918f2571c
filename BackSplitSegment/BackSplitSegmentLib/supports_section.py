"""The panel's *Support structures* section (widgets only; the logic is in ``generation_run``, ``supports_scene``
and the engine).

1. *Generate*: run an organ model on every listed case in a child process (an nnU-Net model folder, the
   TotalSegmentator command, or the TotalSegmentator that the TotalSegmentator extension installed: the same child,
   never the extension's blocking ``process()``), with progress and a Cancel that does not wait, and add the
   structures as new segments to each case's segmentation. PyTorch and nnU-Net are installed first when an nnU-Net
   model needs them, without freezing the panel (``DependencyGate``).
   Each case's volumes are handed to the child in short timer steps (``generation_run``: about 40 ms of reading
   from the scene or writing for the child per tick, as far as the child has asked), and the segments of each
   finished case are added one class per tick (``generation_run.import_step``).
2. *Suggest*: rank the segments of the listed cases as support structures for the chosen target, with the reasons:
   the cases are read from the scene in short timer steps and ranked in a child process (``start_suggest``), with
   progress and the section's Cancel.
3. *Accept*: move the top suggestions into the support list, smaller structures first (overlap policy). The status
   line warns when the list is longer than advised for this panel's fine-tuning budget (``budget_note``; the advice
   and its source: ``backsplit.training.budget``).
Attached to the module widget by one line in ``BackSplitSegment.setup``, which hands in what the section uses: the
panel's widgets, the case list (``CaseListView``), and the Qt pieces (an install timer, a timer, the
table item class): this module itself imports no Qt, like every ``BackSplitSegmentLib`` module, and never reaches into
the module widget.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import slicer

from backsplit.errors import InputError
from backsplit.models.loop import LOOP_ITERATIONS
from backsplit.supports.suggest import SuggestOptions
from backsplit.supports.suggest_worker import report_from_json
from backsplit.training.budget import supports_warning
from BackSplitShared.install_run import DependencyGate
from BackSplitShared.panel_action import PanelAction, once
from BackSplitShared.panel_support import report_error
from BackSplitShared.paths import resolve_folder

from .generation_run import import_step, queue_events, start_generation
from .scene_cases import SceneCase
from .supports_scene import start_suggest, totalsegmentator_extension_logic, undo_last_case

try:
    from slicer.i18n import tr as _
except ImportError:  # slicer-core (the tests) has no i18n
    def _(text: str) -> str:
        return text

SOURCES = ["nnU-Net model folder", "TotalSegmentator (command)", "TotalSegmentator (extension)"]


def budget_note(n_supports: int, loop_epochs: int) -> str:
    """The warning for ``n_supports`` support structures and this panel's fine-tuning of ``loop_epochs`` epochs of
    ``LOOP_ITERATIONS`` iterations (``training.budget.supports_warning``), or "" when within the advice."""
    return supports_warning(int(n_supports), int(loop_epochs) * LOOP_ITERATIONS) or ""


class CaseListView(Protocol):
    """What the section needs of the panel's case list (``case_list.CaseList``): the listed cases, and a redraw of
    the table and class lists after segments were added, undone or moved."""
    cases: Sequence[SceneCase]

    def refresh(self) -> None: ...


class SupportsSection:
    """``SupportsSection(ui, case_list, install_timer, timer, table_item)``: ``ui`` the panel's widgets
    (``childWidgetVariables``), ``case_list`` a ``CaseListView``, ``install_timer`` and ``timer`` ``qt.QTimer``
    (their ticks run through the Generate button's ``PanelAction``), ``table_item`` the table item class
    (``qt.QTableWidgetItem``)."""

    def __init__(self, ui, case_list: CaseListView, install_timer, timer, table_item):
        self.ui = ui
        self.case_list = case_list
        self.job = None
        self.report = None
        self.table_item = table_item
        self.timer = timer
        self.timer.setInterval(50)   # one hand-over piece and one class of a finished case per tick
        self.action = PanelAction(_("Could not generate the support structures"), ui.supportsGenerateButton,
                                  ui.supportsCancelButton, status=self._status, on_idle=self._idle, wait_cursor=True)
        self.timer.timeout.connect(self.action.wrap_tick(self.timer, self._poll))
        self.install_timer = install_timer
        self.install_timer.setInterval(250)
        self.gate = DependencyGate(install_timer, lambda text, busy: self._status(text),
                                   lambda text: slicer.util.confirmOkCancelDisplay(text, _("BackSplit: install")),
                                   lambda text: (self.action.finish(), report_error(text)), ended=self.action.finish)
        self.install_timer.timeout.connect(self.action.wrap_tick(self.install_timer, self.gate.tick))
        self.ui.supportsSourceComboBox.clear()
        for text in SOURCES:
            self.ui.supportsSourceComboBox.addItem(_(text))
        self.ui.supportsGenerateButton.clicked.connect(self.action.slot(self.onGenerate))
        self.ui.supportsCancelButton.clicked.connect(once(_("Could not cancel"), self.onCancel, status=self._status))
        self.ui.supportsUndoButton.clicked.connect(once(_("Could not undo"), self.onUndo, status=self._status))
        self.suggestJob = None   # Suggest: cases read in timer steps, ranked in a child process (N2)
        self.suggestTimer = type(timer)()   # a timer of its own (the same Qt class as the Generate timer)
        self.suggestTimer.setInterval(20)
        self.suggestAction = PanelAction(_("Could not rank the support structures"), ui.supportsSuggestButton,
                                         None, status=self._status, on_idle=self._suggestIdle)
        self.suggestTimer.timeout.connect(self.suggestAction.wrap_tick(self.suggestTimer, self._stepSuggest))
        self.ui.supportsSuggestButton.clicked.connect(self.suggestAction.slot(self.onSuggest))
        self.ui.supportsAcceptButton.clicked.connect(once(_("Could not accept the suggestions"), self.onAccept,
                                                          status=self._status))
        # after the panel's own move
        self.ui.addSupportButton.clicked.connect(once(_("Could not check the budget"), self.showBudgetNote))
        slicer.app.connect("aboutToQuit()", self.cleanup)

    def _status(self, text: str) -> None:
        if text:
            self.ui.supportsStatusLabel.text = text

    def cleanup(self) -> None:
        """Slicer is closing: stop the timers, end the child without waiting, remove the temporary folder."""
        self.suggestAction.finish()
        self.timer.stop()
        self.install_timer.stop()
        self.gate.cancel()
        job, self.job = self.job, None
        if job is not None:
            job.close()   # ends a running child without waiting, removes the input folder

    def _idle(self) -> None:
        """Every way back to idle (``PanelAction.on_idle``): a child still running is ended without waiting (audit
        F7: no join on the GUI thread), the temporary folder removed, the case table redrawn."""
        self.timer.stop()
        job, self.job = self.job, None
        if job is not None:
            job.close()   # ends a running child without waiting (GenerationJob.close), removes the input folder
        self.ui.supportsCancelButton.enabled = self.suggestJob is not None   # the one Cancel also stops Suggest
        self._refresh()

    def _cases(self) -> list:
        return list(self.case_list.cases)

    def _refresh(self) -> None:
        self.case_list.refresh()

    def _classes(self) -> list:
        return [n.strip() for n in self.ui.supportsClassesLineEdit.text.split(",") if n.strip()]

    # ---- generate ---------------------------------------------------------------------------------------------
    def onGenerate(self) -> bool:
        """Run by the Generate button's ``PanelAction``: True while the installation or the organ model runs."""
        source = self.ui.supportsSourceComboBox.currentIndex
        model = self.ui.supportsModelPathLineEdit.currentPath.strip()
        if source == 0 and not model:
            raise InputError(_("choose the organ model folder (an nnU-Net v2 model folder)"))
        if source == 2:   # only its set-up is checked here: the model runs in the child, like the command
            totalsegmentator_extension_logic()
        if source != 0:
            return self._startGeneration()
        return self.gate.run(self._startGeneration)   # an nnU-Net model needs PyTorch and nnU-Net: install first

    def _startGeneration(self) -> bool:
        source = self.ui.supportsSourceComboBox.currentIndex
        model = self.ui.supportsModelPathLineEdit.currentPath.strip()
        self.job = start_generation(self._cases(), model_dir=resolve_folder(model) if source == 0 else None,
                                    classes=self._classes(), device=self.ui.supportsDeviceComboBox.currentText,
                                    fast=self.ui.supportsFastCheckBox.checked,
                                    on_conflict="refuse" if self.ui.supportsRefuseCheckBox.checked else "suffix")
        self.ui.supportsProgressBar.value = 0
        self._status(_("Running the organ model..."))
        self.timer.start()
        return True

    def _poll(self) -> None:
        job = self.job
        events = job.poll()   # at most one piece of handing a case's volumes to the child, and its new events
        for event in events:
            if event.fraction is not None and event.stage == "generate":
                self.ui.supportsProgressBar.value = int(100 * event.fraction)
        self._status(job.message)
        for message in queue_events(job, events) + import_step(job):   # one class (or case index) per tick
            self._status(message)
        if not job.ended or job.importing:   # running, its last lines being read, or cases to add
            return
        for message in queue_events(job, job.poll()):   # the events that came with the end
            self._status(message)
        if job.importing:
            return
        state, failure = job.outcome()
        if state == "cancelled":
            text = _("Cancelled; the cases finished before stay added.")
        elif state == "failed":   # a case that could not be handed over, its error event, else how it ended
            text = _("Failed: {error}").format(error=failure)
        else:
            text = _("{done} case(s) got generated segments; {failed} failed.").format(
                done=len(job.imported), failed=len(job.failed))
        failed = dict(job.failed)
        self.action.finish(text)                       # idle: timer stopped, folder removed, table redrawn
        if failed and state != "cancelled":
            report_error(_("Some cases failed:") + "\n" + "\n".join(f"{k}: {v}" for k, v in failed.items()), "")

    def onCancel(self) -> None:
        """Never waits on the GUI thread (audit F7): the child is ended in the background, the timer sees the end.
        Also stops a running *Suggest* (the section's one Cancel button)."""
        if self.suggestJob is not None:
            self.suggestJob.cancel()
            self._status(_("Cancelling..."))
        if self.gate.busy:
            self.gate.cancel()
        elif self.job is not None:
            self.job.cancel()   # no more hand-over; the child's process tree ended in the background
            self._status(_("Cancelling..."))

    def onUndo(self) -> None:
        undone = [case.case_id for case in self._cases() if undo_last_case(case.segmentation)]
        self.ui.supportsStatusLabel.text = _("Undone in: {cases}").format(cases=", ".join(undone) or _("none"))
        self._refresh()

    # ---- suggest and accept -----------------------------------------------------------------------------------
    def onSuggest(self) -> bool:
        """Run by the Suggest button's ``PanelAction``: the cases are read in timer steps and ranked in a child
        process (``supports_scene.start_suggest``); Cancel stops it; True while it runs."""
        target = self.ui.supportsTargetLineEdit.text.strip()
        if not target:
            raise InputError(_("type the target (lesion) segment name"))
        options = SuggestOptions(target, neighbour_mm=float(self.ui.supportsDistanceSpinBox.value))
        self.suggestJob = start_suggest(self._cases(), options)
        self.ui.supportsCancelButton.enabled = True
        self.ui.supportsProgressBar.value = 0
        self._status(_("Ranking the support structures..."))
        self.suggestTimer.start()
        return True

    def _stepSuggest(self) -> None:
        """One short piece (reading a case from the scene, or handing it to the child) per tick."""
        job = self.suggestJob.step()
        if job.fraction is not None:
            self.ui.supportsProgressBar.value = int(100 * job.fraction)
        if not job.done:
            self._status(job.message)
            return
        if job.state == "cancelled":
            self.suggestAction.finish(_("Ranking cancelled."))
        elif job.state == "failed":
            self.suggestAction.failed(job.message)
        else:
            self.suggestAction.finish()
            self.showReport(report_from_json(job.data["report"]))

    def _suggestIdle(self) -> None:
        """Every way back to idle: timer stopped, the child asked to stop (never waited for)."""
        self.suggestTimer.stop()
        job, self.suggestJob = self.suggestJob, None
        if job is not None:
            job.close()
        self.ui.supportsCancelButton.enabled = self.action.busy or self.gate.busy

    def showReport(self, report) -> None:
        """The ranked table and the status line of a finished *Suggest*."""
        self.report = report
        table = self.ui.supportsTable
        table.setRowCount(len(report.ranked))
        for row, c in enumerate(report.ranked):
            for column, text in enumerate([c.name, c.role, f"{c.score:.2f}", "; ".join(c.reasons)]):
                table.setItem(row, column, self.table_item(text))
        self.ui.supportsStatusLabel.text = _("{target}: {n} of {total} cases have it").format(
            target=report.target, n=report.target_cases, total=report.cases)

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
        self.ui.supportsStatusLabel.text = _("Support structures: {names}").format(names=", ".join(accepted))
        self.showBudgetNote(self.ui.supportsStatusLabel.text + " ")

    def showBudgetNote(self, before: str = "") -> None:
        """The status line warns when the support list is longer than advised for this panel's fine-tuning."""
        note = budget_note(self.ui.supportList.count, self.ui.loopEpochsSpinBox.value)
        if note:
            self._status(before + _("Warning: {note}").format(note=note))
