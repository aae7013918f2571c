"""BackSplitSegment: export segmented cases as a BackSplit nnU-Net dataset (plus its binary twin), and apply a
trained BackSplit model to a volume with lesion and auxiliary (support structure) overlays.

The widget only binds parameters and drives the logic from timers; everything else lives in the Slicer-free engine
(``backsplit``) and in ``BackSplitSegmentLib`` (scene adapters, tested with slicer-core).
"""

import logging
import os
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

from BackSplitSegmentLib.export_run import ExportRun
from BackSplitSegmentLib.scene_cases import SceneCase, cases_in_scene, segment_names_in_cases, unique_case_id


class BackSplitSegment(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("BackSplit Segment")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Segmentation")]
        self.parent.dependencies = ["Segmentations"]
        self.parent.contributors = ["BackSplit for 3D Slicer authors"]
        self.parent.helpText = _(
            "Export segmented cases as an nnU-Net v2 dataset whose background is split into support structures "
            "(BackSplit), plus the matching binary dataset, and apply a trained BackSplit model to a volume. "
            "Label values: 0 background, then the target (lesion) segments, then the support segments, in the "
            "order of the lists; a voxel in several segments takes the earliest class.")
        self.parent.acknowledgementText = _(
            "BackSplit: The Importance of Sub-dividing the Background in Biomedical Lesion Segmentation. "
            "Demo cases: KiTS23 label maps (MIT licence) with synthetic images.")
        slicer.app.connect("startupCompleted()", registerSampleData)


def contextChoice(method: str, detail: str) -> str:
    """The panel's context choice as the command line writes it ('rings:5,15', 'kmeans:3', 'none')."""
    method, detail = (method or "none").strip(), (detail or "").strip()
    return f"{method}:{detail}" if detail and method != "none" else method


def registerSampleData():
    """The demo cases as sample data: synthetic CT from the shipped KiTS23 label maps with their segmentations
    (kidney parenchyma, tumor, cyst). Registering writes nothing; the files are made in Slicer's cache folder the
    first time a sample is chosen (no download)."""
    try:
        import SampleData
    except ImportError:
        return
    from BackSplitSegmentLib.demo_scene import sample_data_sources

    icon = os.path.join(os.path.dirname(__file__), "Resources", "Icons", "BackSplitSegment.png")
    folder = Path(slicer.mrmlScene.GetCacheManager().GetRemoteCacheDirectory()) / "BackSplit"
    try:
        sources = sample_data_sources(folder, lambda source: SampleData.SampleDataLogic().downloadFromSource(source),
                                      icon)
        for source in sources:
            SampleData.SampleDataLogic.registerCustomSampleDataSource(**source)
    except Exception as exc:  # sample data is optional: never break start-up
        logging.warning(f"BackSplit demo sample data not available: {exc}")


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
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._cases: list[SceneCase] = []
        self._export = None
        self._timer = qt.QTimer()
        self._timer.setInterval(10)
        self._timer.timeout.connect(self._stepExport)
        self._prediction = None
        self._predictionTimer = qt.QTimer()
        self._predictionTimer.setInterval(300)
        self._predictionTimer.timeout.connect(self._pollPrediction)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/BackSplitSegment.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = BackSplitSegmentLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.addCaseButton.clicked.connect(self.onAddCase)
        self.ui.addAllCasesButton.clicked.connect(self.onAddAllCases)
        self.ui.removeCaseButton.clicked.connect(self.onRemoveCase)
        self.ui.addTargetButton.clicked.connect(lambda: self._moveAvailable(self.ui.targetList))
        self.ui.addSupportButton.clicked.connect(lambda: self._moveAvailable(self.ui.supportList))
        self.ui.upButton.clicked.connect(lambda: self._moveSelected(-1))
        self.ui.downButton.clicked.connect(lambda: self._moveSelected(+1))
        self.ui.removeClassButton.clicked.connect(self.onRemoveClass)
        self.ui.exportButton.clicked.connect(self.onExport)
        self.ui.cancelExportButton.clicked.connect(self.onCancelExport)
        self.ui.loadDemoButton.clicked.connect(self.onLoadDemo)
        self.ui.applyButton.clicked.connect(self.onApply)
        self.ui.cancelApplyButton.clicked.connect(self.onCancelApply)
        self.ui.showAuxiliaryCheckBox.toggled.connect(self.onShowAuxiliary)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()
        self._timer.stop()
        if self._export is not None:
            self._export.close()
        self._predictionTimer.stop()
        if self._prediction is not None:
            self._prediction.cancel()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)
        self._cases = []
        self._refreshCaseTable()

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
        if not self._parameterNode.outputFolder or str(self._parameterNode.outputFolder) in ("", "."):
            self._parameterNode.outputFolder = Path.home() / "BackSplit" / "nnUNet_raw"

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)

    # ---- case list ------------------------------------------------------------------------------------------------
    def onAddCase(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not add the case."), waitCursor=True):
            volume, segmentation = self._parameterNode.inputVolume, self._parameterNode.inputSegmentation
            if volume is None or segmentation is None:
                raise ValueError(_("Choose a volume and its segmentation first."))
            extra = [self.ui.extraChannelSelector.currentNode()] if self.ui.extraChannelSelector.currentNode() else []
            used = {c.case_id for c in self._cases}
            self._cases.append(SceneCase(unique_case_id(volume.GetName(), used), volume, segmentation, extra))
            self._refreshCaseTable()

    def onAddAllCases(self) -> None:
        used = {c.case_id for c in self._cases}
        listed = {(c.volume, c.segmentation) for c in self._cases}
        for case in cases_in_scene(slicer.mrmlScene):
            if (case.volume, case.segmentation) not in listed:
                case.case_id = unique_case_id(case.case_id, used)
                used.add(case.case_id)
                self._cases.append(case)
        self._refreshCaseTable()

    def onRemoveCase(self) -> None:
        rows = sorted({item.row() for item in self.ui.caseTable.selectedItems()}, reverse=True)
        for row in rows:
            del self._cases[row]
        self._refreshCaseTable()

    def _refreshCaseTable(self) -> None:
        table = self.ui.caseTable
        table.setRowCount(len(self._cases))
        for row, case in enumerate(self._cases):
            channels = [case.volume.GetName()] + [v.GetName() for v in case.extra_channels]
            for column, text in enumerate([case.case_id, ", ".join(channels), case.segmentation.GetName()]):
                table.setItem(row, column, qt.QTableWidgetItem(text))
        chosen = {self.ui.targetList.item(i).text() for i in range(self.ui.targetList.count)} | \
                 {self.ui.supportList.item(i).text() for i in range(self.ui.supportList.count)}
        self.ui.availableList.clear()
        for name in segment_names_in_cases(self._cases):
            if name not in chosen:
                self.ui.availableList.addItem(name)
        self.ui.caseCountLabel.text = _("{count} case(s)").format(count=len(self._cases))

    def _moveAvailable(self, targetList) -> None:
        for item in list(self.ui.availableList.selectedItems()):
            targetList.addItem(item.text())
            self.ui.availableList.takeItem(self.ui.availableList.row(item))

    def _moveSelected(self, step: int) -> None:
        for widget in (self.ui.targetList, self.ui.supportList):
            row = widget.currentRow
            if row < 0 or not widget.hasFocus() and not widget.selectedItems():
                continue
            new_row = row + step
            if 0 <= new_row < widget.count:
                item = widget.takeItem(row)
                widget.insertItem(new_row, item)
                widget.setCurrentRow(new_row)

    def onRemoveClass(self) -> None:
        for widget in (self.ui.targetList, self.ui.supportList):
            for item in list(widget.selectedItems()):
                widget.takeItem(widget.row(item))
        self._refreshCaseTable()

    def _names(self, widget) -> list:
        return [widget.item(i).text() for i in range(widget.count)]

    # ---- export ---------------------------------------------------------------------------------------------------
    def onExport(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Export failed."), waitCursor=True):
            self._export = self.logic.exportRun([c.source() for c in self._cases],
                                                self._names(self.ui.targetList), self._names(self.ui.supportList),
                                                self._parameterNode)
            self.ui.exportProgressBar.value = 0
            self.ui.exportButton.enabled = False
            self.ui.cancelExportButton.enabled = True
            self.ui.statusLabel.text = _("Exporting...")
            self._timer.start()

    def _stepExport(self) -> None:
        """One case per timer tick: the application stays responsive between cases."""
        step = self._export.step()
        self.ui.exportProgressBar.value = step.percent
        self.ui.statusLabel.text = step.message
        if not step.done:
            return
        self._timer.stop()
        self._export = None
        self.ui.exportButton.enabled = True
        self.ui.cancelExportButton.enabled = False
        if step.state == "cancelled":
            self.ui.statusLabel.text = _("Export cancelled; nothing was written.")
        elif step.state == "failed":
            if step.expected:
                slicer.util.errorDisplay(_("Export failed: {error}").format(error=step.message))
            else:
                slicer.util.errorDisplay(_("Export failed: {error}").format(error=step.message),
                                         detailedText=self.logic.tracebackText(step.error))

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
        with slicer.util.tryWithErrorDisplay(_("Could not start the prediction."), waitCursor=True):
            if not self.logic.ensureDependencies():
                return
            extra = [self.ui.predictExtraChannelSelector.currentNode()] \
                if self.ui.predictExtraChannelSelector.currentNode() else []
            self._prediction = self.logic.startPrediction(self._parameterNode, extra)
            self.ui.applyButton.enabled = False
            self.ui.cancelApplyButton.enabled = True
            self.ui.applyProgressBar.value = 0
            self.ui.summaryLabel.text = _("Predicting...")
            self._predictionTimer.start()

    def _pollPrediction(self) -> None:
        job = self._prediction
        for event in job.poll_events():
            if event.stage == "log":
                continue
            if event.fraction is not None:
                self.ui.applyProgressBar.value = int(100 * event.fraction)
            self.ui.summaryLabel.text = event.message
        if job.is_running():
            return
        self._predictionTimer.stop()
        self.ui.applyButton.enabled = True
        self.ui.cancelApplyButton.enabled = False
        with slicer.util.tryWithErrorDisplay(_("Prediction failed."), waitCursor=True):
            result = self.logic.finishPrediction(job, self._parameterNode)
            if result is not None:
                self.ui.applyProgressBar.value = 100
                self.ui.summaryLabel.text = result

    def onCancelApply(self) -> None:
        if self._prediction is not None:
            self._prediction.cancel()
            self.ui.summaryLabel.text = _("Prediction cancelled.")

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
        from backsplit.commands.export import parse_mapping, split_names
        from backsplit.context import ContextSpec
        from backsplit.export import ExportRequest

        mapping = parse_mapping([line for line in parameters.nameMapping.replace(";", "\n").splitlines()
                                 if line.strip()])
        return ExportRequest(
            out_root=Path(parameters.outputFolder), dataset_id=int(parameters.datasetId),
            dataset_name=parameters.datasetName.strip(), targets=list(targets), supports=list(supports),
            name_mapping=mapping, channel_names=split_names(parameters.channelNames) or ["CT"],
            binary_twin=bool(parameters.binaryTwin), allow_negative_cases=bool(parameters.allowNegative),
            missing_segments="absent" if parameters.missingAsAbsent else "error", overwrite=bool(parameters.overwrite),
            context=ContextSpec.parse(contextChoice(parameters.contextLabels, parameters.contextDetail)))

    def exportRun(self, sources, targets, supports, parameters) -> ExportRun:
        """An export stepped one case at a time (``step()`` from a timer); checks the request before any case."""
        return ExportRun(list(sources), self.exportRequest(parameters, targets, supports))

    def exportSteps(self, sources, request, cancel):
        from backsplit.export import iter_export

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
        """nnU-Net and PyTorch are installed on first use, after asking; never at import."""
        from BackSplitSegmentLib.dependencies import ensure_nnunet

        return ensure_nnunet()

    def startPrediction(self, parameters, extra_channels):
        from BackSplitSegmentLib.prediction_run import start_prediction

        return start_prediction(Path(parameters.modelFolder), parameters.predictVolume, extra_channels,
                                lesion_only=bool(parameters.lesionOnly),
                                probabilities=bool(parameters.showProbability),
                                threshold=float(parameters.decisionThreshold),
                                min_volume_ml=float(parameters.minLesionVolume))

    def finishPrediction(self, job, parameters) -> Optional[str]:
        from BackSplitSegmentLib.prediction_run import finish_prediction

        outcome = finish_prediction(job, parameters.predictVolume)
        if outcome is None:
            return None
        self.lastSegmentation = outcome.segmentation_node
        return outcome.summary_text

    def setAuxiliaryVisible(self, visible: bool) -> None:
        from BackSplitSegmentLib.prediction_import import set_auxiliary_visible

        if self.lastSegmentation is not None:
            set_auxiliary_visible(self.lastSegmentation, visible)


class BackSplitSegmentTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_export_demo_cases()

    def test_export_demo_cases(self):
        logic = BackSplitSegmentLogic()
        loaded = logic.loadDemoCases(2)
        self.assertEqual(len(loaded), 2)
        cases = cases_in_scene(slicer.mrmlScene)
        parameters = logic.getParameterNode()
        out = Path(tempfile.mkdtemp())
        parameters.outputFolder = out
        request = logic.exportRequest(parameters, ["cyst"], ["tumor", "kidney"])
        events = list(logic.exportSteps([c.source() for c in cases], request, cancel=lambda: False))
        self.assertEqual(events[-1].stage, "done")
        self.assertTrue((out / "Dataset501_BackSplit" / "dataset.json").is_file())
        self.delayDisplay("Export test passed")
