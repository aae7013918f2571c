"""The Slicer-free parts of both modules' self-tests (``BackSplitShared/self_test_support.py``,
``BackSplitSegmentLib/self_test.py``, ``BackSplitTrainLib/self_test.py``). The self-tests themselves drive the
panels' Qt widgets and run only inside Slicer (``.github/workflows/slicer-selftests.yml``); here: their waiting and
error capture against the real ``PanelAction`` and slicer-core's real ``slicer.util.errorDisplay``, their checks of
what an export and a training wrote on real exported datasets, and their widget names and values against the .ui
files.

Qt stand-ins (said so where used): ``Button`` holds only what ``press_and_wait`` and ``PanelAction`` use of a
``QPushButton`` (``enabled``, ``toolTip``, ``click()``: QAbstractButton::click does nothing while the button is
disabled, Qt 5.15 qabstractbutton.cpp) and the ``Timer``/``Signal`` of fixtures_panels.
"""

import logging
import re
import unittest
from pathlib import Path

import pytest
from fixtures_panels import Signal, Timer  # Qt stand-ins (no Qt here)
from test_ui_static import API, bound_widgets, parameter_specs, ui_widgets

REPO = Path(__file__).resolve().parent.parent


class Button:
    def __init__(self, tooltip="tip"):
        self.enabled, self.toolTip, self.clicked = True, tooltip, Signal()

    def click(self):
        if self.enabled:
            self.clicked.emit(False)


def fake_wait(timer):
    """``wait_until`` on a fake clock: each step delivers one tick of ``timer`` (Qt's event loop in Slicer)."""
    from BackSplitShared.self_test_support import wait_until

    now = [0.0]

    def wait(condition, timeout_s):
        return wait_until(condition, timeout_s, step=lambda: timer.timeout.emit() if timer.active else None,
                          sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0])
    return wait


def panel(tick):
    """A start button whose real ``PanelAction`` runs ``tick`` from a timer, and its Cancel."""
    from BackSplitShared.panel_action import PanelAction

    start, cancel, timer = Button(), Button(), Timer()
    action = PanelAction("Could not export", start, cancel, on_idle=timer.stop)
    start.clicked.connect(action.slot(lambda: (timer.start(), True)[1]))
    timer.timeout.connect(action.wrap_tick(timer, lambda: tick(action)))
    cancel.clicked.connect(lambda *_: action.finish("Cancelled."))
    return start, cancel, timer


def test_wait_until_steps_until_the_condition_holds_or_the_time_is_up():
    from BackSplitShared.self_test_support import wait_until

    steps, now = [], [0.0]
    fake = dict(step=lambda: steps.append(1), sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0])
    assert wait_until(lambda: len(steps) >= 3, 10.0, **fake)
    assert len(steps) == 3
    steps.clear()
    assert not wait_until(lambda: False, 1.0, interval_s=0.25, **fake)
    assert len(steps) == 5                      # at 0, 0.25, 0.5, 0.75 and 1.0 s


def test_press_and_wait_returns_when_the_work_ended_and_the_panel_is_idle(gui):
    from BackSplitShared.self_test_support import ErrorLog, press_and_wait

    ticks = []
    start, cancel, timer = panel(lambda action: ticks.append(1) or (len(ticks) == 3 and action.finish("Done.")))
    with ErrorLog() as errors:
        press_and_wait(unittest.TestCase(), start, cancel, 10.0, "Export", errors, wait=fake_wait(timer))
    assert len(ticks) == 3 and start.enabled and not cancel.enabled and not timer.active


def test_press_and_wait_fails_with_the_error_the_panel_reported(gui):
    """slicer-core's real ``errorDisplay`` logs the report at ERROR level (in Slicer's testing mode it only logs)."""
    from BackSplitShared.self_test_support import ErrorLog, press_and_wait

    def tick(action):
        raise OSError("no space left on the disk")
    start, cancel, timer = panel(tick)
    with ErrorLog() as errors, pytest.raises(AssertionError, match="no space left on the disk"):
        press_and_wait(unittest.TestCase(), start, cancel, 10.0, "Export", errors, wait=fake_wait(timer))
    assert start.enabled and not cancel.enabled                  # the panel is idle again (PanelAction)
    assert any("Could not export" in m for m in errors.messages)


def test_press_and_wait_names_what_is_missing_or_cancels_after_the_timeout(gui):
    from BackSplitShared.self_test_support import ErrorLog, press_and_wait

    start, cancel, timer = panel(lambda action: None)             # work that never ends
    start.enabled, start.toolTip = False, "Add at least one case (Cases section)"
    with ErrorLog() as errors, pytest.raises(AssertionError, match="greyed out: Add at least one case"):
        press_and_wait(unittest.TestCase(), start, cancel, 10.0, "Export", errors, wait=fake_wait(timer))
    start.enabled = True
    with ErrorLog() as errors, pytest.raises(AssertionError, match="did not end within 10 s; it was cancelled"):
        press_and_wait(unittest.TestCase(), start, cancel, 10.0, "Export", errors, wait=fake_wait(timer))
    assert start.enabled and not cancel.enabled and not timer.active


def test_error_log_keeps_error_records_only_while_open():
    from BackSplitShared.self_test_support import ErrorLog

    with ErrorLog() as errors:
        logging.getLogger("anything").warning("a warning is not a failure")
        logging.getLogger("anything").error("Export failed: disk full")
    logging.error("after the test")
    assert errors.messages == ["Export failed: disk full"] and errors.since(1) == []


def test_training_is_skipped_with_the_reason_only_without_pytorch_or_nnunet(monkeypatch):
    """Here both are installed (the suite trains with them). A Slicer without them cannot be made here: the check
    of installed packages (``requirements.missing``) is replaced to give that answer."""
    from BackSplitShared import self_test_support

    assert self_test_support.training_skip_reason() is None
    monkeypatch.setattr(self_test_support, "missing", lambda: ["torch", "nnunetv2"])
    reason = self_test_support.training_skip_reason()
    assert "torch and nnunetv2 not installed" in reason and "never installs" in reason


def test_scratch_folder_is_removed_after_a_pass_and_kept_after_a_failure(tmp_path):
    from BackSplitShared.self_test_support import ScratchFolder, folder_names, new_folders

    passed, failed = ScratchFolder(), ScratchFolder()
    assert passed.close(True) is None and not passed.path.exists()
    assert failed.close(False) == failed.path and failed.path.is_dir()
    failed.path.rmdir()
    (tmp_path / "old").mkdir()
    before = folder_names(tmp_path)
    (tmp_path / "new").mkdir()
    (tmp_path / "file.txt").write_text("x", encoding="utf-8")
    assert new_folders(tmp_path, before) == [tmp_path / "new"]
    assert folder_names(tmp_path / "absent") == set() and new_folders(tmp_path / "absent", set()) == []


def test_segment_self_test_checks_the_export_it_made(tmp_path):
    """A real export of two demo cases with its binary baseline dataset, as the panel's Export writes it."""
    from backsplit.datasets.export import ExportRequest, export_dataset
    from backsplit.demo.cases import demo_case_sources
    from BackSplitSegmentLib.self_test import DATASET_ID, DATASET_NAME, check_export, demo_classes

    targets, supports = demo_classes()
    assert (targets, supports) == (["cyst"], ["tumor", "kidney"])
    export_dataset(demo_case_sources(2), ExportRequest(tmp_path, DATASET_ID, DATASET_NAME, targets, supports))
    folder = check_export(tmp_path, DATASET_ID, DATASET_NAME, 2, targets, supports)
    assert folder == (tmp_path / "Dataset990_BackSplitSelfTest").resolve()
    with pytest.raises(AssertionError, match="2 training cases, expected 1"):
        check_export(tmp_path, DATASET_ID, DATASET_NAME, 1, targets, supports)
    with pytest.raises(AssertionError, match="classes"):
        check_export(tmp_path, DATASET_ID, DATASET_NAME, 2, targets, list(reversed(supports)))


def test_train_self_test_dataset_and_model_checks(tmp_path):
    from backsplit.datasets.folder import load_dataset_folder
    from backsplit.errors import BackSplitError
    from backsplit.training.manifest import write_manifest
    from BackSplitTrainLib.self_test import check_model, make_dataset

    dataset = load_dataset_folder(make_dataset(tmp_path / "raw"))
    assert dataset.folder_name == "Dataset992_BackSplitSelfTest" and len(dataset.case_ids) == 2
    assert dataset.variant == "backsplit" and dataset.twin_folder is None
    with pytest.raises(BackSplitError):
        make_dataset(tmp_path / "raw")                            # never over an existing dataset

    models, model = tmp_path / "models", tmp_path / "models" / "Dataset992_BackSplitSelfTest_2d"
    model.mkdir(parents=True)
    write_manifest(model, {"kind": "backsplit-model", "schema": {
        "targets": [{"name": "cyst"}], "supports": [{"name": "tumor"}, {"name": "kidney"}]}})
    check_model(model, models, ["cyst"], ["tumor", "kidney"])
    with pytest.raises(AssertionError, match="not in the models location"):
        check_model(model, tmp_path, ["cyst"], ["tumor", "kidney"])
    with pytest.raises(AssertionError, match="has the classes"):
        check_model(model, models, ["tumor"], [])


def test_demo_case_id_is_the_node_name_load_demo_cases_gives(slicer_scene):
    from BackSplitSegmentLib.demo_scene import load_demo_cases
    from BackSplitTrainLib.self_test import demo_case_id

    volume, _segmentation = load_demo_cases(1)[0]
    assert volume.GetName() == demo_case_id(0)
    assert slicer_scene.slicer.mrmlScene.GetFirstNodeByName(demo_case_id(0)) is volume


def test_tiny_training_fields_are_bound_widgets_with_valid_values():
    from BackSplitTrainLib.self_test import TINY_TRAINING

    widgets, specs = bound_widgets("BackSplitTrain"), parameter_specs("BackSplitTrain")
    kinds = {bool: "QCheckBox", int: "QSpinBox", str: "QComboBox"}
    for name, value in TINY_TRAINING.items():
        assert name in widgets, f"{name}: no widget bound to that parameter in BackSplitTrain.ui"
        assert widgets[name].get("class") == kinds[type(value)], name
        spec = specs[name]
        assert spec["choices"] is None or value in spec["choices"], name
        assert spec["range"] is None or spec["range"][0] <= value <= spec["range"][1], name
    assert TINY_TRAINING["epochs"] == 1 and TINY_TRAINING["device"] == "cpu"


# Qt members the self-tests use beyond the panels' own table (test_ui_static.API), Qt 5.15:
# QAbstractButton::click() (slot), QWidget::isHidden(), QAbstractItemView::clearSelection() (slot),
# QComboBox::findText().
EXTRA = {"QPushButton": {"click", "isHidden"}, "QListWidget": {"clearSelection"}, "QComboBox": {"findText"}}


def ui_members(path: Path, module: str) -> set:
    """(module, widget, member) for every ``ui.<widget>.<member>`` in the file: ``ui`` is the file's own panel,
    ``train_ui`` / ``segment_ui`` the other module's."""
    owners = {"ui": module, "train_ui": "BackSplitTrain", "segment_ui": "BackSplitSegment"}
    found = re.findall(r"\b(ui|train_ui|segment_ui)\.(\w+)\.(\w+)", (REPO / path).read_text(encoding="utf-8"))
    return {(owners[owner], name, member) for owner, name, member in found}


@pytest.mark.parametrize("module", ["BackSplitSegment", "BackSplitTrain"])
def test_self_tests_use_only_widgets_and_members_the_ui_has(module):
    used = ui_members(Path(module) / f"{module}Lib" / "self_test.py", module)
    assert {owner for owner, _name, _member in used} == {"BackSplitSegment", "BackSplitTrain"}
    problems = []
    for owner, name, member in sorted(used):
        widgets = ui_widgets(owner)
        cls = widgets[name].get("class") if name in widgets else None
        if cls is None:
            problems.append(f"{name} is not in {owner}.ui")
        elif member not in API.get(cls, set()) | EXTRA.get(cls, set()):
            problems.append(f"{owner}.ui {name}.{member}: not a member of {cls}")
    assert not problems, problems
