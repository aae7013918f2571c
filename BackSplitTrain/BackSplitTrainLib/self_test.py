"""BackSplit Train's self-test through the real panel: its fields; with nnU-Net, a tiny CPU training and Apply.

``BackSplitTrainTest`` in BackSplitTrain.py calls ``run_panel_test``: a dataset of the shipped demo cases is
exported (by the engine, into a temporary folder), the panel's fields are filled through its widgets and must reach
the parameter node and the training options; then, where PyTorch and nnU-Net are already installed, *Start* trains a
tiny model on the CPU (1 epoch, 2 iterations), *Use in BackSplit Segment* opens BackSplit Segment with that model
chosen, and *Apply* there predicts a demo case. Without PyTorch and nnU-Net that part is skipped and the reason
shown: the self-test never installs or downloads anything (the panels' installer also refuses in testing mode,
``BackSplitShared.install_run``).

The model lands where every training's model lands, in the models location (``~/BackSplit/models`` unless
``BACKSPLIT_MODELS_DIR`` is set), so that Apply's list shows it; the self-test removes the model folders it added
there (named after its dataset) at its end. Its other files go to a temporary folder, removed when it passed.

The checks that run without Qt (``make_dataset``, ``TINY_TRAINING``, ``check_model``) are tested with slicer-core
(``Testing/test_selftest_panels.py``); the driving functions need the application. The Slicer APIs used are recorded
in docs/SLICER_COMPATIBILITY.md ("Self-tests").
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Optional

from backsplit.datasets.export import ExportRequest, export_dataset
from backsplit.demo.cases import DEMO_COLORS, DEMO_SUPPORTS, DEMO_TARGETS, demo_case_sources, demo_label_files
from backsplit.models.catalog import read_entry
from backsplit.models.location import models_dir
from BackSplitShared.self_test_support import (
    ErrorLog,
    ScratchFolder,
    folder_names,
    new_folders,
    open_module,
    press_and_wait,
    training_skip_reason,
)

MODULE = "BackSplitTrain"
SEGMENT_MODULE = "BackSplitSegment"
DATASET_ID = 992
DATASET_NAME = "BackSplitSelfTest"
DEMO_CASES = 2
TRAINING_TIMEOUT_S = 40 * 60.0     # planning, preprocessing, 1 epoch and its validation on a CI runner's CPU
APPLY_TIMEOUT_S = 20 * 60.0

# The panel's fields for the tiny training: parameter name -> value, set through the widget of that name (the .ui
# binds each to the parameter of its name). Checked against the .ui and the parameter node by
# Testing/test_selftest_panels.py.
TINY_TRAINING = {
    "configuration": "2d",
    "fold": "all",
    "epochs": 1,
    "iterationsPerEpoch": 2,
    "batchSize": 2,
    "device": "cpu",
    "withBinary": False,
    "targetSampling": True,
    "executor": "local",
    "learnedContext": "none",
    "supportRecipe": "default",
    "resume": False,
    "overwrite": False,
}


def make_dataset(out_root: Path, count: int = DEMO_CASES) -> Path:
    """Export ``count`` demo cases (synthetic CT from the shipped KiTS23 label maps) as the BackSplit dataset
    ``Dataset992_BackSplitSelfTest`` under ``out_root`` with the demo's classes, without its binary baseline
    dataset; returns its folder. Raises the engine's InputError/OutputError (e.g. the folder exists already)."""
    request = ExportRequest(out_root=Path(out_root), dataset_id=DATASET_ID, dataset_name=DATASET_NAME,
                            targets=list(DEMO_TARGETS), supports=list(DEMO_SUPPORTS), colors=dict(DEMO_COLORS),
                            binary_twin=False)
    return Path(export_dataset(demo_case_sources(count), request).dataset_dir)


def demo_case_id(index: int = 0) -> str:
    """The case id (and node name) of the ``index``-th demo case, as *Load demo cases* names its volume."""
    return demo_label_files()[index].name[: -len(".nii.gz")]


def check_model(folder: Path, models: Path, targets, supports) -> None:
    """A trained model folder as Apply needs it: directly in the models location ``models`` (so the model lists show
    it) with a manifest naming the classes ``targets`` and ``supports``. Raises AssertionError naming the difference
    (or the engine's InputError when the folder has no readable manifest)."""
    folder = Path(folder)
    if folder.parent.resolve() != Path(models).resolve():
        raise AssertionError(f"the model {folder} is not in the models location {models}")
    entry = read_entry(folder)
    if (entry.targets, entry.supports) != (list(targets), list(supports)):
        raise AssertionError(f"the model {folder.name} has the classes {(entry.targets, entry.supports)}, expected "
                             f"{(list(targets), list(supports))}")


# ---- driving the panels (needs the Slicer application) --------------------------------------------------------------
def _set_field(ui, name: str, value) -> None:
    """Set the widget ``name`` as a user would: a check box, a spin box, a combo box (its items are the parameter's
    choices, written by Slicer's parameterNodeWrapper) or a path field."""
    widget = getattr(ui, name)
    if isinstance(value, bool):
        widget.checked = value
    elif isinstance(value, int):
        widget.value = value
    elif isinstance(value, Path):
        widget.currentPath = str(value)
    else:
        index = widget.findText(value)
        if index < 0:
            raise AssertionError(f"{name}: {value!r} is not one of its choices")
        widget.currentIndex = index


def fill_panel(test, widget, dataset: Path, work: Path) -> None:
    """The dataset, work folder and tiny settings through the widgets; checks that the parameter node and the
    training options follow them (the parameterNodeWrapper binding and ``trainOptions``)."""
    ui = widget.ui
    for name, value in {"datasetFolder": dataset, "workFolder": work, **TINY_TRAINING}.items():
        _set_field(ui, name, value)
    parameters = widget.logic.getParameterNode()
    for name, value in TINY_TRAINING.items():
        test.assertEqual(getattr(parameters, name), value, f"the field {name} did not reach the parameter node")
    options = widget.logic.trainOptions(parameters)
    test.assertEqual(Path(options.dataset_dir).resolve(), dataset.resolve())
    test.assertEqual((options.epochs, options.iterations_per_epoch, options.device, options.with_binary),
                     (1, 2, "cpu", False))


def train_through_panel(test, widget, errors: ErrorLog) -> None:
    """*Start*, and wait until the training child ended; it must end as finished and offer its model."""
    ui = widget.ui
    test.delayDisplay("Training a tiny model through the panel (1 epoch on the CPU)")
    press_and_wait(test, ui.startButton, ui.cancelButton, TRAINING_TIMEOUT_S, "Training", errors)
    test.assertEqual(ui.progressBar.value, 100, ui.statusLabel.text)
    test.assertFalse(ui.useInSegmentButton.isHidden(), "Use in BackSplit Segment is offered after the training")


def apply_in_segment(test, widget, errors: ErrorLog) -> Path:
    """*Use in BackSplit Segment*, then *Apply* there on a demo case; returns the model folder Apply used."""
    import slicer

    widget.ui.useInSegmentButton.click()
    test.assertEqual(slicer.util.selectedModule(), SEGMENT_MODULE, "Use in BackSplit Segment opens it")
    segment = slicer.util.getModuleWidget(SEGMENT_MODULE)
    segment_ui = segment.ui
    model = Path(segment_ui.modelFolder.currentPath)
    check_model(model, models_dir(), DEMO_TARGETS, DEMO_SUPPORTS)
    segment_ui.demoCountSpinBox.value = 1
    segment_ui.loadDemoButton.click()
    volume = slicer.mrmlScene.GetFirstNodeByName(demo_case_id(0))
    test.assertIsNotNone(volume, "Load demo cases added the first demo case")
    segment_ui.predictVolume.setCurrentNode(volume)
    test.delayDisplay("Applying the trained model through BackSplit Segment")
    press_and_wait(test, segment_ui.applyButton, segment_ui.cancelApplyButton, APPLY_TIMEOUT_S, "Apply", errors)
    result = segment.logic.lastSegmentation
    test.assertIsNotNone(result, f"Apply imported no segmentation: {segment_ui.summaryLabel.text}")
    segmentation = result.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    for target in DEMO_TARGETS:
        test.assertIn(target, names, "the prediction shows the target")
    return model


def run_panel_test(test) -> None:
    """The whole self-test; ``test`` is the module's ``ScriptedLoadableModuleTest`` (assertions, delayDisplay)."""
    import slicer

    slicer.mrmlScene.Clear()
    scratch, passed = ScratchFolder(), False
    models, models_before = models_dir(), folder_names(models_dir())
    added: list[Path] = []
    try:
        with ErrorLog() as errors:
            dataset = make_dataset(scratch.path / "nnUNet_raw")
            widget = open_module(MODULE)
            fill_panel(test, widget, dataset, scratch.path / "work")
            skipped = _skip_reason()
            if skipped:
                logging.warning(f"BackSplit Train self-test: training and Apply skipped: {skipped}")
                test.delayDisplay(f"Skipped training and Apply: {skipped}")
            else:
                train_through_panel(test, widget, errors)
                added = new_folders(models, models_before)
                apply_in_segment(test, widget, errors)
        passed = True
        test.delayDisplay("BackSplit Train panel test passed")
    finally:
        added = added or new_folders(models, models_before)
        for folder in added:   # only what this test's training added, never a model that was there before
            if folder.name.startswith(f"Dataset{DATASET_ID:03d}_{DATASET_NAME}"):
                shutil.rmtree(folder, ignore_errors=True)
        kept = scratch.close(passed)
        if kept is not None:
            logging.error(f"BackSplit Train self-test failed; its files are kept in {kept}")


def _skip_reason() -> Optional[str]:
    """Why training and Apply are skipped here, or None."""
    import slicer

    reason = training_skip_reason()
    if reason is None and not hasattr(slicer.modules, SEGMENT_MODULE.lower()):
        reason = f"{SEGMENT_MODULE} is not loaded, so Apply cannot be tested"
    return reason
