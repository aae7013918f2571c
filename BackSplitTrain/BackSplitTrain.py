"""BackSplitTrain: train nnU-Net v2 on an exported BackSplit dataset (and its binary twin, side by side) from inside
Slicer, in a child process: progress bar with time left, live loss / pseudo-Dice plot, log, Cancel (ends the whole
process tree), Resume, fine-tuning. The engine (``backsplit.training``) does the work; this panel binds parameters
and polls the child from a timer."""

from pathlib import Path
from typing import Annotated

import qt
import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin


class BackSplitTrain(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("BackSplit Train")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = ["BackSplitSegment"]  # shares its dependency installer
        self.parent.contributors = ["BackSplit for 3D Slicer authors"]
        self.parent.helpText = _(
            "Train nnU-Net v2 locally (GPU or CPU) on a dataset exported by BackSplit Segment, optionally with its "
            "binary twin using identical settings. Slicer stays usable while training runs in a background "
            "process. Cancel ends the training; Resume continues from the last checkpoint.")
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
    pretrainedModel: Path
    learningRate: Annotated[float, WithinRange(0.0, 1.0)] = 0.0   # 0: default (1e-2, or 1e-3 when fine-tuning)
    resume: bool = False
    overwrite: bool = False


class BackSplitTrainWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None
        self._status = None
        self._plot = None
        self._timer = qt.QTimer()
        self._timer.setInterval(500)
        self._timer.timeout.connect(self._poll)
        self._probe = None
        self._probeTimer = qt.QTimer()
        self._probeTimer.setInterval(300)
        self._probeTimer.timeout.connect(self._pollProbe)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/BackSplitTrain.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = BackSplitTrainLogic()
        self.ui.startButton.clicked.connect(self.onStart)
        self.ui.cancelButton.clicked.connect(self.onCancel)
        self.ui.probeDevicesButton.clicked.connect(self.onProbeDevices)
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.workFolder or str(self._parameterNode.workFolder) in ("", "."):
            self._parameterNode.workFolder = Path.home() / "BackSplit" / "work"

    def enter(self) -> None:
        if self._probe is None:  # first visit: say which GPU "auto" will use (asked in a child process)
            self.onProbeDevices()

    def cleanup(self) -> None:
        self._timer.stop()
        self._probeTimer.stop()
        if self._probe is not None and self._probe.job is not None and self._probe.job.is_running():
            self._probe.job.cancel(grace_seconds=1.0)
        if self._job is not None and self._job.is_running():
            self._job.cancel()

    def setParameterNode(self, parameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)

    def onProbeDevices(self) -> None:
        if self._probeTimer.isActive():
            return
        with slicer.util.tryWithErrorDisplay(_("Could not query the devices.")):
            self._probe = self.logic.startDeviceProbe()
            self.ui.deviceInfoLabel.text = _("Checking the devices...")
            self.ui.probeDevicesButton.enabled = False
            self._probeTimer.start()

    def _pollProbe(self) -> None:
        text = self._probe.poll()
        if text is None:
            return
        self._probeTimer.stop()
        self.ui.probeDevicesButton.enabled = True
        self.ui.deviceInfoLabel.text = text

    def onStart(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not start the training."), waitCursor=True):
            if not self.logic.ensureDependencies():
                return
            self._job, self._status = self.logic.startTraining(self._parameterNode)
            self._plot = self.logic.createPlot()
            self.ui.logTextEdit.clear()
            self.ui.progressBar.value = 0
            self.ui.startButton.enabled = False
            self.ui.cancelButton.enabled = True
            self.ui.statusLabel.text = _("Starting...")
            self._timer.start()

    def _poll(self) -> None:
        for line in self.logic.pollTraining(self._job, self._status, self._plot):
            self.ui.logTextEdit.appendPlainText(line)
        self.ui.progressBar.value = int(100 * self._status.fraction)
        self.ui.statusLabel.text = self._status.summary()
        if self._job.is_running():
            return
        self._timer.stop()
        for line in self.logic.pollTraining(self._job, self._status, self._plot):  # the last lines
            self.ui.logTextEdit.appendPlainText(line)
        self.ui.startButton.enabled = True
        self.ui.cancelButton.enabled = False
        message, isError = self.logic.finalMessage(self._job, self._status)
        self.ui.statusLabel.text = message
        if isError:
            slicer.util.errorDisplay(_("Training failed: {error}").format(error=message))
        elif not self._job.cancelled:
            self.ui.progressBar.value = 100

    def onCancel(self) -> None:
        if self._job is not None:
            self.ui.statusLabel.text = _("Cancelling...")
            slicer.app.processEvents()
            self._job.cancel()


class BackSplitTrainLogic(ScriptedLoadableModuleLogic):
    def getParameterNode(self):
        return BackSplitTrainParameterNode(super().getParameterNode())

    def ensureDependencies(self) -> bool:
        from BackSplitSegmentLib.dependencies import ensure_nnunet

        return ensure_nnunet()

    def describeDevices(self) -> str:
        """Blocking variant (scripts, self-test): GPU name and free memory, or why training runs on the CPU."""
        from backsplit.process import python_executable
        from BackSplitTrainLib.devices import describe_devices, probe_devices

        return describe_devices(probe_devices(python_executable()))

    def startDeviceProbe(self):
        """The same question without waiting: poll the returned probe until it answers."""
        from BackSplitTrainLib.devices import DeviceProbe

        return DeviceProbe().start()

    def trainOptions(self, p):
        from backsplit.training.options import TrainOptions

        return TrainOptions(
            dataset_dir=Path(p.datasetFolder), work_dir=Path(p.workFolder), configuration=p.configuration,
            fold=p.fold, epochs=int(p.epochs), iterations_per_epoch=int(p.iterationsPerEpoch), device=p.device,
            sampling="target" if p.targetSampling else "stock",
            pretrained_model=Path(p.pretrainedModel) if p.pretrainedModel and str(p.pretrainedModel) not in ("", ".")
            else None,
            initial_lr=float(p.learningRate) or None, resume=bool(p.resume), with_binary=bool(p.withBinary),
            batch_size=int(p.batchSize) or None, extra={"overwrite": True} if p.overwrite else {})

    def startTraining(self, parameters):
        from backsplit.training.process import TrainingProcess
        from backsplit.training.status import TrainingStatus

        options = self.trainOptions(parameters)
        job = TrainingProcess(options).start()
        return job, TrainingStatus(models_total=options.runs_total)

    def createPlot(self):
        from BackSplitTrainLib.plots import TrainingPlot

        plot = TrainingPlot()
        layoutManager = slicer.app.layoutManager()
        if layoutManager is not None:
            layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotView)
            plotWidget = layoutManager.plotWidget(0)
            plotWidget.mrmlPlotViewNode().SetPlotChartNodeID(plot.chart.GetID())
        return plot

    def pollTraining(self, job, status, plot) -> list:
        """Apply new events to the status and the plot; return new log lines for the log box."""
        from BackSplitTrainLib.training_run import apply_events, dataset_target_count

        return apply_events(job.poll_events(), status, plot, dataset_target_count(job.options.dataset_dir))

    @staticmethod
    def finalMessage(job, status):
        from BackSplitTrainLib.training_run import final_message

        return final_message(status, bool(job.cancelled), job.returncode)


class BackSplitTrainTest(ScriptedLoadableModuleTest):
    def runTest(self):
        slicer.mrmlScene.Clear()
        logic = BackSplitTrainLogic()
        parameters = logic.getParameterNode()
        parameters.datasetFolder = Path("/nonexistent/Dataset001_X")
        options = logic.trainOptions(parameters)
        self.assertEqual(options.configuration, "2d")
        self.assertEqual(options.sampling, "target")
        self.delayDisplay("BackSplitTrain logic test passed")
