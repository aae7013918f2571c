"""One rule for every button that starts work (issue 20, K1): the panel is idle again on every way out and each
failure is reported exactly once. Uses slicer-core's real ``slicer.util`` (``tryWithErrorDisplay``, ``errorDisplay``:
with no main window the real ``errorDisplay`` only logs at ERROR level, so one ERROR record is one dialog in the
application) and the real ``DependencyGate`` / ``InstallRun`` with real child processes.

Stand-ins, because slicer-core has no Qt and no application object:
- ``slicer.app``: ``testingEnabled()`` (``Base/QTCore/qSlicerCoreCommandOptions.h`` v5.10.0:58, and the decorator
  ``qSlicerBaseQTCorePythonQtDecorators.h`` v5.10.0:54), ``applicationName``,
  ``topLevelWidgets()`` (read by ``slicer.util.lookupTopLevelWidget``, ``Base/Python/slicer/util.py`` v5.10.0:220-232,
  v5.12.3:391-403; none here: no main window), ``setOverrideCursor``/``restoreOverrideCursor`` (used by
  ``tryWithErrorDisplay(waitCursor=True)``, util.py v5.10.0:3368-3409, v5.12.3:3548-3589) and ``connect`` (the
  sections' ``aboutToQuit()`` connection);
- ``qt``: only the constants ``slicer.util`` reads (``QMessageBox.Ok/Cancel/Critical/Question``, ``Qt.WaitCursor``;
  Qt 5.15 ``qmessagebox.h`` / ``qnamespace.h``);
- widgets, signals and ``QTimer`` (``Widget``, ``Signal``, ``Timer`` below): attributes and ``connect``/``emit`` only;
- the prediction child and its import (``FakePrediction``, ``FakeFinish``): they need PyTorch and downloaded weights.
The buttons of the two module files (Export in BackSplitSegment.py, Start / Check devices / Show learned context in
BackSplitTrain.py) import qt and Slicer's module classes, so they are covered by the static rule at the end (the
same ``PanelAction`` calls as the sections tested here).
"""

from __future__ import annotations

import ast
import logging
import sys
import time
import types
from pathlib import Path
from types import SimpleNamespace as NS

import pytest

from backsplit.errors import CancelledError, InputError

slicer = pytest.importorskip("slicer")
REPO = Path(__file__).resolve().parent.parent


class Signal:
    """A Qt signal stand-in: ``connect(slot)``, ``emit(*args)`` calls the slots in order."""

    def __init__(self):
        self.slots = []

    def connect(self, slot):
        self.slots.append(slot)

    def emit(self, *args):
        for slot in list(self.slots):
            slot(*args)


SIGNALS = {"clicked", "toggled", "timeout", "currentPathChanged", "currentNodeChanged", "currentIndexChanged",
           "activated"}
DEFAULTS = {"enabled": True, "text": "", "currentPath": "", "checked": False, "currentIndex": 0, "currentText": "auto",
            "value": 0, "count": 0}


class Widget:
    """Any widget of a ``childWidgetVariables`` namespace: unknown attributes are child widgets, signals or the
    defaults above; calling a method does nothing and returns None (``currentNode()`` is None)."""

    def __init__(self):
        object.__setattr__(self, "_children", {})

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        children = object.__getattribute__(self, "_children")
        if name not in children:
            children[name] = Signal() if name in SIGNALS else DEFAULTS.get(name, Widget()) \
                if name in DEFAULTS else Widget()
        return children[name]

    def __setattr__(self, name, value):
        self._children[name] = value

    def __call__(self, *args, **kwargs):
        return None


class Timer:
    """``qt.QTimer`` stand-in: ``start``/``stop``/``isActive``/``setInterval`` and ``timeout``; ``run()`` ticks
    while active (a real child may need a moment: the loop sleeps between ticks, bounded by ``limit``)."""

    def __init__(self):
        self.active, self.interval, self.timeout = False, 0, Signal()

    def start(self):
        self.active = True

    def stop(self):
        self.active = False

    def isActive(self):
        return self.active

    def setInterval(self, ms):
        self.interval = ms

    def run(self, limit: int = 3000):
        while self.active and limit:
            self.timeout.emit()
            time.sleep(0.01)
            limit -= 1


@pytest.fixture
def gui(monkeypatch, caplog):
    import slicer.util

    qt = types.ModuleType("qt")
    qt.QMessageBox = NS(Ok=0x00000400, Cancel=0x00400000, Yes=0x00004000, No=0x00010000, Critical=3, Question=4)
    qt.Qt = NS(WaitCursor=3)
    monkeypatch.setitem(sys.modules, "qt", qt)
    cursor = []
    app = NS(testingEnabled=lambda: False, applicationName="Slicer", topLevelWidgets=lambda: [],
             setOverrideCursor=cursor.append, restoreOverrideCursor=lambda: cursor.pop(), connect=lambda *a: None)
    monkeypatch.setattr(slicer, "app", app, raising=False)
    caplog.set_level(logging.INFO)
    return NS(util=slicer.util, app=app, cursor=cursor,
              dialogs=lambda: [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR])


def idle(start_button, cancel_button) -> bool:
    return start_button.enabled is True and cancel_button.enabled is False


# ---- Slicer's behaviour, pinned ------------------------------------------------------------------------------------
def test_slicer_tryWithErrorDisplay_shows_and_then_reraises(gui):
    """Why the panels no longer use it: it shows its dialog and re-raises (util.py v5.10.0:3409, v5.12.3:3589)."""
    with pytest.raises(ValueError):
        with gui.util.tryWithErrorDisplay("Could not start."):
            raise ValueError("no model folder")
    assert len(gui.dialogs()) == 1


def test_testing_mode_answers_the_install_question_without_asking(gui):
    """N11: in testing mode ``confirmOkCancelDisplay`` shows nothing; its docstring says it returns True, but it
    returns ``True == qt.QMessageBox.Ok`` (util.py v5.10.0:3081-3093, v5.12.3:3261-3273; ``_messageDisplay``
    v5.10.0:3150-3152), which is False with Qt's value of ``Ok`` (0x400). The installer therefore asks nothing in
    testing mode and says plainly that it does not install there (``DependencyGate``, test below)."""
    gui.app.testingEnabled = lambda: True
    assert gui.util.confirmOkCancelDisplay("Install?") is False


# ---- PanelAction on its own ----------------------------------------------------------------------------------------
def test_panel_action_every_way_out_ends_idle_with_at_most_one_report(gui):
    from BackSplitShared.panel_action import PanelAction

    start, cancel, timer, cleaned, shown = Widget(), Widget(), Timer(), [], []
    action = PanelAction("Could not run", start, cancel, status=shown.append, on_idle=lambda: cleaned.append(1),
                         wait_cursor=True)
    action.click(lambda: True)                                       # work goes on: busy
    assert (start.enabled, cancel.enabled, action.busy) == (False, True, True) and gui.cursor == []
    tick = action.wrap_tick(timer, lambda: action.finish("done"))   # success
    timer.start()
    tick()
    assert idle(start, cancel) and cleaned == [1] and shown == ["done"] and gui.dialogs() == []
    action.click(lambda: 1 / 0)                                      # error in start
    assert idle(start, cancel) and len(gui.dialogs()) == 1 and "Could not run: division by zero" in gui.dialogs()[0]
    action.click(lambda: True)
    timer.start()
    action.wrap_tick(timer, lambda: {}["key"])()                     # error in a tick
    assert idle(start, cancel) and not timer.active and len(gui.dialogs()) == 2 and cleaned == [1, 1, 1]
    action.click(lambda: (_ for _ in ()).throw(CancelledError("the model 'M' was not removed")))   # user's Cancel
    assert idle(start, cancel) and len(gui.dialogs()) == 2 and shown[-1] == "the model 'M' was not removed"
    action.click(lambda: True)
    action.finish("Stopped: the scene was closed.")                  # scene close (or any outside stop)
    action.finish()                                                  # idempotent: clean-up ran once
    assert idle(start, cancel) and cleaned == [1, 1, 1, 1, 1] and shown[-1] == "Stopped: the scene was closed."
    assert gui.cursor == []                                          # the wait cursor is always restored


def test_once_reports_once_and_never_raises_out_of_the_slot(gui):
    from BackSplitShared.panel_action import once

    shown = []
    once("Could not add the case", lambda: (_ for _ in ()).throw(InputError("no segmentation", case="c1")),
         status=shown.append)()
    once("The model was not removed", lambda: (_ for _ in ()).throw(CancelledError("the model 'M' was not removed")),
         status=shown.append)()
    assert len(gui.dialogs()) == 1 and "Could not add the case" in gui.dialogs()[0]   # F8: a Cancel is no error
    assert shown == ["the model 'M' was not removed"]


# ---- Apply (BackSplitSegmentLib.apply_section) ---------------------------------------------------------------------
class FakePrediction:
    """The prediction child (needs PyTorch and weights): running until ``end()``; records how it was cancelled."""

    def __init__(self, fail_poll=False):
        self.running, self.cancelled, self.cancels, self.fail_poll = True, False, [], fail_poll
        self.error = None

    @property
    def output_done(self):
        return not self.running

    def poll_events(self):
        if self.fail_poll:
            raise RuntimeError("display broke")
        return []

    def is_running(self):
        return self.running

    def cancel(self, wait=True, **kwargs):
        self.cancels.append(wait)
        self.cancelled, self.running = True, False


class FakeFinish:
    """``PredictionFinish`` (reads the child's result files): done at once; an outcome unless cancelled."""

    def __init__(self, job, volume, show_auxiliary):
        self.reading = False
        self.outcome = None if job.cancelled else NS(segmentation_node="seg", summary_text="lesion present")

    def step(self):
        return True

    def close(self):
        pass


def make_apply(monkeypatch, start_prediction, plan=()):
    import BackSplitSegmentLib.apply_section as apply_section

    monkeypatch.setattr(apply_section, "PredictionFinish", FakeFinish)
    ui = Widget()
    logic = NS(lastSegmentation=None, startPrediction=start_prediction, setAuxiliaryVisible=lambda visible: None)
    prediction_timer, install_timer = Timer(), Timer()
    section = apply_section.ApplySection(ui, logic, lambda: NS(predictVolume=None), prediction_timer, install_timer)
    gate = section._gate
    gate.plan, gate.confirm = (lambda: list(plan)), (lambda text: True)   # the user's OK (the dialog needs Qt)
    return NS(section=section, ui=ui, gate=gate, prediction_timer=prediction_timer, install_timer=install_timer)


def python_step(code: str):
    from BackSplitShared.install_run import InstallStep

    return InstallStep("x", [sys.executable, "-c", code], "torch")


def test_apply_after_a_start_error_is_usable_again_with_one_dialog(gui, monkeypatch):
    """F1: no model folder chosen (the commonest first click): one dialog, then Apply works again."""
    def start(parameters, extra):
        raise InputError("the model folder '.' is not a BackSplit model")

    apply = make_apply(monkeypatch, start)
    apply.ui.applyButton.clicked.emit(False)
    assert idle(apply.ui.applyButton, apply.ui.cancelApplyButton)
    assert len(gui.dialogs()) == 1 and "Could not apply the model" in gui.dialogs()[0]


def test_apply_success_run_cancel_and_tick_error(gui, monkeypatch):
    jobs = []
    apply = make_apply(monkeypatch, lambda parameters, extra: jobs.append(FakePrediction()) or jobs[-1])
    ui = apply.ui
    ui.applyButton.clicked.emit(False)                                  # success
    assert (ui.applyButton.enabled, ui.cancelApplyButton.enabled) == (False, True)
    jobs[-1].running = False
    apply.prediction_timer.run()
    assert idle(ui.applyButton, ui.cancelApplyButton) and ui.summaryLabel.text == "lesion present"
    ui.applyButton.clicked.emit(False)                                  # the user's Cancel while it runs
    ui.cancelApplyButton.clicked.emit(False)
    assert jobs[-1].cancels == [False]                                  # never waits on the GUI thread
    apply.prediction_timer.run()
    assert idle(ui.applyButton, ui.cancelApplyButton) and ui.summaryLabel.text == "Prediction cancelled."
    jobs.clear()
    apply.section.logic.startPrediction = lambda parameters, extra: jobs.append(FakePrediction(True)) or jobs[-1]
    ui.applyButton.clicked.emit(False)                                  # an error in a tick
    apply.prediction_timer.run()
    assert idle(ui.applyButton, ui.cancelApplyButton) and not apply.prediction_timer.active
    assert len(gui.dialogs()) == 1 and "display broke" in gui.dialogs()[0] and jobs[-1].cancels == [False]
    ui.applyButton.clicked.emit(False)                                  # a scene close stops it from outside
    apply.section.action.finish("Stopped: the scene was closed.")
    assert idle(ui.applyButton, ui.cancelApplyButton) and jobs[-1].cancels == [False]


def test_cancel_during_the_installation_makes_apply_usable_again_without_a_dialog(gui, monkeypatch):
    """F2 with a real child (sleeping 60 s, ended by Cancel without waiting)."""
    apply = make_apply(monkeypatch, lambda parameters, extra: FakePrediction(), [python_step("import time; "
                                                                                            "time.sleep(60)")])
    ui = apply.ui
    ui.applyButton.clicked.emit(False)
    assert apply.gate.busy and apply.install_timer.active and not ui.applyButton.enabled
    apply.install_timer.timeout.emit()                                  # the pip child runs
    ui.cancelApplyButton.clicked.emit(False)
    apply.install_timer.run()
    assert idle(ui.applyButton, ui.cancelApplyButton) and not apply.gate.busy
    assert gui.dialogs() == [] and "cancelled" in ui.summaryLabel.text


def test_failed_installation_one_dialog_and_start_error_after_install_is_no_install_error(gui, monkeypatch):
    """F2 (failed) and F8: "Installation failed" only for a failed installation, once; a start error after a
    successful installation is reported as a start error."""
    apply = make_apply(monkeypatch, lambda parameters, extra: FakePrediction(), [python_step("raise SystemExit(3)")])
    ui = apply.ui
    ui.applyButton.clicked.emit(False)
    apply.install_timer.run()
    assert idle(ui.applyButton, ui.cancelApplyButton)
    assert len(gui.dialogs()) == 1 and "exit code 3" in gui.dialogs()[0]

    def start(parameters, extra):
        raise InputError("the volume has 2 channels; the model takes 1")

    apply.section.logic.startPrediction = start
    apply.gate.plan = lambda: [python_step("pass")]
    ui.applyButton.clicked.emit(False)
    apply.install_timer.run()
    assert idle(ui.applyButton, ui.cancelApplyButton) and len(gui.dialogs()) == 2
    assert gui.dialogs()[1].startswith("Could not apply the model") and "Installation failed" not in gui.dialogs()[1]


# ---- Generate (BackSplitSegmentLib.supports_section) ---------------------------------------------------------------
def make_supports():
    from BackSplitSegmentLib.supports_section import SupportsSection

    ui = Widget()
    section = SupportsSection(ui, NS(cases=[], refresh=lambda: None), Timer(), Timer(), lambda text: text)
    return section, ui


def test_generate_errors_leave_generate_usable_and_report_once(gui):
    section, ui = make_supports()
    ui.supportsGenerateButton.clicked.emit(False)                        # nnU-Net source, no model folder
    assert idle(ui.supportsGenerateButton, ui.supportsCancelButton) and len(gui.dialogs()) == 1
    ui.supportsSourceComboBox.currentIndex = 1                          # TotalSegmentator command, no cases
    ui.supportsGenerateButton.clicked.emit(False)
    assert idle(ui.supportsGenerateButton, ui.supportsCancelButton) and len(gui.dialogs()) == 2
    assert "add cases first" in gui.dialogs()[1]


def test_generate_with_an_nnunet_model_installs_without_blocking_and_cancel_does_not_wait(gui, tmp_path):
    """F6: the first Generate with an nnU-Net model uses the non-blocking installer (the click returns while pip
    runs); F7: Cancel of the organ model ends the child without waiting."""
    section, ui = make_supports()
    section.gate.plan, section.gate.confirm = (lambda: [python_step("import time; time.sleep(60)")]), (lambda t: True)
    ui.supportsModelPathLineEdit.currentPath = str(tmp_path)
    ui.supportsGenerateButton.clicked.emit(False)
    assert section.gate.busy and section.install_timer.active and not ui.supportsGenerateButton.enabled
    ui.supportsCancelButton.clicked.emit(False)
    section.install_timer.run()
    assert idle(ui.supportsGenerateButton, ui.supportsCancelButton) and gui.dialogs() == []
    job = NS(process=FakePrediction(), close=lambda: None)
    section.action.click(lambda: setattr(section, "job", job) or section.timer.start() or True)
    ui.supportsCancelButton.clicked.emit(False)
    assert job.process.cancels == [False]


def test_totalsegmentator_extension_runs_as_a_child_process_not_in_slicer(gui, monkeypatch):
    """F4: the extension's ``process()`` blocked Slicer for the whole run; now only its set-up is checked and the
    model runs in the generation child (progress, Cancel), like the command source. The extension itself is a
    stand-in (``slicer.modules.totalsegmentator`` and a ``TotalSegmentator`` module whose logic must not run)."""
    import importlib.util

    import BackSplitSegmentLib.supports_section as supports_section

    section, ui = make_supports()
    ui.supportsSourceComboBox.currentIndex = 2
    monkeypatch.setattr(slicer, "modules", NS(), raising=False)
    ui.supportsGenerateButton.clicked.emit(False)                        # the extension is not installed
    assert idle(ui.supportsGenerateButton, ui.supportsCancelButton) and len(gui.dialogs()) == 1
    assert "Extensions Manager" in gui.dialogs()[0]

    def never(*args, **kwargs):
        raise AssertionError("the extension's blocking process() ran in Slicer")

    monkeypatch.setattr(slicer, "modules", NS(totalsegmentator=NS()), raising=False)
    monkeypatch.setitem(sys.modules, "TotalSegmentator", NS(TotalSegmentatorLogic=lambda: NS(process=never)))
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: NS() if name == "totalsegmentator" else real_find_spec(name, *a))
    started = []
    job = NS(process=FakePrediction(), close=lambda: None, imported={}, failed={})
    monkeypatch.setattr(supports_section, "start_generation", lambda cases, **kw: started.append(kw) or job)
    monkeypatch.setattr(supports_section, "import_events", lambda job, events: [])
    ui.supportsGenerateButton.clicked.emit(False)
    assert started and started[0]["model_dir"] is None and section.timer.active   # the child runs; Slicer does not
    assert not ui.supportsGenerateButton.enabled and ui.supportsCancelButton.enabled
    ui.supportsCancelButton.clicked.emit(False)
    section.timer.run()
    assert idle(ui.supportsGenerateButton, ui.supportsCancelButton) and job.process.cancels == [False]
    assert len(gui.dialogs()) == 1 and ui.supportsStatusLabel.text.startswith("Cancelled")


def test_generation_import_keeps_the_other_cases_of_a_batch(gui, slicer_scene, tmp_path):
    """F3: a case whose generated file cannot be read is counted as failed; the other case of the same batch of
    events is still imported (real scene, real .seg.nrrd written by slicerio's writer through the engine)."""
    import numpy as np
    from fixtures_slicer import add_segmentation, add_volume

    from backsplit.runtime.progress import ProgressEvent
    from BackSplitSegmentLib.scene_cases import SceneCase
    from BackSplitSegmentLib.supports_scene import GenerationJob, import_events

    cases, block = {}, np.zeros((4, 5, 6), np.uint8)   # (k, j, i)
    block[1:3, 1:3, 1:3] = 1
    for case_id in ("a", "b"):
        volume = add_volume(slicer, np.zeros((4, 5, 6), np.int16), np.eye(4), name=f"CT {case_id}")
        seg = add_segmentation(slicer, slicer_scene.scene, {"tumor": block}, volume, name=f"Seg {case_id}")
        cases[case_id] = SceneCase(case_id, volume, seg)
    from backsplit.io.segfile import write_seg_nrrd
    from BackSplitSegmentLib.scene_nodes import volume_geometry

    write_seg_nrrd(tmp_path / "b.seg.nrrd", volume_geometry(cases["b"].volume), {"kidney": block.astype(bool)})
    (tmp_path / "a.seg.nrrd").write_text("not a segmentation")
    job = GenerationJob(process=None, cases=cases, work_dir=tmp_path / "work")
    events = [ProgressEvent("generate", "", data={"case": c, "status": "done", "file": str(tmp_path / f"{c}.seg.nrrd")})
              for c in ("a", "b")]
    import_events(job, events)
    assert list(job.failed) == ["a"] and list(job.imported) == ["b"]


# ---- Fine-tune (BackSplitSegmentLib.loop_section) ------------------------------------------------------------------
def make_loop(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    from BackSplitSegmentLib.loop_section import LoopSection

    ui = Widget()
    ui.loopModelsDir.currentPath = str(tmp_path / "models")
    section = LoopSection(ui, NS(lastSegmentation=None), Timer(), NS(), Timer())
    return section, ui


def test_fine_tune_without_a_model_and_install_cancel(gui, monkeypatch, tmp_path):
    """F6: Fine-tune goes through the non-blocking installer; every way out leaves it usable."""
    section, ui = make_loop(monkeypatch, tmp_path)
    ui.loopFineTuneButton.clicked.emit(False)                           # no model in the list
    assert idle(ui.loopFineTuneButton, ui.loopCancelButton) and len(gui.dialogs()) == 1
    section._gate.plan, section._gate.confirm = (lambda: [python_step("import time; time.sleep(60)")]), \
        (lambda t: True)
    section._current = lambda: tmp_path                                 # a chosen (trusted) model
    monkeypatch.setattr("BackSplitSegmentLib.loop_section.trust_warning", lambda folder: None)
    ui.loopFineTuneButton.clicked.emit(False)
    assert section._gate.busy and not ui.loopFineTuneButton.enabled     # returned while pip runs
    ui.loopCancelButton.clicked.emit(False)
    section._installTimer.run()
    assert idle(ui.loopFineTuneButton, ui.loopCancelButton) and len(gui.dialogs()) == 1


def test_model_list_is_read_again_only_when_the_folder_changed(tmp_path):
    """N9: keystrokes and volume changes do not re-read every model; a new model folder does."""
    from BackSplitSegmentLib.loop_section import ModelChoices

    reads = []
    choices = ModelChoices(read=lambda folder, n: reads.append(folder) or [("m", folder / "m")])
    (tmp_path / "models").mkdir()
    for _ in range(10):
        choices.get(tmp_path / "models", 1)
    assert len(reads) == 1
    (tmp_path / "models" / "new").mkdir()
    choices.get(tmp_path / "models", 1)
    choices.get(tmp_path / "models", 1, force=True)
    assert len(reads) == 3


# ---- the rule, for every button and timer of both panels -----------------------------------------------------------
PANEL_FILES = sorted([*REPO.glob("BackSplitSegment/*.py"), *REPO.glob("BackSplitSegment/BackSplitSegmentLib/*.py"),
                      *REPO.glob("BackSplitTrain/*.py"), *REPO.glob("BackSplitTrain/BackSplitTrainLib/*.py"),
                      *REPO.glob("BackSplitShared/*.py")])


def _connects(tree, signal):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "connect" \
                and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == signal:
            yield node


def _call_name(node) -> str:
    if isinstance(node, ast.Call):
        return node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
    return ""


@pytest.mark.parametrize("path", PANEL_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_button_and_timer_goes_through_a_panel_action(path):
    """Every ``clicked`` goes to ``PanelAction.slot`` or ``once``, every ``timeout`` to ``wrap_tick``; no panel uses
    ``tryWithErrorDisplay`` (it re-raises) or the old ``TickGuard``; no Cancel waits outside ``cleanup``."""
    source = path.read_text()
    tree = ast.parse(source)
    for node in _connects(tree, "clicked"):
        assert _call_name(node.args[0]) in ("slot", "once"), (path.name, ast.unparse(node))
    for node in _connects(tree, "timeout"):
        assert _call_name(node.args[0]) == "wrap_tick", (path.name, ast.unparse(node))
    if path.name not in ("panel_action.py", "panel_support.py"):   # where they are explained / defined
        assert "tryWithErrorDisplay" not in source and "TickGuard(" not in source, path.name
    for function in ast.walk(tree):
        if isinstance(function, ast.FunctionDef) and function.name != "cleanup":
            for call in ast.walk(function):
                if _call_name(call) == "cancel":
                    waits = [k for k in call.keywords if k.arg == "wait"]
                    assert not waits or getattr(waits[0].value, "value", None) is not True, \
                        (path.name, function.name, ast.unparse(call))


# ---- Cancel never waits on the GUI thread (F7) ---------------------------------------------------------------------
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_cancel_returns_at_once_and_sees_an_exited_child_without_psutil_or_proc(monkeypatch):
    """F7: ``cancel(wait=False)`` returns while a child that ignores SIGTERM still runs; and where neither psutil nor
    /proc can tell a zombie (macOS in Slicer: simulated by making ``_is_zombie`` say no and psutil find nothing), the
    killer still ends as soon as the child exited (``Popen.poll`` reaps it) instead of waiting the grace period."""
    from backsplit.runtime import childprocess

    stubborn = childprocess.ChildProcess([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
                                          "signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"]).start()
    while not any(e.message == "ready" for e in stubborn.poll_events()):
        time.sleep(0.02)
    stubborn.cancel(grace_seconds=0.5, wait=False)
    assert stubborn.is_running()                 # the caller (the GUI thread) did not wait for the end
    stubborn.wait(timeout=30)
    monkeypatch.setattr(childprocess, "_is_zombie", lambda pid: False)
    monkeypatch.setattr(childprocess, "_descendants", lambda pid: [])
    child = childprocess.ChildProcess([sys.executable, "-c", "import time; time.sleep(60)"]).start()
    child.cancel(grace_seconds=60, wait=False)
    child._killer.join(timeout=30)
    assert not child._killer.is_alive() and not child.is_running()


def test_a_scene_close_ends_the_work_that_uses_scene_nodes():
    """The scene-close way out (Segment): Export, Apply and Generate are finished (their ``on_idle`` ends the child
    without waiting); the path itself is exercised above (``action.finish`` in the Apply test)."""
    tree = ast.parse((REPO / "BackSplitSegment" / "BackSplitSegment.py").read_text())
    handler = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "onSceneStartClose")
    body = ast.unparse(handler)
    assert ".finish(" in body and all(a in body for a in ("_exportAction", "_applySection.action",
                                                           "_supportsSection.action"))


def test_compatibility_document_corrections():
    """D1-D6 of the 2026-12-06 review: the wrong claims are gone, the corrected ones (with their source lines,
    checked in the Slicer/Slicer mirror at v5.10.0 and v5.12.3) are there. D7 (README development mode) was already
    corrected by the regrouping: the README adds the two module folders only."""
    text = (REPO / "docs" / "SLICER_COMPATIBILITY.md").read_text()
    flat = " ".join(text.split())
    wrong = ["`executePythonModule(..., blocking=False)` (`util.py` v5.12.3:4064-4111)",   # D1
             "(v5.10.0:1223-1226)", "(1227-1230)",                                         # D2
             "when undo is enabled in Slicer's settings",                                  # D3
             "Not checked against the source: whether PythonQt",                          # D4
             "the same skip list for Slicer-provided packages and the same torch rule"]    # D5
    assert not [w for w in wrong if w in flat]
    right = ["`launchConsoleProcess` (`util.py` v5.12.3:4059-4152", "`executePythonModule` (v5.12.3:4272)",
             "(v5.10.0:1226-1229)", "(1230-1233)", "no setting", "PythonQt does **not** let Python threads run",
             "torch, torchvision, SimpleITK and requests", "imagecodecs<=2026.3.6",
             "shows its dialog **and then re-raises** (the bare `raise` at v5.10.0:3409, v5.12.3:3589)"]
    assert not [r for r in right if r not in flat]
    readme = " ".join((REPO / "README.md").read_text().split())
    assert "add the two module folders `SlicerBackSplit/BackSplitSegment` and `SlicerBackSplit/BackSplitTrain`" \
        in readme
