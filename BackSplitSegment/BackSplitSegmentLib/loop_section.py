"""The panel's "Correct, add, fine-tune" section and model manager (Qt wiring only; the logic is in
``dataset_add.py`` and ``backsplit.models``, tested without Qt).

Built once by the module widget (``LoopSection(self.ui, self.logic, qt.QTimer(), qt.QFileDialog)``: the Qt classes
are handed in, as for the other sections, so no module of BackSplitSegmentLib imports qt); uses the Apply panel's
input volume and model folder, and the segmentation of the last prediction by default (``LoopLogic``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import slicer
from slicer.i18n import tr as _

from backsplit.models.archive import export_model, import_model
from backsplit.models.catalog import model_choices, read_entry
from backsplit.models.location import models_dir
from backsplit.models.loop import FineTuneRequest, fine_tune_options
from backsplit.models.remove import remove_model
from backsplit.models.trust import confirm_trust, trust_warning
from backsplit.runtime.progress import Stage
from backsplit.training.process import TrainingProcess
from BackSplitShared.panel_support import TickGuard, report_error

from .dataset_add import SceneAddOptions, add_scene_case, result_text


class LoopLogic(Protocol):
    """What the section needs of the module's logic (``BackSplitSegmentLogic``)."""
    lastSegmentation: object          # the segmentation node of the last prediction, or None

    def ensureDependencies(self) -> bool: ...


class LoopSection:
    """``LoopSection(ui, logic, timer, file_dialog)``: ``ui`` the panel's widgets, ``logic`` a ``LoopLogic``,
    ``timer`` a ``qt.QTimer`` (its ticks run through ``TickGuard``), ``file_dialog`` ``qt.QFileDialog``."""

    def __init__(self, ui, logic: LoopLogic, timer, file_dialog):
        self.ui, self.logic, self._dialog = ui, logic, file_dialog
        self._training = None
        self._timer = timer
        self._timer.setInterval(500)
        self._timer.timeout.connect(TickGuard(self._timer, self._idle, report_error, _("Fine-tuning display failed"))
                                    .wrap(self._poll))
        slicer.app.connect("aboutToQuit()", self.cleanup)
        if not str(ui.loopModelsDir.currentPath or "").strip():
            ui.loopModelsDir.currentPath = str(models_dir())
        ui.loopModelsDir.currentPathChanged.connect(lambda _path: self.refresh())
        ui.predictVolume.currentNodeChanged.connect(lambda _node: self.refresh())
        ui.loopRefreshButton.clicked.connect(self.refresh)
        ui.loopModelCombo.currentIndexChanged.connect(lambda _index: self._showModel())
        ui.loopUseModelButton.clicked.connect(self.useModel)
        ui.loopExportModelButton.clicked.connect(self.exportModel)
        ui.loopImportModelButton.clicked.connect(self.importModel)
        ui.loopRemoveModelButton.clicked.connect(self.removeModel)
        ui.loopAddButton.clicked.connect(self.addCase)
        ui.loopFineTuneButton.clicked.connect(self.fineTune)
        ui.loopCancelButton.clicked.connect(self.cancel)
        self._folders: list[Path] = []
        self.refresh()

    # ---- model manager ---------------------------------------------------------------------------------------------
    def _modelsDir(self) -> Path:
        return Path(self.ui.loopModelsDir.currentPath)

    def _channels(self) -> int:
        return 1 + (1 if self.ui.predictExtraChannelSelector.currentNode() else 0)

    def refresh(self) -> None:
        """The models that fit the Apply panel's volume(s), newest first."""
        self.ui.loopModelCombo.clear()
        choices = model_choices(self._modelsDir(), self._channels())
        self._folders = [folder for _label, folder in choices]
        for label, _folder in choices:
            self.ui.loopModelCombo.addItem(label)
        self._showModel()

    def _current(self):
        index = self.ui.loopModelCombo.currentIndex
        return self._folders[index] if 0 <= index < len(self._folders) else None

    def _showModel(self) -> None:
        folder = self._current()
        if folder is None:
            self.ui.loopModelInfo.text = _("No model in {folder} takes {n} channel(s).").format(
                folder=self._modelsDir(), n=self._channels())
            return
        fields = read_entry(folder).fields()
        self.ui.loopModelInfo.text = "\n".join(f"{k}: {v}" for k, v in fields.items() if v not in (None, "", []))

    def _confirmTrust(self, folder: Path) -> bool:
        warning = trust_warning(folder)
        if warning is None:
            return True
        if not slicer.util.confirmYesNoDisplay(warning + "\n\n" + _("Trust this model from now on?")):
            return False
        confirm_trust(folder)
        return True

    def useModel(self) -> None:
        folder = self._current()
        if folder is not None and self._confirmTrust(folder):
            self.ui.modelFolder.currentPath = str(folder)

    def exportModel(self) -> None:
        folder = self._current()
        path = self._dialog.getSaveFileName(None, _("Export model"), f"{folder.name}.zip" if folder else "",
                                              "Zip (*.zip)") if folder else ""
        if path:
            with slicer.util.tryWithErrorDisplay(_("Could not export the model."), waitCursor=True):
                export_model(folder, Path(path), overwrite=True)   # the dialog already asked about overwriting
                self.ui.loopStatusLabel.text = _("Exported to {path}").format(path=path)

    def importModel(self) -> None:
        path = self._dialog.getOpenFileName(None, _("Import model"), "", "Zip (*.zip)")
        if path:
            with slicer.util.tryWithErrorDisplay(_("Could not import the model."), waitCursor=True):
                result = import_model(Path(path), self._modelsDir(), rename_if_exists=True)
                self.ui.loopStatusLabel.text = _("Imported '{name}' (checksums verified; untrusted until you use "
                                                 "it and confirm).").format(name=result.name)
                self.refresh()

    def removeModel(self) -> None:
        folder = self._current()
        if folder is not None:
            with slicer.util.tryWithErrorDisplay(_("The model was not removed."), waitCursor=False):
                remove_model(folder, slicer.util.confirmOkCancelDisplay)
                self.refresh()

    # ---- correct, add, fine-tune -----------------------------------------------------------------------------------
    def addCase(self) -> None:
        segmentation = self.ui.loopSegmentation.currentNode() or self.logic.lastSegmentation
        options = SceneAddOptions(Path(self.ui.loopDatasetPath.currentPath), case_id=self.ui.loopCaseId.text,
                                  new_id_if_taken=self.ui.loopNewIdCheckBox.checked)
        with slicer.util.tryWithErrorDisplay(_("The case was not added."), waitCursor=True):
            result = add_scene_case(self.ui.predictVolume.currentNode(), segmentation, options)
            self.ui.loopStatusLabel.text = result_text(result)

    def fineTune(self) -> None:
        parent = self._current()
        if parent is None or not self._confirmTrust(parent) or not self.logic.ensureDependencies():
            return
        with slicer.util.tryWithErrorDisplay(_("Could not start fine-tuning."), waitCursor=True):
            request = FineTuneRequest(Path(self.ui.loopDatasetPath.currentPath), parent, self._modelsDir(),
                                      self._modelsDir() / ".backsplit-work",
                                      epochs=int(self.ui.loopEpochsSpinBox.value))
            self._training = TrainingProcess(fine_tune_options(request)).start()
            self.ui.loopFineTuneButton.enabled = False
            self.ui.loopCancelButton.enabled = True
            self.ui.loopProgressBar.value = 0
            self._timer.start()

    def _idle(self) -> None:
        """Buttons back after a failed tick; a training still running is ended without waiting."""
        self.ui.loopFineTuneButton.enabled = True
        self.ui.loopCancelButton.enabled = False
        if self._training is not None and self._training.is_running():
            self._training.cancel(wait=False)
        self._training = None

    def _poll(self) -> None:
        for event in self._training.poll_events():
            if event.stage == Stage.LOG:
                continue
            if event.fraction is not None:
                self.ui.loopProgressBar.value = int(100 * event.fraction)
            self.ui.loopStatusLabel.text = event.message
        if self._training.is_running():
            return
        self._timer.stop()
        self.ui.loopFineTuneButton.enabled = True
        self.ui.loopCancelButton.enabled = False
        if self._training.result_models:
            self.ui.loopStatusLabel.text = _("New model: {path}").format(path=self._training.result_models[0])
            self.ui.loopProgressBar.value = 100
            self.refresh()
        self._training = None

    def cancel(self) -> None:
        if self._training is not None:
            self._training.cancel(wait=False)
            self.ui.loopStatusLabel.text = _("Cancelling...")

    def cleanup(self) -> None:
        self._timer.stop()
        if self._training is not None and self._training.is_running():
            self._training.cancel(wait=True)
