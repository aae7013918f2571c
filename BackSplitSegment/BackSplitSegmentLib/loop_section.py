"""The panel's "Correct, add, fine-tune" section and model manager (Qt wiring only; the logic is in
``dataset_add.py`` and ``backsplit.models``, tested without Qt).

Built once by the module widget (``LoopSection(self.ui, self.logic, qt.QTimer(), qt.QFileDialog)``: the Qt classes
are handed in, as for the other sections, so no module of BackSplitSegmentLib imports qt); uses the Apply panel's
input volume and model folder, and the segmentation of the last prediction by default (``LoopLogic``). *Add to
dataset* reads the case from the scene in short timer steps and adds it in a child process
(``dataset_add.start_add_scene_case``); the section's Cancel stops it, and every way out leaves Add usable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import slicer

from backsplit.errors import InputError
from backsplit.models.archive import export_model, import_model
from backsplit.models.catalog import model_choices, read_entry
from backsplit.models.location import models_dir
from backsplit.models.loop import FineTuneRequest, fine_tune_options
from backsplit.models.remove import remove_model
from backsplit.models.trust import confirm_trust, trust_warning
from backsplit.runtime.progress import Stage
from backsplit.training.process import TrainingProcess
from BackSplitShared.install_run import DependencyGate
from BackSplitShared.panel_action import PanelAction, once
from BackSplitShared.panel_support import report_error
from BackSplitShared.paths import required_folder, resolve_folder

from .dataset_add import SceneAddOptions, add_result, result_text, start_add_scene_case

try:
    from slicer.i18n import tr as _
except ImportError:  # slicer-core (the tests) has no i18n
    def _(text: str) -> str:
        return text


class LoopLogic(Protocol):
    """What the section needs of the module's logic (``BackSplitSegmentLogic``)."""
    lastSegmentation: object          # the segmentation node of the last prediction, or None


class ModelChoices:
    """``model_choices`` read again only when the models folder changed (audit N9: every keystroke in the folder
    field and every volume change re-read every manifest and summed every folder's size on the GUI thread). The key
    is the folder, the channel count and the modification times of the folder and of its entries (a new, removed or
    renamed model changes them); *Refresh* reads again whatever the times say."""

    def __init__(self, read=model_choices):
        self.read = read
        self._key, self._value = None, []

    @staticmethod
    def _stamp(folder: Path):
        try:
            return folder.stat().st_mtime_ns, tuple(sorted((e.name, e.stat().st_mtime_ns) for e in folder.iterdir()))
        except OSError:
            return None

    def get(self, folder: Path, n_channels: int, force: bool = False) -> list:
        key = (str(folder), n_channels, self._stamp(folder))
        if force or key != self._key:
            self._key, self._value = key, self.read(folder, n_channels)
        return list(self._value)


class LoopSection:
    """``LoopSection(ui, logic, timer, file_dialog, install_timer)``: ``ui`` the panel's widgets, ``logic`` a
    ``LoopLogic``, ``timer`` and ``install_timer`` ``qt.QTimer`` (their ticks run through the Fine-tune button's
    ``PanelAction``), ``file_dialog`` ``qt.QFileDialog``."""

    def __init__(self, ui, logic: LoopLogic, timer, file_dialog, install_timer):
        self.ui, self.logic, self._dialog = ui, logic, file_dialog
        self._training = None
        self._timer = timer
        self._timer.setInterval(500)
        status = lambda text: setattr(ui.loopStatusLabel, "text", text) if text else None  # noqa: E731
        self.action = PanelAction(_("Could not fine-tune"), ui.loopFineTuneButton, ui.loopCancelButton,
                                  status=status, on_idle=self._idle, wait_cursor=True)
        self._timer.timeout.connect(self.action.wrap_tick(self._timer, self._poll))
        self._installTimer = install_timer
        self._installTimer.setInterval(250)
        self._gate = DependencyGate(install_timer, lambda text, busy: status(text),
                                    lambda text: slicer.util.confirmOkCancelDisplay(text, _("BackSplit: install")),
                                    lambda text: (self.action.finish(), report_error(text)), ended=self.action.finish)
        self._installTimer.timeout.connect(self.action.wrap_tick(self._installTimer, self._gate.tick))
        self._choices = ModelChoices()
        self._adding = None   # Add to dataset: the case read in timer steps, added by a child process (audit N2)
        self._addTimer = type(timer)()   # a timer of its own (the same Qt class as the fine-tune timer)
        self._addTimer.setInterval(20)
        self.addAction = PanelAction(_("The case was not added"), ui.loopAddButton, None, status=status,
                                     on_idle=self._addIdle, wait_cursor=True)
        self._addTimer.timeout.connect(self.addAction.wrap_tick(self._addTimer, self._stepAdd))
        ui.loopAddButton.clicked.connect(self.addAction.slot(self.addCase))
        slicer.app.connect("aboutToQuit()", self.cleanup)
        if not str(ui.loopModelsDir.currentPath or "").strip():
            ui.loopModelsDir.currentPath = str(models_dir())
        ui.loopModelsDir.currentPathChanged.connect(lambda _path: self.refresh())
        ui.predictVolume.currentNodeChanged.connect(lambda _node: self.refresh())
        ui.loopModelCombo.currentIndexChanged.connect(lambda _index: self._showModel())
        for button, what, fn in (
                (ui.loopRefreshButton, _("Could not list the models"), lambda: self.refresh(force=True)),
                (ui.loopUseModelButton, _("Could not use the model"), self.useModel),
                (ui.loopExportModelButton, _("Could not export the model"), self.exportModel),
                (ui.loopImportModelButton, _("Could not import the model"), self.importModel),
                (ui.loopRemoveModelButton, _("The model was not removed"), self.removeModel),
                (ui.loopCancelButton, _("Could not cancel"), self.cancel)):
            button.clicked.connect(once(what, fn, status=status, wait_cursor=button is not ui.loopCancelButton))
        ui.loopFineTuneButton.clicked.connect(self.action.slot(self.fineTune))
        self._folders: list[Path] = []
        once(_("Could not list the models"), self.refresh, status=status)()

    # ---- model manager ---------------------------------------------------------------------------------------------
    def _modelsDir(self) -> Path:
        """The models folder; a cleared field is the default one, never Slicer's working directory (N4)."""
        return resolve_folder(self.ui.loopModelsDir.currentPath, models_dir())

    def _channels(self) -> int:
        return 1 + (1 if self.ui.predictExtraChannelSelector.currentNode() else 0)

    def refresh(self, force: bool = False) -> None:
        """The models that fit the Apply panel's volume(s), newest first (read again only when the folder changed,
        or with ``force``: the Refresh button)."""
        self.ui.loopModelCombo.clear()
        choices = self._choices.get(self._modelsDir(), self._channels(), force)
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
            export_model(folder, Path(path), overwrite=True)   # the dialog already asked about overwriting
            self.ui.loopStatusLabel.text = _("Exported to {path}").format(path=path)

    def importModel(self) -> None:
        path = self._dialog.getOpenFileName(None, _("Import model"), "", "Zip (*.zip)")
        if path:
            result = import_model(Path(path), self._modelsDir(), rename_if_exists=True)
            self.ui.loopStatusLabel.text = _("Imported '{name}' (checksums verified; untrusted until you use "
                                             "it and confirm).").format(name=result.name)
            self.refresh(force=True)

    def removeModel(self) -> None:
        """The user's Cancel in the question is a status line (``CancelledError``), not an error dialog (F8)."""
        folder = self._current()
        if folder is not None:
            remove_model(folder, slicer.util.confirmOkCancelDisplay)
            self.refresh(force=True)

    # ---- correct, add, fine-tune -----------------------------------------------------------------------------------
    def addCase(self) -> bool:
        """Run by the Add button's ``PanelAction``: the case is read in timer steps and added by a child process
        (``dataset_add.start_add_scene_case``); the section's Cancel stops it; True while it runs."""
        segmentation = self.ui.loopSegmentation.currentNode() or self.logic.lastSegmentation
        dataset = required_folder(self.ui.loopDatasetPath.currentPath, _("dataset folder"))
        options = SceneAddOptions(dataset, case_id=self.ui.loopCaseId.text,
                                  new_id_if_taken=self.ui.loopNewIdCheckBox.checked)
        self._adding = start_add_scene_case(self.ui.predictVolume.currentNode(), segmentation, options)
        self.ui.loopCancelButton.enabled = True
        self.ui.loopStatusLabel.text = _("Adding the case...")
        self._addTimer.start()
        return True

    def _stepAdd(self) -> None:
        """One short piece (reading the case from the scene, or handing it to the child) per tick."""
        job = self._adding.step()
        if not job.done:
            if job.message:
                self.ui.loopStatusLabel.text = job.message
            return
        if job.state == "cancelled":
            self.addAction.finish(_("Cancelled; the dataset is unchanged."))
        elif job.state == "failed":
            self.addAction.failed(job.message)
        else:
            self.addAction.finish(result_text(add_result(job)))

    def _addIdle(self) -> None:
        """Every way back to idle (success, error, Cancel, scene close): timer stopped, the child asked to stop
        (never waited for)."""
        self._addTimer.stop()
        job, self._adding = self._adding, None
        if job is not None:
            job.close()
        self.ui.loopCancelButton.enabled = self.action.busy

    def fineTune(self) -> bool:
        """Run by the Fine-tune button's ``PanelAction``: installs PyTorch and nnU-Net first when they are missing
        (the non-blocking installer, as Apply; audit F6); True while the installation or the training runs."""
        parent = self._current()
        if parent is None:
            raise InputError(_("choose the model to fine-tune in the model list"))
        if not self._confirmTrust(parent):
            return False
        return self._gate.run(lambda: self._startFineTune(parent))

    def _startFineTune(self, parent: Path) -> bool:
        dataset = required_folder(self.ui.loopDatasetPath.currentPath, _("dataset folder"))
        request = FineTuneRequest(dataset, parent, self._modelsDir(),
                                  self._modelsDir() / ".backsplit-work", epochs=int(self.ui.loopEpochsSpinBox.value))
        self._training = TrainingProcess(fine_tune_options(request)).start()
        self.ui.loopProgressBar.value = 0
        self._timer.start()
        return True

    def _idle(self) -> None:
        """Every way back to idle (``PanelAction.on_idle``): a training still running is ended without waiting."""
        self._timer.stop()
        if self._training is not None and self._training.is_running():
            self._training.cancel(wait=False)
        self._training = None
        self.ui.loopCancelButton.enabled = self._adding is not None   # the one Cancel also stops Add

    def _poll(self) -> None:
        for event in self._training.poll_events():
            if event.stage == Stage.LOG:
                continue
            if event.fraction is not None:
                self.ui.loopProgressBar.value = int(100 * event.fraction)
            self.ui.loopStatusLabel.text = event.message
        if not self._training.output_done:   # running, or its last lines not read yet
            return
        training = self._training
        training.poll_events()                 # the events that came with the end (the 'done' event: its models)
        models = list(training.result_models)
        if not models and training.cancelled:
            self.action.finish(_("Fine-tuning cancelled; no new model."))
            return
        if not models:   # its error event, else how it ended (killed by a signal, an exit code)
            self.action.failed(training.failure or _("the fine-tuning ended without a new model"))
            return
        self.action.finish()
        if models:
            self.ui.loopStatusLabel.text = _("New model: {path}").format(path=models[0])
            self.ui.loopProgressBar.value = 100
            self.refresh(force=True)

    def cancel(self) -> None:
        if self._adding is not None:
            self._adding.cancel()
            self.ui.loopStatusLabel.text = _("Cancelling...")
        if self._gate.busy:
            self._gate.cancel()
        elif self._training is not None:
            self._training.cancel(wait=False)
            self.ui.loopStatusLabel.text = _("Cancelling...")

    def cleanup(self) -> None:
        self.addAction.finish()
        self._timer.stop()
        self._installTimer.stop()
        self._gate.cancel()
        if self._training is not None and self._training.is_running():
            self._training.cancel(wait=True)
