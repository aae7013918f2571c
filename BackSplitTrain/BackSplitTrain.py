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
    fold: Annotated[str, Choice(["auto", "all", "0", "1", "2", "3", "4"])] = "auto"
    epochs: Annotated[int, WithinRange(1, 5000)] = 100
    iterationsPerEpoch: Annotated[int, WithinRange(1, 10000)] = 250
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

    def cleanup(self) -> None:
        self._timer.stop()
        if self._job is not None and self._job.is_running():
            self._job.cancel()

    def setParameterNode(self, parameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)

    def onProbeDevices(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not query the devices."), waitCursor=True):
            self.ui.deviceInfoLabel.text = self.logic.describeDevices()

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
        self.ui.startButton.enabled = True
        self.ui.cancelButton.enabled = False
        if self._status.error:
            self.ui.statusLabel.text = self._status.error
            slicer.util.errorDisplay(_("Training failed: {error}").format(error=self._status.error))
        elif self._job.cancelled:
            self.ui.statusLabel.text = _("Training cancelled. Tick Resume and press Start to continue it.")
        else:
            self.ui.progressBar.value = 100
            self.ui.statusLabel.text = _("Finished. Models:\n{models}").format(models="\n".join(self._status.models))

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
        from backsplit.process import python_executable
        from BackSplitTrainLib.devices import describe_devices, probe_devices

        return describe_devices(probe_devices(python_executable()))

    def trainOptions(self, p):
        from backsplit.training.options import TrainOptions

        return TrainOptions(
            dataset_dir=Path(p.datasetFolder), work_dir=Path(p.workFolder), configuration=p.configuration,
            fold=p.fold, epochs=int(p.epochs), iterations_per_epoch=int(p.iterationsPerEpoch), device=p.device,
            sampling="target" if p.targetSampling else "stock",
            pretrained_model=Path(p.pretrainedModel) if p.pretrainedModel and str(p.pretrainedModel) not in ("", ".")
            else None,
            initial_lr=float(p.learningRate) or None, resume=bool(p.resume), with_binary=bool(p.withBinary),
            extra={"overwrite": True} if p.overwrite else {})

    def startTraining(self, parameters):
        from backsplit.training.process import TrainingProcess
        from backsplit.training.status import TrainingStatus

        options = self.trainOptions(parameters)
        job = TrainingProcess(options).start()
        return job, TrainingStatus(models_total=2 if options.with_binary else 1)

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
        lines = []
        changed = False
        for event in job.poll_events():
            if event.stage == "log":
                lines.append(event.message)
                continue
            status.update(event)
            lines.append(f"[{event.stage}] {event.message}")
            changed = changed or event.stage == "epoch"
        if changed and plot is not None:
            plot.update(status, target_count=self.targetCount(job))
        return lines

    @staticmethod
    def targetCount(job):
        import json

        try:
            meta = json.loads((Path(job.options.dataset_dir) / "dataset.json").read_text())
            return len(meta["backsplit"]["schema"]["targets"])
        except (OSError, KeyError, ValueError):
            return None


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
