"""BackSplitSegment: export segmented cases as a BackSplit nnU-Net dataset (plus its binary twin), and apply a
trained BackSplit model to a volume with lesion and auxiliary (support structure) overlays.

The widget only binds parameters and drives the logic from timers; everything else lives in the Slicer-free engine
(``backsplit``) and in ``BackSplitSegmentLib`` (scene adapters and panel helpers, tested with slicer-core). What this
module relies on in Slicer is listed, with the source paths, in docs/SLICER_COMPATIBILITY.md.
"""

import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Optional

import qt
import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from BackSplitSegmentLib.case_list import CaseList
from BackSplitSegmentLib.export_run import ExportRun
from BackSplitSegmentLib.prediction_run import apply_progress
from BackSplitSegmentLib.supports_section import SupportsSection
from BackSplitSegmentLib.loop_section import LoopSection

DOCUMENTATION_URL = "https://github.com/backsplit/SlicerBackSplit#readme"


class BackSplitSegment(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("BackSplit Segment")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = ["Segmentations"]
        self.parent.contributors = ["BackSplit contributors"]
        self.parent.helpText = _(
            "Export segmented cases as an nnU-Net v2 dataset whose background is split into support structures "
            "(BackSplit), plus the matching binary dataset, and apply a trained BackSplit model to a volume. "
            "Label values: 0 background, then the target (lesion) segments, then the support segments, in the "
            "order of the lists; a voxel in several segments takes the earliest class. Needs Slicer 5.10 or "
            "later.") + f' <a href="{DOCUMENTATION_URL}">' + _("Documentation") + "</a>"
        self.parent.acknowledgementText = _(
            "BackSplit: The Importance of Sub-dividing the Background in Biomedical Lesion Segmentation. "
            "Demo cases: KiTS23 label maps (MIT licence) with synthetic images.")
        slicer.app.connect("startupCompleted()", registerSampleData)


def releaseProblem() -> Optional[str]:
    """The message to show when this Slicer is too old for BackSplit (see compatibility.release_problem)."""
    from BackSplitSegmentLib.compatibility import release_problem

    return release_problem((slicer.app.majorVersion, slicer.app.minorVersion), sys.version_info)


def registerSampleData():
    """The demo cases (synthetic CT from the shipped KiTS23 label maps, with kidney, tumor and cyst) as sample data."""
    from BackSplitSegmentLib.demo_scene import register_sample_data

    register_sample_data(os.path.join(os.path.dirname(__file__), "Resources", "Icons", "BackSplitSegment.png"))


@parameterNodeWrapper
class BackSplitSegmentParameterNode:
    # export
    inputVolume: vtkMRMLScalarVolumeNode
    inputSegmentation: vtkMRMLSegmentationNode
    outputFolder: Path
    datasetId: Annotated[int, WithinRange(1, 999)] = 501
    datasetName: str = "BackSplit"
    channelNames: str = "CT"
    contextLabels: Annotated[str, Choice(["none", "rings", "kmeans"])] = "none"
    contextDetail: str = ""
    nameMapping: str = ""
    binaryTwin: bool = True
    allowNegative: bool = False
    missingAsAbsent: bool = False
    overwrite: bool = False
    # apply a model
    modelFolder: Path
    predictVolume: vtkMRMLScalarVolumeNode
    lesionOnly: bool = False
    showProbability: bool = True
    decisionThreshold: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    minLesionVolume: Annotated[float, WithinRange(0.0, 10000.0)] = 0.0


class BackSplitSegmentWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._binding = None
        self._caseList = None
        self._export = None
        self._prediction = None
        self._finish = None
        self._timer = qt.QTimer()
        self._timer.setInterval(10)
        self._predictionTimer = qt.QTimer()
        self._predictionTimer.setInterval(300)
        self._installTimer = qt.QTimer()
        self._installTimer.setInterval(250)

    @property
    def _parameterNode(self):
        return self._binding.parameters if self._binding is not None else None

    def setup(self) -> None:
        from BackSplitSegmentLib.install_run import DependencyGate
        from BackSplitSegmentLib.panel_support import GuiBinding, TickGuard

        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/BackSplitSegment.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = BackSplitSegmentLogic()
        problem = releaseProblem()
        if problem:  # too old a Slicer: say so instead of failing later in pip
            label = qt.QLabel(problem)
            label.wordWrap = True
            self.layout.insertWidget(0, label)
            uiWidget.enabled = False

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        report = lambda message, detail="": slicer.util.errorDisplay(message, detailedText=detail)
        self._timer.timeout.connect(TickGuard(self._timer, self._exportIdle, report, _("Export failed"))
                                    .wrap(self._stepExport))
        self._predictionTimer.timeout.connect(TickGuard(self._predictionTimer, self._applyIdle, report,
                                                        _("Prediction failed")).wrap(self._pollPrediction))
        self._gate = DependencyGate(self._installTimer, self._showApplyStatus,
                                    lambda text: slicer.util.confirmOkCancelDisplay(text, _("BackSplit: install")),
                                    lambda text: (self._applyIdle(), report(text)))
        self._installTimer.timeout.connect(TickGuard(self._installTimer, self._applyIdle, report,
                                                     _("Installation failed")).wrap(self._gate.tick))

        self._caseList = CaseList(self.ui, qt.QTableWidgetItem, _)
        self.ui.addCaseButton.clicked.connect(self.onAddCase)
        self.ui.addAllCasesButton.clicked.connect(self.onAddAllCases)
        self.ui.removeCaseButton.clicked.connect(lambda: self._caseList.remove_selected())
        self.ui.addTargetButton.clicked.connect(lambda: self._caseList.move_available(self.ui.targetList))
        self.ui.addSupportButton.clicked.connect(lambda: self._caseList.move_available(self.ui.supportList))
        self.ui.upButton.clicked.connect(lambda: self._caseList.move_selected(-1))
        self.ui.downButton.clicked.connect(lambda: self._caseList.move_selected(+1))
        self.ui.removeClassButton.clicked.connect(lambda: self._caseList.remove_classes())
        self.ui.exportButton.clicked.connect(self.onExport)
        self.ui.cancelExportButton.clicked.connect(self.onCancelExport)
        self.ui.loadDemoButton.clicked.connect(self.onLoadDemo)
        self.ui.applyButton.clicked.connect(self.onApply)
        self.ui.cancelApplyButton.clicked.connect(self.onCancelApply)
        self.ui.showAuxiliaryCheckBox.toggled.connect(self.onShowAuxiliary)
        self._binding = GuiBinding(self.ui)   # connected once per parameter node, whatever the release
        self._supportsSection = SupportsSection(self, qt.QTimer(), qt.QTableWidgetItem)
        self._loopSection = LoopSection(self.ui, self.logic, qt.QTimer(), qt.QFileDialog)   # loop; model manager
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()
        self._timer.stop()
        if self._export is not None:
            self._export.close()
        self._predictionTimer.stop()
        self._installTimer.stop()
        self._gate.cancel()
        if self._prediction is not None and self._prediction.is_running():
            self._prediction.cancel(wait=True)   # Slicer is closing: end the tree before leaving

    def enter(self) -> None:
        self.initializeParameterNode()       # idempotent: the GUI stays connected to the same parameter node

    def onSceneStartClose(self, caller, event) -> None:
        self._binding.unbind()
        self._caseList.clear()

    def onSceneEndClose(self, caller, event) -> None:
        self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self._binding.bind(self.logic.getParameterNode())
        parameters = self._parameterNode
        if not parameters.inputVolume:
            parameters.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        if not parameters.outputFolder or str(parameters.outputFolder) in ("", "."):
            parameters.outputFolder = Path.home() / "BackSplit" / "nnUNet_raw"

    # ---- case list (BackSplitSegmentLib.case_list) ---------------------------------------------------------------
    def onAddCase(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not add the case."), waitCursor=True):
            extra = [self.ui.extraChannelSelector.currentNode()] if self.ui.extraChannelSelector.currentNode() else []
            self._caseList.add(self._parameterNode.inputVolume, self._parameterNode.inputSegmentation, extra)

    def onAddAllCases(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not add the loaded cases."), waitCursor=True):
            summary = self._caseList.add_loaded(slicer.mrmlScene)
            self.ui.caseCountLabel.toolTip = summary
            self.ui.statusLabel.text = summary

    # ---- export ---------------------------------------------------------------------------------------------------
    def onExport(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Export failed."), waitCursor=True):
            names = self._caseList.names
            self._export = self.logic.exportRun([c.source() for c in self._caseList.cases],
                                                names(self.ui.targetList), names(self.ui.supportList),
                                                self._parameterNode)
            self.ui.exportProgressBar.value = 0
            self.ui.exportButton.enabled = False
            self.ui.cancelExportButton.enabled = True
            self.ui.statusLabel.text = _("Exporting...")
            self._timer.start()

    def _exportIdle(self) -> None:
        if self._export is not None:
            self._export.close()
        self._export = None
        self.ui.exportButton.enabled = True
        self.ui.cancelExportButton.enabled = False

    def _stepExport(self) -> None:
        """One short piece of reading from the scene, or a look at the export thread, per tick (ExportRun)."""
        step = self._export.step()
        self.ui.exportProgressBar.value = step.percent
        self.ui.statusLabel.text = step.message
        if not step.done:
            return
        self._timer.stop()
        self._exportIdle()
        if step.state == "cancelled":
            self.ui.statusLabel.text = _("Export cancelled; nothing was written.")
        elif step.state == "failed":
            slicer.util.errorDisplay(_("Export failed: {error}").format(error=step.message),
                                     detailedText="" if step.expected else self.logic.tracebackText(step.error))

    def onCancelExport(self) -> None:
        if self._export is not None:
            self._export.cancel()
            self.ui.statusLabel.text = _("Cancelling...")

    def onLoadDemo(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not load the demo cases."), waitCursor=True):
            self.logic.loadDemoCases(int(self.ui.demoCountSpinBox.value))
        self.onAddAllCases()

    # ---- apply a model --------------------------------------------------------------------------------------------
    def onApply(self) -> None:
        """Installs PyTorch and nnU-Net first when they are missing (after asking, with moving progress)."""
        self.ui.applyButton.enabled = False
        self.ui.cancelApplyButton.enabled = True
        if not self._gate.run(self._startPrediction):
            self._applyIdle()

    def _startPrediction(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not start the prediction."), waitCursor=True):
            extra = [self.ui.predictExtraChannelSelector.currentNode()] \
                if self.ui.predictExtraChannelSelector.currentNode() else []
            self._prediction = self.logic.startPrediction(self._parameterNode, extra)
            self._showApplyStatus(_("Predicting..."), False)
            self.ui.applyProgressBar.value = 0
            self._predictionTimer.start()
        if self._prediction is None:
            self._applyIdle()

    def _showApplyStatus(self, text: str, busy: bool) -> None:
        self.ui.applyProgressBar.setRange(0, 0 if busy else 100)   # 0..0: Qt's moving busy bar
        self.ui.summaryLabel.text = text

    def _applyIdle(self) -> None:
        self._predictionTimer.stop()
        if self._prediction is not None and self._prediction.is_running():   # after a failed tick: end the child
            self._prediction.cancel(wait=False)
        self._prediction, self._finish = None, None
        self.ui.applyProgressBar.setRange(0, 100)
        self.ui.applyButton.enabled = True
        self.ui.cancelApplyButton.enabled = False

    def _pollPrediction(self) -> None:
        """Follow the child; when it ended, import the result in short steps (one class per tick)."""
        if self._finish is None:
            for event in self._prediction.poll_events():
                shown = apply_progress(event)           # (percent or None, text with the time left); None: log line
                if shown is None:
                    continue
                if shown[0] is not None:
                    self.ui.applyProgressBar.value = shown[0]
                self.ui.summaryLabel.text = shown[1]
            if self._prediction.is_running():
                return
            self._finish = self.logic.finishPrediction(self._prediction, self._parameterNode,
                                                       self.ui.showAuxiliaryCheckBox.checked)
        if not self._finish.step():   # short steps: reading in the background, then one class per tick
            self._predictionTimer.setInterval(50 if self._finish.reading else 0)
            self.ui.summaryLabel.text = _("Loading the result into the scene...")
            return
        outcome, cancelled = self._finish.outcome, self._prediction.cancelled
        self._predictionTimer.setInterval(300)
        self._applyIdle()
        if outcome is not None:
            self.logic.lastSegmentation = outcome.segmentation_node
            self.ui.applyProgressBar.value = 100
            self.ui.summaryLabel.text = outcome.summary_text
        elif cancelled:
            self.ui.summaryLabel.text = _("Prediction cancelled.")

    def onCancelApply(self) -> None:
        if self._gate.busy:
            self._gate.cancel()
        elif self._prediction is not None:
            self._prediction.cancel(wait=False)   # returns at once; the timer notices the end
            self.ui.summaryLabel.text = _("Cancelling...")

    def onShowAuxiliary(self, show: bool) -> None:
        self.logic.setAuxiliaryVisible(show)


class BackSplitSegmentLogic(ScriptedLoadableModuleLogic):
    """Thin: builds engine requests from the parameters, steps the export, runs prediction in a child process."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.lastSegmentation = None

    def getParameterNode(self):
        return BackSplitSegmentParameterNode(super().getParameterNode())

    def exportRequest(self, parameters, targets, supports):
        from BackSplitSegmentLib.export_run import export_request

        return export_request(parameters, targets, supports)

    def exportRun(self, sources, targets, supports, parameters) -> ExportRun:
        """An export stepped one case at a time (``step()`` from a timer); checks the request before any case."""
        return ExportRun(list(sources), self.exportRequest(parameters, targets, supports))

    def exportSteps(self, sources, request, cancel):
        from backsplit.datasets.export import iter_export

        return iter_export(sources, request, cancel)

    @staticmethod
    def tracebackText(error) -> str:
        import traceback

        return "".join(traceback.format_exception(type(error), error, error.__traceback__)) if error else ""

    def loadDemoCases(self, count: int = 3):
        """Demo cases (synthetic CT from KiTS23 label maps, shipped with the extension) into the scene."""
        from BackSplitSegmentLib.demo_scene import load_demo_cases

        return load_demo_cases(count)

    def loadDemoCase(self, index: int = 0):
        from BackSplitSegmentLib.demo_scene import load_demo_cases

        return load_demo_cases(1, first=index)[0][0]

    # ---- prediction ----------------------------------------------------------------------------------------------
    def ensureDependencies(self) -> bool:
        """Scripts: install nnU-Net and PyTorch after asking (blocking); the panel uses its DependencyGate."""
        from BackSplitSegmentLib.dependencies import ensure_nnunet

        return ensure_nnunet()

    def startPrediction(self, parameters, extra_channels):
        from BackSplitSegmentLib.prediction_run import start_prediction

        return start_prediction(Path(parameters.modelFolder), parameters.predictVolume, extra_channels,
                                lesion_only=bool(parameters.lesionOnly),
                                probabilities=bool(parameters.showProbability),
                                threshold=float(parameters.decisionThreshold),
                                min_volume_ml=float(parameters.minLesionVolume))

    def finishPrediction(self, job, parameters, show_auxiliary: bool = True):
        """The import of a finished job, to ``step()`` until done (see ``PredictionFinish``)."""
        from BackSplitSegmentLib.prediction_run import PredictionFinish

        return PredictionFinish(job, parameters.predictVolume, show_auxiliary)

    def setAuxiliaryVisible(self, visible: bool) -> None:
        from BackSplitSegmentLib.prediction_import import set_auxiliary_visible

        if self.lastSegmentation is not None and self.lastSegmentation.GetScene() is not None:
            set_auxiliary_visible(self.lastSegmentation, visible)


class BackSplitSegmentTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_export_demo_cases()

    def test_export_demo_cases(self):
        from BackSplitSegmentLib.scene_cases import cases_in_scene

        logic = BackSplitSegmentLogic()
        loaded = logic.loadDemoCases(2)
        self.assertEqual(len(loaded), 2)
        cases = cases_in_scene(slicer.mrmlScene)
        parameters = logic.getParameterNode()
        out = Path(tempfile.mkdtemp())
        parameters.outputFolder = out
        request = logic.exportRequest(parameters, ["cyst"], ["tumor", "kidney"])
        before = slicer.mrmlScene.GetNumberOfNodes()
        events = list(logic.exportSteps([c.source() for c in cases], request, cancel=lambda: False))
        self.assertEqual(events[-1].stage, "done")
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), before)   # nothing left behind by the export
        self.assertTrue((out / "Dataset501_BackSplit" / "dataset.json").is_file())
        parameters.outputFolder = Path(tempfile.mkdtemp())   # the panel's stepwise export (worker thread)
        step = logic.exportRun([c.source() for c in cases], ["cyst"], ["tumor", "kidney"], parameters).run_to_end()
        self.assertEqual(step.state, "finished", step.message)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), before)
        self.delayDisplay("Export test passed")
