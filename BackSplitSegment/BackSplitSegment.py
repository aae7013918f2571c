"""BackSplitSegment: export segmented cases as a BackSplit nnU-Net dataset (plus its binary twin), and apply a
trained BackSplit model to a volume with lesion and auxiliary (support structure) overlays.

The widget only binds parameters and drives the logic from timers; everything else lives in the Slicer-free engine
(``backsplit``) and in ``BackSplitSegmentLib`` (scene adapters and panel helpers, tested with slicer-core). What this
module relies on in Slicer is listed, with the source paths, in docs/SLICER_COMPATIBILITY.md.
"""

import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Annotated, Optional

import qt
import slicer
from slicer import vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

# Dev mode (the module folders added to "Additional module paths"): the checkout's root holds BackSplitShared/ and
# backsplit/. Installed, <this file>/../.. is lib/Slicer-X.Y, which has no BackSplitShared: nothing is added.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if os.path.isdir(os.path.join(ROOT, "BackSplitShared")) and ROOT not in sys.path:
    sys.path.append(ROOT)

from backsplit.datasets.export import iter_export  # noqa: E402 (after the dev-mode path above)
from BackSplitSegmentLib.apply_section import ApplySection  # noqa: E402
from BackSplitSegmentLib.case_list import CaseList  # noqa: E402
from BackSplitSegmentLib.demo_scene import load_demo_cases, register_sample_data  # noqa: E402
from BackSplitSegmentLib.export_run import ExportRun, export_request  # noqa: E402
from BackSplitSegmentLib.loop_section import LoopSection  # noqa: E402
from BackSplitSegmentLib.prediction_import import set_auxiliary_visible  # noqa: E402
from BackSplitSegmentLib.prediction_run import finish_prediction, start_prediction  # noqa: E402
from BackSplitSegmentLib.readiness import (  # noqa: E402
    ReadyButtons,
    apply_missing,
    export_missing,
    generate_missing,
    suggest_missing,
)
from BackSplitSegmentLib.scene_cases import cases_in_scene  # noqa: E402
from BackSplitSegmentLib.self_test import run_panel_test  # noqa: E402
from BackSplitSegmentLib.supports_section import SupportsSection  # noqa: E402
from BackSplitShared.dependencies import ensure_nnunet  # noqa: E402
from BackSplitShared.handoff import HandoffButton, take_handoff  # noqa: E402
from BackSplitShared.panel_action import PanelAction, once  # noqa: E402
from BackSplitShared.panel_support import GuiBinding  # noqa: E402
from BackSplitShared.paths import default_export_folder, required_folder, resolve_folder  # noqa: E402
from BackSplitShared.release import release_problem  # noqa: E402

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
            "(BackSplit), plus its binary baseline dataset, and apply a trained BackSplit model to a volume. "
            "Label values: 0 background, then the target (lesion) segments, then the support structures, in the "
            "order of the lists; a voxel in several segments takes the earliest class. Needs Slicer 5.10 or "
            "later.") + f' <a href="{DOCUMENTATION_URL}">' + _("Documentation") + "</a>"
        self.parent.acknowledgementText = _(
            "BackSplit: The Importance of Sub-dividing the Background in Biomedical Lesion Segmentation. "
            "Demo cases: KiTS23 labelmaps (MIT licence) with synthetic images.")
        slicer.app.connect("startupCompleted()", registerSampleData)


def releaseProblem() -> Optional[str]:
    """The message to show when this Slicer is too old for BackSplit (see ``BackSplitShared.release``)."""
    return release_problem((slicer.app.majorVersion, slicer.app.minorVersion), sys.version_info)


def registerSampleData():
    """The demo cases (synthetic CT from the shipped KiTS23 label maps, with kidney, tumor and cyst) as sample data."""
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
    fastPreview: bool = False       # one fold, no test-time mirroring (BackSplitSegmentLib.prediction_run)


class BackSplitSegmentWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._binding = None
        self._caseList = None
        self._export = None
        self._timer = qt.QTimer()
        self._timer.setInterval(10)

    @property
    def _parameterNode(self):
        return self._binding.parameters if self._binding is not None else None

    def setup(self) -> None:
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
        # every button through BackSplitShared.panel_action: idle again on every way out, one report per failure
        status = lambda text: setattr(self.ui.statusLabel, "text", text) if text else None  # noqa: E731
        self._exportAction = PanelAction(_("Export failed"), self.ui.exportButton, self.ui.cancelExportButton,
                                         status=status, on_idle=self._exportIdle, wait_cursor=True)
        self._timer.timeout.connect(self._exportAction.wrap_tick(self._timer, self._stepExport))

        self._caseList = CaseList(self.ui, qt.QTableWidgetItem, _)
        cases = self._caseList
        for button, what, fn in (
                (self.ui.addCaseButton, _("Could not add the case"), self.onAddCase),
                (self.ui.addAllCasesButton, _("Could not add the loaded cases"), self.onAddAllCases),
                (self.ui.removeCaseButton, _("Could not remove the case"), cases.remove_selected),
                (self.ui.addTargetButton, _("Could not add the target"),
                 lambda: cases.move_available(self.ui.targetList)),
                (self.ui.addSupportButton, _("Could not add the support structure"),
                 lambda: cases.move_available(self.ui.supportList)),
                (self.ui.upButton, _("Could not move the class"), lambda: cases.move_selected(-1)),
                (self.ui.downButton, _("Could not move the class"), lambda: cases.move_selected(+1)),
                (self.ui.removeClassButton, _("Could not remove the class"), cases.remove_classes),
                (self.ui.loadDemoButton, _("Could not load the demo cases"), self.onLoadDemo)):
            button.clicked.connect(once(what, fn, status=status, wait_cursor=True))
        self.ui.exportButton.clicked.connect(self._exportAction.slot(self.onExport))
        self.ui.cancelExportButton.clicked.connect(once(_("Could not cancel"), self.onCancelExport, status=status))
        self._binding = GuiBinding(self.ui)   # connected once per parameter node, whatever the release
        self._supportsSection = SupportsSection(self.ui, self._caseList, qt.QTimer(), qt.QTimer(),
                                               qt.QTableWidgetItem)
        self._applySection = ApplySection(self.ui, self.logic, lambda: self._parameterNode, qt.QTimer(), qt.QTimer())
        self._loopSection = LoopSection(self.ui, self.logic, qt.QTimer(), qt.QFileDialog, qt.QTimer())   # loop
        self._trainOnDataset = HandoffButton(   # after an export: BackSplit Train with this dataset (one flow)
            self.ui.trainOnDatasetButton, "datasets", "BackSplitTrain", slicer.util.selectModule,
            _("Open BackSplit Train with this dataset: {folder}"),
            lambda fn: once(_("Could not open BackSplit Train"), fn, status=status))
        self._setupReadyButtons()
        self.initializeParameterNode()

    def _setupReadyButtons(self) -> None:
        """Export, Apply, Generate and Suggest enabled only when their inputs are valid (tooltip: what is missing),
        checked twice a second from what the panel holds (BackSplitSegmentLib.readiness)."""
        ui, count = self.ui, lambda: len(self._caseList.cases)
        ready = self._readyButtons = ReadyButtons()
        ready.add(ui.exportButton, lambda: self._exportAction.busy, lambda: export_missing(
            count(), self._caseList.names(ui.targetList), ui.datasetName.text), ui.exportButton.toolTip)
        ready.add(ui.applyButton, lambda: self._applySection.action.busy, lambda: apply_missing(
            ui.modelFolder.currentPath, ui.predictVolume.currentNode()), ui.applyButton.toolTip)
        ready.add(ui.supportsGenerateButton, lambda: self._supportsSection.action.busy, lambda: generate_missing(
            count(), ui.supportsSourceComboBox.currentIndex == 0, ui.supportsModelPathLineEdit.currentPath),
            ui.supportsGenerateButton.toolTip)
        ready.add(ui.supportsSuggestButton, lambda: self._supportsSection.suggestAction.busy,
                  lambda: suggest_missing(count(), ui.supportsTargetLineEdit.text), ui.supportsSuggestButton.toolTip)
        self._readyTimer = qt.QTimer()
        self._readyTimer.setInterval(500)
        checking = PanelAction(_("Could not check the inputs"))   # display only: an error stops it, reported once
        self._readyTimer.timeout.connect(checking.wrap_tick(self._readyTimer, ready.update))
        self._readyTimer.start()

    def cleanup(self) -> None:
        self.removeObservers()
        self._timer.stop()
        self._readyTimer.stop()
        if self._export is not None:
            self._export.close()
        self._applySection.cleanup()
        self._supportsSection.cleanup()   # Reload and module unload call cleanup too, not only aboutToQuit
        self._loopSection.cleanup()

    def enter(self) -> None:
        self.initializeParameterNode()       # idempotent: the GUI stays connected to the same parameter node
        model = take_handoff("models")       # BackSplit Train's "Use in BackSplit Segment": the model for Apply
        if model is not None:
            self._parameterNode.modelFolder = model

    def onSceneStartClose(self, caller, event) -> None:
        self._binding.unbind()
        stopped = _("Stopped: the scene was closed.")   # work that reads or writes scene nodes ends (PanelAction)
        for action in (self._exportAction, self._applySection.action, self._supportsSection.action,
                       self._supportsSection.suggestAction, self._loopSection.addAction):
            if action.busy:
                action.finish(stopped)
        self._caseList.clear()

    def onSceneEndClose(self, caller, event) -> None:
        self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self._binding.bind(self.logic.getParameterNode())
        parameters = self._parameterNode
        if not parameters.inputVolume:
            parameters.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        folder = resolve_folder(parameters.outputFolder, default_export_folder())   # never Slicer's working dir
        if str(parameters.outputFolder) != str(folder):
            parameters.outputFolder = folder

    # ---- case list (BackSplitSegmentLib.case_list) ---------------------------------------------------------------
    def onAddCase(self) -> None:
        extra = [self.ui.extraChannelSelector.currentNode()] if self.ui.extraChannelSelector.currentNode() else []
        self._caseList.add(self._parameterNode.inputVolume, self._parameterNode.inputSegmentation, extra)

    def onAddAllCases(self) -> None:
        summary = self._caseList.add_loaded(slicer.mrmlScene)
        self.ui.caseCountLabel.toolTip = summary
        self.ui.statusLabel.text = summary

    # ---- export ---------------------------------------------------------------------------------------------------
    def onExport(self) -> bool:
        """Run by the Export button's ``PanelAction``: checks the request, then steps the export from the timer."""
        names = self._caseList.names
        self._export = self.logic.exportRun([c.source() for c in self._caseList.cases],
                                            names(self.ui.targetList), names(self.ui.supportList),
                                            self._parameterNode)
        self.ui.exportProgressBar.value = 0
        self._trainOnDataset.offer(None)
        self.ui.statusLabel.text = _("Exporting...")
        self._timer.start()
        return True

    def _exportIdle(self) -> None:
        """Every way back to idle (``PanelAction.on_idle``): timer stopped, the export closed."""
        self._timer.stop()
        if self._export is not None:
            self._export.close()
        self._export = None

    def _stepExport(self) -> None:
        """One short piece of reading from the scene (or of handing it to the export child), per tick (ExportRun)."""
        step = self._export.step()
        self.ui.exportProgressBar.value = step.percent
        self.ui.statusLabel.text = step.message
        if not step.done:
            return
        if step.state == "cancelled":
            self._exportAction.finish(_("Export cancelled; nothing was written."))
        elif step.state == "failed":
            self._exportAction.failed(step.message, "" if step.expected else self.logic.tracebackText(step.error))
        else:
            self._exportAction.finish()
            self._trainOnDataset.offer(getattr(step.result, "dataset_dir", None))

    def onCancelExport(self) -> None:
        if self._export is not None:
            self._export.cancel()
            self.ui.statusLabel.text = _("Cancelling...")

    def onLoadDemo(self) -> None:
        self.logic.loadDemoCases(int(self.ui.demoCountSpinBox.value))
        self.onAddAllCases()



class BackSplitSegmentLogic(ScriptedLoadableModuleLogic):
    """What the panel does, for scripts: one entry point per action; the work is in the engine and the Lib.

    - export: ``exportRun(sources, targets, supports, parameters)``, stepped from a timer, or ``.run_to_end()``;
    - apply a model: ``predict(parameters, extra_channels)``, blocking; the panel uses ``startPrediction`` and steps
      a ``PredictionFinish`` from its timer instead;
    - demo cases: ``loadDemoCases(count)``.

    >>> logic = BackSplitSegmentLogic()
    >>> parameters = logic.getParameterNode()
    >>> parameters.modelFolder, parameters.predictVolume = Path("~/models/Kidney").expanduser(), volumeNode
    >>> outcome = logic.predict(parameters)          # PredictionOutcome (None when cancelled)
    >>> cases = [c.source() for c in cases_in_scene(slicer.mrmlScene)]
    >>> step = logic.exportRun(cases, ["cyst"], ["tumor", "kidney"], parameters).run_to_end()
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self.lastSegmentation = None

    def getParameterNode(self):
        return BackSplitSegmentParameterNode(super().getParameterNode())

    @staticmethod
    def exportRequest(parameters, targets, supports):
        """The engine's ``ExportRequest`` from the parameters (checked: raises InputError naming the field)."""
        return export_request(parameters, targets, supports)

    def exportRun(self, sources, targets, supports, parameters) -> ExportRun:
        """An export stepped one case at a time (``step()`` from a timer); checks the request before any case."""
        return ExportRun(list(sources), self.exportRequest(parameters, targets, supports))

    @staticmethod
    def exportSteps(sources, request, cancel):
        """The engine's export as events (``iter_export``), read from the scene at once: self-test and scripts."""
        return iter_export(sources, request, cancel)

    @staticmethod
    def tracebackText(error) -> str:
        return "".join(traceback.format_exception(type(error), error, error.__traceback__)) if error else ""

    @staticmethod
    def loadDemoCases(count: int = 3):
        """Demo cases (synthetic CT from KiTS23 label maps, shipped with the extension) into the scene."""
        return load_demo_cases(count)

    @staticmethod
    def loadDemoCase(index: int = 0):
        return load_demo_cases(1, first=index)[0][0]

    # ---- prediction ----------------------------------------------------------------------------------------------
    @staticmethod
    def ensureDependencies() -> bool:
        """Scripts: install nnU-Net and PyTorch after asking (blocking); the panel uses its DependencyGate."""
        return ensure_nnunet()

    @staticmethod
    def startPrediction(parameters, extra_channels=()):
        """Start the prediction child for the parameters' model and volume; returns the running job
        (``PredictionProcess``): the full prediction, or with ``fastPreview`` the model's first fold without
        test-time mirroring (its nodes named as a preview). Raises InputError before anything starts (channels,
        geometry, model folder)."""
        model = required_folder(parameters.modelFolder, _("model folder (or a model from the models list)"))
        return start_prediction(model, parameters.predictVolume, list(extra_channels),
                                lesion_only=bool(parameters.lesionOnly),
                                probabilities=bool(parameters.showProbability),
                                threshold=float(parameters.decisionThreshold),
                                min_volume_ml=float(parameters.minLesionVolume),
                                preview=bool(parameters.fastPreview))

    def predict(self, parameters, extra_channels=(), show_auxiliary: bool = True):
        """Apply the model and import the result into the scene, waiting for both (scripts); returns the
        ``PredictionOutcome`` (None when cancelled) and raises the child's error message otherwise."""
        job = self.startPrediction(parameters, extra_channels)
        job.wait()
        outcome = finish_prediction(job, parameters.predictVolume, show_auxiliary)
        if outcome is not None:
            self.lastSegmentation = outcome.segmentation_node
        return outcome

    def setAuxiliaryVisible(self, visible: bool) -> None:
        if self.lastSegmentation is not None and self.lastSegmentation.GetScene() is not None:
            set_auxiliary_visible(self.lastSegmentation, visible)


class BackSplitSegmentTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_export_demo_cases()
        self.setUp()
        self.test_panel()

    def test_panel(self):   # the panel through its widgets: demo cases, classes, Export, hand-over to Train
        run_panel_test(self)

    def test_export_demo_cases(self):
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
