"""BackSplit Segment's self-test through the real panel: demo cases, Export, hand-over to BackSplit Train.

``BackSplitSegmentTest`` in BackSplitSegment.py calls ``run_panel_test``: *Load demo cases* adds the shipped demo
cases to the scene and the case list, the demo's target and support structures are moved into their lists with the
panel's buttons, *Export* writes the BackSplit dataset and its binary baseline dataset into a temporary folder,
*Train on this dataset* opens BackSplit Train with it, and *Apply* stays greyed out, saying why, while its model
folder does not exist.

Run it in Slicer with *Reload and Test* (Developer mode) or from the command line (CONTRIBUTING.md). It installs
and downloads nothing; training and Apply with a trained model are BackSplit Train's self-test.

The Slicer APIs used are recorded in docs/SLICER_COMPATIBILITY.md ("Self-tests"). The checks of what was written
(``check_export``) and the class choice (``demo_classes``) run without Qt and are tested with slicer-core
(``Testing/test_selftest_panels.py``); the driving functions need the application (there is no Qt in CI here).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from backsplit.datasets.folder import load_dataset_folder
from backsplit.demo.cases import DEMO_SUPPORTS, DEMO_TARGETS
from BackSplitShared.self_test_support import ErrorLog, ScratchFolder, open_module, press_and_wait, wait_until

MODULE = "BackSplitSegment"
TRAIN_MODULE = "BackSplitTrain"
DATASET_ID = 990               # the binary baseline dataset gets 991; written into a new temporary folder
DATASET_NAME = "BackSplitSelfTest"
DEMO_CASES = 2
READY_TIMEOUT_S = 10.0         # the panel re-checks its buttons twice a second (BackSplitSegmentLib.readiness)
EXPORT_TIMEOUT_S = 600.0


def demo_classes() -> tuple[list[str], list[str]]:
    """The demo's (targets, support structures) in priority order, as ``backsplit demo`` exports them."""
    return list(DEMO_TARGETS), list(DEMO_SUPPORTS)


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """nnU-Net's folder name of a dataset: ``DatasetNNN_Name``."""
    return f"Dataset{int(dataset_id):03d}_{name}"


def check_export(out_root: Path, dataset_id: int, name: str, case_count: int, targets: list[str],
                 supports: list[str], binary_twin: bool = True) -> Path:
    """Check what an export wrote under ``out_root``: the BackSplit dataset ``DatasetNNN_Name`` with ``case_count``
    training cases and the classes ``targets`` then ``supports`` (in that order), and, with ``binary_twin``, its
    binary baseline dataset with the targets only. Returns the dataset folder; raises AssertionError naming the
    difference (or the engine's InputError when a folder cannot be read as a dataset)."""
    dataset = load_dataset_folder(Path(out_root) / dataset_folder_name(dataset_id, name))
    problems = []
    if dataset.variant != "backsplit":
        problems.append(f"variant {dataset.variant!r}, expected 'backsplit'")
    if len(dataset.case_ids) != case_count:
        problems.append(f"{len(dataset.case_ids)} training cases, expected {case_count}")
    schema = dataset.schema
    classes = ([c.name for c in schema.targets], [c.name for c in schema.supports]) if schema else None
    if classes != (list(targets), list(supports)):
        problems.append(f"classes (targets, supports) {classes}, expected {(list(targets), list(supports))}")
    if binary_twin:
        twin = dataset.twin_folder
        if twin is None or not twin.is_dir():
            problems.append(f"no binary baseline dataset next to it (recorded twin: {twin})")
        else:
            binary = load_dataset_folder(twin)
            binary_targets = [c.name for c in binary.schema.targets] if binary.schema else None
            if binary.variant != "binary" or binary_targets != list(targets) or binary.schema.supports:
                problems.append(f"binary baseline {twin.name}: variant {binary.variant!r}, targets {binary_targets}")
    if problems:
        raise AssertionError(f"export into {dataset.folder}: " + "; ".join(problems))
    return dataset.folder


# ---- driving the panel (needs the Slicer application) ---------------------------------------------------------------
def _choose(ui, names: list[str], button) -> None:
    """Select ``names`` in the *Available segments* list, one at a time (keeps their order), and press ``button``
    (*Add as target* or *Add as support structure*)."""
    for name in names:
        available = [ui.availableList.item(i).text() for i in range(ui.availableList.count)]
        if name not in available:
            raise AssertionError(f"segment {name!r} is not offered in the Available list: {available}")
        ui.availableList.clearSelection()
        ui.availableList.item(available.index(name)).setSelected(True)
        button.click()


def export_through_panel(test, widget, out_root: Path, errors: ErrorLog) -> Path:
    """Demo cases, classes and Export through the panel's widgets; returns the checked dataset folder."""
    import slicer

    ui = widget.ui
    ui.targetList.clear()                          # classes chosen in an earlier run would not be offered again
    ui.supportList.clear()
    ui.demoCountSpinBox.value = DEMO_CASES
    ui.loadDemoButton.click()
    test.assertEqual(errors.messages, [], "Load demo cases reported an error")
    segmentations = slicer.mrmlScene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems()
    test.assertEqual(segmentations, DEMO_CASES, "demo segmentations in the scene")
    test.assertIn(str(DEMO_CASES), ui.caseCountLabel.text, "the case list counts the demo cases")
    targets, supports = demo_classes()
    _choose(ui, targets, ui.addTargetButton)
    _choose(ui, supports, ui.addSupportButton)
    test.assertEqual([ui.targetList.item(i).text() for i in range(ui.targetList.count)], targets)
    test.assertEqual([ui.supportList.item(i).text() for i in range(ui.supportList.count)], supports)

    ui.outputFolder.currentPath = str(out_root)
    ui.datasetName.text = DATASET_NAME
    ui.datasetId.value = DATASET_ID
    ui.binaryTwin.checked = True
    parameters = widget.logic.getParameterNode()   # the GUI is bound to it (parameterNodeWrapper)
    test.assertEqual(Path(parameters.outputFolder), Path(out_root), "output folder field -> parameter node")
    test.assertEqual(parameters.datasetId, DATASET_ID, "dataset ID field -> parameter node")
    nodes = slicer.mrmlScene.GetNumberOfNodes()
    test.delayDisplay("Exporting the demo cases through the panel")
    press_and_wait(test, ui.exportButton, ui.cancelExportButton, EXPORT_TIMEOUT_S, "Export", errors)
    test.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodes, "the export left nodes in the scene")
    test.assertEqual(ui.exportProgressBar.value, 100, ui.statusLabel.text)
    dataset = check_export(out_root, DATASET_ID, DATASET_NAME, DEMO_CASES, targets, supports)
    # offered: shown by the panel (isHidden: hidden explicitly; `visible` is also false in a collapsed section)
    test.assertFalse(ui.trainOnDatasetButton.isHidden(), "Train on this dataset is offered after the export")
    return dataset


def check_apply_waits_for_a_model(test, widget, missing_folder: Path) -> None:
    """Apply is greyed out while its model folder does not exist, with a tooltip that says so."""
    import slicer

    ui = widget.ui
    ui.predictVolume.setCurrentNode(slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode"))
    ui.modelFolder.currentPath = str(missing_folder)
    said = wait_until(lambda: not ui.applyButton.enabled and missing_folder.name in ui.applyButton.toolTip,
                      READY_TIMEOUT_S)
    test.assertTrue(said, f"Apply with a model folder that does not exist: enabled {ui.applyButton.enabled}, "
                          f"tooltip {ui.applyButton.toolTip!r}")


def hand_dataset_to_train(test, widget, dataset: Path) -> Optional[str]:
    """*Train on this dataset*: BackSplit Train opens with the dataset in its field. Returns why it was skipped
    (BackSplit Train not loaded), else None."""
    import slicer

    if not hasattr(slicer.modules, TRAIN_MODULE.lower()):
        return f"{TRAIN_MODULE} is not loaded: the hand-over to it was not tested"
    widget.ui.trainOnDatasetButton.click()
    test.assertEqual(slicer.util.selectedModule(), TRAIN_MODULE, "Train on this dataset opens BackSplit Train")
    train_ui = slicer.util.getModuleWidget(TRAIN_MODULE).ui
    test.assertEqual(Path(train_ui.datasetFolder.currentPath).resolve(), dataset.resolve(),
                     "BackSplit Train received the dataset")
    slicer.util.selectModule(MODULE)
    return None


def run_panel_test(test) -> None:
    """The whole self-test; ``test`` is the module's ``ScriptedLoadableModuleTest`` (assertions, delayDisplay)."""
    import slicer

    slicer.mrmlScene.Clear()
    scratch, passed = ScratchFolder(), False
    try:
        with ErrorLog() as errors:
            widget = open_module(MODULE)
            test.delayDisplay("Loading the demo cases through the panel")
            dataset = export_through_panel(test, widget, scratch.path / "nnUNet_raw", errors)
            check_apply_waits_for_a_model(test, widget, scratch.path / "no-such-model")
            skipped = hand_dataset_to_train(test, widget, dataset)
            if skipped:
                logging.warning(skipped)
                test.delayDisplay(f"Skipped: {skipped}")
        passed = True
        test.delayDisplay("BackSplit Segment panel test passed")
    finally:
        kept = scratch.close(passed)
        if kept is not None:
            logging.error(f"BackSplit Segment self-test failed; its files are kept in {kept}")
