"""BackSplitTrain: train nnU-Net v2 on an exported BackSplit dataset (and its binary twin, side by side) from inside
Slicer, in a child process: progress bar with time left, live loss / pseudo-Dice plot, log, Cancel (ends the whole
process tree), Resume, fine-tuning. The engine (``backsplit.training``) does the work; this panel binds parameters
and polls the child from a timer."""

import os
import sys
from pathlib import Path
from typing import Annotated

import qt
import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

# Dev mode (the module folders added to "Additional module paths"): the checkout's root holds BackSplitShared/ and
# backsplit/. Installed, <this file>/../.. is lib/Slicer-X.Y, which has no BackSplitShared: nothing is added.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(ROOT, "BackSplitShared")) and ROOT not in sys.path:
    sys.path.append(ROOT)

from backsplit.training.status import TrainingStatus  # noqa: E402
from BackSplitShared.handoff import HandoffButton  # noqa: E402
from BackSplitShared.install_run import DependencyGate  # noqa: E402
from BackSplitShared.panel_action import PanelAction, once  # noqa: E402
from BackSplitShared.panel_support import GuiBinding, report_error  # noqa: E402
from BackSplitShared.release import release_problem  # noqa: E402
from BackSplitTrainLib import training_run  # noqa: E402
from BackSplitTrainLib.logic import TrainLogic  # noqa: E402
from BackSplitTrainLib.model_list import fine_tune_choices  # noqa: E402
from BackSplitTrainLib.panel_state import PanelState  # noqa: E402
from BackSplitTrainLib.paths import resolve_folder  # noqa: E402
from BackSplitTrainLib.self_test import run_panel_test  # noqa: E402
from BackSplitTrainLib.support_choice import BudgetLabel  # noqa: E402

DOCUMENTATION_URL = "https://github.com/backsplit/SlicerBackSplit#readme"


class BackSplitTrain(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("BackSplit Train")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = []   # its shared helpers are the package BackSplitShared, not another module
        self.parent.contributors = ["BackSplit contributors"]
        self.parent.helpText = _(
            "Train nnU-Net v2 locally (GPU or CPU) on a dataset exported by BackSplit Segment, optionally with its "
            "binary baseline (identical settings). Slicer stays usable while training runs in a background "
            "process. Cancel ends the training; Resume continues from the last checkpoint. Needs Slicer 5.10 or "
            "later.") + f' <a href="{DOCUMENTATION_URL}">' + _("Documentation") + "</a>"
        self.parent.acknowledgementText = _("nnU-Net v2 (Isensee et al.). BackSplit training paradigm.")


@parameterNodeWrapper
class BackSplitTrainParameterNode:
    datasetFolder: Path
    workFolder: Path
    withBinary: bool = True
    configuration: Annotated[str, Choice(["2d", "3d_fullres"])] = "2d"
    fold: Annotated[str, Choice(["auto", "all", "0", "1", "2", "3", "4", "5fold"])] = "auto"
    epochs: Annotated[int, WithinRange(1, 5000)] = 100
    iterationsPerEpoch: Annotated[int, WithinRange(1, 10000)] = 250
    batchSize: Annotated[int, WithinRange(0, 1024)] = 0
    device: Annotated[str, Choice(["auto", "cuda", "mps", "cpu"])] = "auto"
    targetSampling: bool = True
    learnedContext: Annotated[str, Choice(["none", "learned:2", "learned:4"])] = "none"   # CoLab task generator
    supportRecipe: Annotated[str, Choice(["default", "paper", "ramp:200,lvr=0.5", "lvr:1", "head"])] = "default"
    executor: Annotated[str, Choice(["local", "slurm"])] = "local"   # slurm: one sbatch job, followed with squeue
    slurmPartition: str = ""
    slurmConfig: Path
    pretrainedModel: Path
    learningRate: Annotated[float, WithinRange(0.0, 1.0)] = 0.0   # 0: default (1e-2, or 1e-3 when fine-tuning)
    resume: bool = False
    overwrite: bool = False


class BackSplitTrainWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._binding = None
        self._job = None
        self._status = None
        self._plot = None
        self._timer = qt.QTimer()
        self._timer.setInterval(500)
        self._probe = None
        self._probeTimer = qt.QTimer()
        self._probeTimer.setInterval(300)
        self._installTimer = qt.QTimer()
        self._installTimer.setInterval(250)
        self._contextJob = None
        self._contextTimer = qt.QTimer()
        self._contextTimer.setInterval(500)

    @property
    def _parameterNode(self):
        return self._binding.parameters if self._binding is not None else None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/BackSplitTrain.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = BackSplitTrainLogic()
        self._problem = release_problem((slicer.app.majorVersion, slicer.app.minorVersion), sys.version_info)
        if self._problem:  # too old a Slicer: say so instead of failing later in pip
            label = qt.QLabel(self._problem)
            label.wordWrap = True
            self.layout.insertWidget(0, label)
            uiWidget.enabled = False
        # every button through BackSplitShared.panel_action: idle again on every way out, one report per failure
        status = lambda text: setattr(self.ui.statusLabel, "text", text) if text else None  # noqa: E731
        self._startAction = PanelAction(_("Could not train"), self.ui.startButton, self.ui.cancelButton,
                                        status=status, on_idle=self._idle, wait_cursor=True)
        self._probeAction = PanelAction(_("Device check failed"), self.ui.probeDevicesButton, on_idle=self._probeIdle,
                                        status=lambda text: setattr(self.ui.deviceInfoLabel, "text", text))
        self._contextAction = PanelAction(_("Could not show the learned context"), self.ui.showContextButton,
                                          status=status, on_idle=self._contextIdle, wait_cursor=True)
        self._timer.timeout.connect(self._startAction.wrap_tick(self._timer, self._poll))
        self._probeTimer.timeout.connect(self._probeAction.wrap_tick(self._probeTimer, self._pollProbe))
        self._gate = DependencyGate(self._installTimer, self._showStatus,
                                    lambda text: slicer.util.confirmOkCancelDisplay(text, _("BackSplit: install")),
                                    lambda text: (self._startAction.finish(), report_error(text)),
                                    ended=self._startAction.finish)
        self._installTimer.timeout.connect(self._startAction.wrap_tick(self._installTimer, self._gate.tick))
        self._contextTimer.timeout.connect(self._contextAction.wrap_tick(self._contextTimer, self._pollContext))
        self.ui.startButton.clicked.connect(self._startAction.slot(self.onStart))
        self.ui.showContextButton.clicked.connect(self._contextAction.slot(self.onShowContext))
        self.ui.cancelButton.clicked.connect(once(_("Could not cancel"), self.onCancel, status=status))
        self._useInSegment = HandoffButton(   # after a training: its model chosen in BackSplit Segment's Apply
            self.ui.useInSegmentButton, "models", "BackSplitSegment", slicer.util.selectModule,
            _("Open BackSplit Segment with this model chosen for Apply: {folder}"),
            lambda fn: once(_("Could not open BackSplit Segment"), fn, status=status))
        self.ui.probeDevicesButton.clicked.connect(self._probeAction.slot(self.onProbeDevices))
        self._modelFolders = []
        self.ui.modelListRefreshButton.clicked.connect(once(_("Could not list the models"), self.onRefreshModels,
                                                            status=status))
        self.ui.modelListCombo.activated.connect(self.onModelChosen)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self._binding = GuiBinding(self.ui)   # connected once per parameter node
        # SLURM fields only for "Run on: slurm"; Start enabled only with valid inputs (tooltip: what is missing)
        self._panelState = PanelState(self.ui, lambda: self._parameterNode, lambda: self._startAction.busy)
        self.initializeParameterNode()
        self._budgetLabel = BudgetLabel(self.ui)   # the expected break-even budget under the support choice

    def initializeParameterNode(self) -> None:
        """Bind (idempotent) and make the work folder absolute again (a scene close resets it to ".")."""
        self._binding.bind(self.logic.getParameterNode())
        self.logic.applyDefaults(self._parameterNode)
        self._panelState.watch(self._parameterNode)   # updated on every change of the parameter node

    def onSceneStartClose(self, caller, event) -> None:
        self._binding.unbind()

    def onSceneEndClose(self, caller, event) -> None:
        self.initializeParameterNode()
        if self._job is not None and self._job.is_running():   # the close removed the plot: show it again
            self._plot = self.logic.ensurePlot(self._plot, self._job, self._status)

    def enter(self) -> None:
        self.initializeParameterNode()
        training_run.take_dataset_handoff(self._parameterNode)   # BackSplit Segment's "Train on this dataset"
        self._followLeftClusterJob()
        if self._probe is None and not self._problem:  # first visit: which GPU "auto" will use (child process)
            self._probeAction.click(self.onProbeDevices)

    def cleanup(self) -> None:
        self.removeObservers()
        self._panelState.unwatch()
        self._timer.stop()
        self._probeTimer.stop()
        self._installTimer.stop()
        self._contextTimer.stop()
        if self._contextJob is not None and self._contextJob.is_running():
            self._contextJob.cancel(grace_seconds=1.0, wait=False)
        self._gate.cancel()
        if self._probe is not None and self._probe.job is not None and self._probe.job.is_running():
            self._probe.job.cancel(grace_seconds=1.0, wait=False)
        training_run.stop_following(self._job, wait=True)   # closing: a local tree ends, a cluster job runs on

    def onRefreshModels(self) -> None:
        """List the models folder's models that take the chosen dataset's channels (newest first)."""
        choices = fine_tune_choices(None, resolve_folder(self._parameterNode.datasetFolder))
        self.ui.modelListCombo.clear()
        self._modelFolders = [folder for _label, folder in choices]
        for label, _folder in choices:
            self.ui.modelListCombo.addItem(label)

    def onModelChosen(self, index: int) -> None:
        if 0 <= index < len(self._modelFolders):
            self._parameterNode.pretrainedModel = self._modelFolders[index]

    def onProbeDevices(self) -> bool:
        """Run by the Check-devices button's ``PanelAction``: the probe child, followed by its timer."""
        self._probe = self.logic.startDeviceProbe()
        self.ui.deviceInfoLabel.text = _("Checking the devices...")
        self._probeTimer.start()
        return True

    def _probeIdle(self) -> None:
        self._probeTimer.stop()

    def _pollProbe(self) -> None:
        text = self._probe.poll()
        if text is not None:
            self._probeAction.finish(text)

    def onStart(self) -> bool:
        """Run by the Start button's ``PanelAction``: installs PyTorch and nnU-Net first when they are missing (after
        asking, with moving progress); True while the installation or the training runs."""
        return self._gate.run(self._startTraining)

    def _startTraining(self) -> bool:
        """Start the training and its timer (True), or raise: the action reports once and is idle again (F1)."""
        self._job, self._status = self.logic.startTraining(self._parameterNode)
        self._plot = self.logic.createPlot()
        self.ui.logTextEdit.clear()
        self._showStatus(_("Starting..."), False)
        self.ui.progressBar.value = 0
        self._useInSegment.offer(None)
        self._timer.start()
        return True

    def _followLeftClusterJob(self) -> None:
        """A cluster training left running (display error, Slicer closed) is followed again, never cancelled."""
        busy = self._timer.isActive() or self._gate.busy
        job = None if busy else training_run.follow_left_cluster_job(self._parameterNode.workFolder)
        if job is None:
            return
        self._job, self._status, self._plot = job, TrainingStatus(models_total=job.options.runs_total), None
        self.ui.logTextEdit.clear()
        self._showStatus(_("Following cluster job {job} again...").format(job=job.job_id), False)
        self._startAction.click(lambda: self._timer.start() or True)   # Start disabled, Cancel enabled, as a start

    def _showStatus(self, text: str, busy: bool) -> None:
        self.ui.progressBar.setRange(0, 0 if busy else 100)   # 0..0: Qt's moving busy bar
        self.ui.statusLabel.text = text

    def _idle(self) -> None:
        self._timer.stop()
        training_run.stop_following(self._job)   # after a failed tick: a local child ends, a cluster job runs on
        self.ui.progressBar.setRange(0, 100)
        self.ui.startButton.enabled = True
        self.ui.cancelButton.enabled = False
        self._panelState.update()   # Start only with valid inputs

    def _poll(self) -> None:
        self._plot = self.logic.ensurePlot(self._plot, self._job, self._status)
        for line in self.logic.pollTraining(self._job, self._status, self._plot):
            self.ui.logTextEdit.appendPlainText(line)
        self.ui.progressBar.value = int(100 * self._status.fraction)
        if not self._job.cancelled or getattr(self._job, "cancel_error", ""):
            self.ui.statusLabel.text = training_run.follow_text(self._job, self._status)   # with SLURM's notes
        if self._job.is_running():
            return
        for line in self.logic.pollTraining(self._job, self._status, self._plot):  # the last lines
            self.ui.logTextEdit.appendPlainText(line)
        message, isError = self.logic.finalMessage(self._job, self._status)
        if isError:
            self._startAction.failed(message)
            self.ui.statusLabel.text = message
            return
        self._startAction.finish(message)
        if not self._job.cancelled:
            self.ui.progressBar.value = 100
            self._useInSegment.offer(next(iter(self._job.result_models), None))

    def onShowContext(self) -> bool:
        """The learned-context generator's labels of the first training cases, as segmentations (child process)."""
        self._contextJob = self.logic.startContextShow(self._parameterNode)
        self.ui.statusLabel.text = _("Running the task generator...")
        self._contextTimer.start()
        return True

    def _contextIdle(self) -> None:
        self._contextTimer.stop()
        if self._contextJob is not None and self._contextJob.is_running():
            self._contextJob.cancel(grace_seconds=1.0, wait=False)

    def _pollContext(self) -> None:
        """One report per failure (F8: the inner dialog and the guard's both showed it)."""
        for event in self._contextJob.poll_events():
            if event.stage != "log" and event.message:
                self.ui.statusLabel.text = event.message
        if self._contextJob.is_running():
            return
        self._contextTimer.stop()
        loaded = self.logic.finishContextShow(self._contextJob)   # an error: the action reports it once
        self._contextAction.finish(_("Learned context of {count} case(s) loaded as segmentations.").format(
            count=len(loaded)))

    def onCancel(self) -> None:
        if self._gate.busy:
            self._gate.cancel()
        elif self._job is not None:
            self.ui.statusLabel.text = _("Cancelling...")
            self._job.cancel(wait=False)   # returns at once; the timer notices the end


class BackSplitTrainLogic(TrainLogic):
    """The panel's logic (``BackSplitTrainLib/logic.py``) with this module's parameter node."""

    def getParameterNode(self):
        return BackSplitTrainParameterNode(super().getParameterNode())


class BackSplitTrainTest(ScriptedLoadableModuleTest):
    def runTest(self):
        self.test_logic()
        self.test_panel()

    def test_panel(self):   # the panel through its widgets; tiny CPU training and Apply where nnU-Net is installed
        run_panel_test(self)

    def test_logic(self):
        slicer.mrmlScene.Clear()
        logic = BackSplitTrainLogic()
        parameters = logic.getParameterNode()
        parameters.datasetFolder = Path("/nonexistent/Dataset001_X")
        options = logic.trainOptions(parameters)
        self.assertEqual(options.configuration, "2d")
        self.assertEqual(options.sampling, "target")
        self.delayDisplay("BackSplitTrain logic test passed")
