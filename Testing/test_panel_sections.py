"""The Generate and Fine-tune sections under the one rule (issue 20: F3, F4, F6, F7, N9): every way out leaves the
section usable; the organ model (also the TotalSegmentator extension's) runs in a child process; PyTorch and
nnU-Net are installed without blocking; Cancel never waits on the GUI thread. Stand-ins: ``fixtures_panels.py``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace as NS

import pytest
from fixtures_panels import FakePrediction, Timer, Widget, idle, python_step

slicer = pytest.importorskip("slicer")
REPO = Path(__file__).resolve().parent.parent


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
    from BackSplitSegmentLib.generation_run import GenerationJob

    job = GenerationJob(process=FakePrediction(), cases={}, work_dir=tmp_path / "work")
    section.action.click(lambda: setattr(section, "job", job) or section.timer.start() or True)
    ui.supportsCancelButton.clicked.emit(False)
    assert job.process.cancels == [False]


def test_totalsegmentator_extension_runs_as_a_child_process_not_in_slicer(gui, monkeypatch, tmp_path):
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
    from BackSplitSegmentLib.generation_run import GenerationJob

    job = GenerationJob(process=FakePrediction(), cases={}, work_dir=tmp_path / "work")
    monkeypatch.setattr(supports_section, "start_generation", lambda cases, **kw: started.append(kw) or job)
    monkeypatch.setattr(supports_section, "queue_events", lambda job, events: [])
    monkeypatch.setattr(supports_section, "import_step", lambda job: [])
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
    from BackSplitSegmentLib.generation_run import GenerationJob, import_events
    from BackSplitSegmentLib.scene_cases import SceneCase

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


# ---- Suggest and Add to dataset: scene cases read in timer steps, the work in a child (N2) -------------------------
def scene_case(slicer_scene, name="CT"):
    import numpy as np
    from fixtures_slicer import add_segmentation, add_volume
    from test_scene_cases import masks_for

    from BackSplitSegmentLib.scene_cases import SceneCase

    shape = (6, 7, 8)
    volume = add_volume(slicer, np.full(shape, 5, np.int16), np.eye(4), name)
    node = add_segmentation(slicer, slicer_scene.scene, masks_for(shape), volume, f"{name} segmentation")
    return SceneCase(name, volume, node)


def test_suggest_every_way_out_leaves_it_usable(gui, slicer_scene):
    """Success (the table's report from the child), the user's Cancel (the section's one Cancel button), a scene
    close (``suggestAction.finish``, what ``onSceneStartClose`` calls) and an error (no target): Suggest is usable
    again each time, the timer stopped, the child asked to stop without waiting."""
    from BackSplitSegmentLib.supports_section import SupportsSection

    ui = Widget()
    cases = [scene_case(slicer_scene, "a"), scene_case(slicer_scene, "b")]
    section = SupportsSection(ui, NS(cases=cases, refresh=lambda: None), Timer(), Timer(), lambda text: text)
    ui.supportsSuggestButton.clicked.emit(False)                         # no target typed: one dialog
    assert ui.supportsSuggestButton.enabled and not section.suggestAction.busy and len(gui.dialogs()) == 1
    ui.supportsTargetLineEdit.text, ui.supportsDistanceSpinBox.value = "Lesion", 20.0
    ui.supportsSuggestButton.clicked.emit(False)
    assert not ui.supportsSuggestButton.enabled and ui.supportsCancelButton.enabled and section.suggestTimer.active
    section.suggestTimer.run()
    assert ui.supportsSuggestButton.enabled and not section.suggestTimer.active and section.suggestJob is None
    assert section.report.target_cases == 2 and [c.name for c in section.report.ranked] == ["Organ"]
    assert not ui.supportsCancelButton.enabled
    ui.supportsSuggestButton.clicked.emit(False)                         # the user's Cancel
    section.suggestTimer.timeout.emit()
    ui.supportsCancelButton.clicked.emit(False)
    section.suggestTimer.run()
    assert ui.supportsSuggestButton.enabled and ui.supportsStatusLabel.text == "Ranking cancelled."
    ui.supportsSuggestButton.clicked.emit(False)                         # a scene close
    section.suggestTimer.timeout.emit()
    job = section.suggestJob
    section.suggestAction.finish("Stopped: the scene was closed.")
    assert ui.supportsSuggestButton.enabled and not section.suggestTimer.active and section.suggestJob is None
    assert job.handover.child.wait(timeout=60) == 130 and len(gui.dialogs()) == 1


def test_add_to_dataset_every_way_out_leaves_it_usable(gui, slicer_scene, monkeypatch, tmp_path):
    """Loop *Add*: success (the result text), an error found by the child (a segment the dataset does not know:
    one dialog), the user's Cancel and a scene close (``addAction.finish``): the Add button is usable again each
    time and the dataset changes only on success."""
    from backsplit.datasets.export import ExportRequest, export_dataset

    section, ui = make_loop(monkeypatch, tmp_path)
    exported = export_dataset([scene_case(slicer_scene, "one").source()],
                              ExportRequest(tmp_path / "raw", 540, "Add", ["lesion"], ["organ"]))
    case = scene_case(slicer_scene, "two")
    ui.loopDatasetPath.currentPath, ui.loopNewIdCheckBox.checked = str(exported.dataset_dir), True
    ui.predictVolume.currentNode, ui.loopSegmentation.currentNode = (lambda: case.volume), (lambda: case.segmentation)
    ui.loopAddButton.clicked.emit(False)
    assert not ui.loopAddButton.enabled and ui.loopCancelButton.enabled
    section._addTimer.run()
    assert ui.loopAddButton.enabled and not ui.loopCancelButton.enabled and "version 2" in ui.loopStatusLabel.text
    for way_out in ("cancel", "scene close"):
        ui.loopAddButton.clicked.emit(False)
        section._addTimer.timeout.emit()
        if way_out == "cancel":
            ui.loopCancelButton.clicked.emit(False)
            section._addTimer.run()
            assert ui.loopStatusLabel.text == "Cancelled; the dataset is unchanged."
        else:
            job = section._adding
            section.addAction.finish("Stopped: the scene was closed.")
            assert job.handover.child.wait(timeout=60) == 130
        assert ui.loopAddButton.enabled and not section._addTimer.active and section._adding is None
    case.segmentation.GetSegmentation().AddEmptySegment("lesions", "lesions")
    ui.loopAddButton.clicked.emit(False)
    section._addTimer.run()
    assert ui.loopAddButton.enabled and len(gui.dialogs()) == 1 and "lesions" in gui.dialogs()[0]
    import json

    meta = json.loads((exported.dataset_dir / "dataset.json").read_text(encoding="utf-8"))
    assert meta["backsplit"]["version"] == 2 and meta["numTraining"] == 2


def test_suggest_with_an_unusable_temporary_folder_or_a_killed_child_stays_usable(gui, slicer_scene, monkeypatch,
                                                                                  tmp_path):
    """Two more ways out of a hand-over job: the temporary folder cannot be made (TMPDIR names a file: a real
    OSError, as for a full or read-only disk), and the child killed from outside (a real SIGKILL). Each time one
    dialog that names the folder or says the worker ended, Suggest usable again, no hand-over folder left."""
    import os
    import signal
    import tempfile

    from BackSplitSegmentLib.supports_section import SupportsSection

    ui = Widget()
    cases = [scene_case(slicer_scene, "a"), scene_case(slicer_scene, "b")]
    section = SupportsSection(ui, NS(cases=cases, refresh=lambda: None), Timer(), Timer(), lambda text: text)
    ui.supportsTargetLineEdit.text = "Lesion"
    not_a_folder = tmp_path / "not a folder"
    not_a_folder.write_text("", encoding="utf-8")
    monkeypatch.setattr(tempfile, "tempdir", str(not_a_folder))
    ui.supportsSuggestButton.clicked.emit(False)
    section.suggestTimer.run()
    assert ui.supportsSuggestButton.enabled and not section.suggestTimer.active and section.suggestJob is None
    assert len(gui.dialogs()) == 1 and str(not_a_folder) in gui.dialogs()[0] and "TMPDIR" in gui.dialogs()[0]
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    ui.supportsSuggestButton.clicked.emit(False)
    section.suggestTimer.timeout.emit()
    job = section.suggestJob
    os.kill(job.handover.child.pid, signal.SIGKILL)
    section.suggestTimer.run()
    assert ui.supportsSuggestButton.enabled and not section.suggestTimer.active and section.suggestJob is None
    assert len(gui.dialogs()) == 2 and ("exit" in gui.dialogs()[1].lower() or "signal" in gui.dialogs()[1].lower())
    assert not job.handover.root.exists() and not list(tmp_path.glob("backsplit-handover-*"))


def test_generate_with_an_unusable_temporary_folder_says_where_and_how_to_fix(gui, slicer_scene, monkeypatch,
                                                                               tmp_path):
    """The organ model's inputs cannot be written (TMPDIR names a file: a real OSError): one dialog naming the
    case, the folder and the fix; Generate usable again."""
    import tempfile

    ui = Widget()
    from BackSplitSegmentLib.supports_section import SupportsSection

    section = SupportsSection(ui, NS(cases=[scene_case(slicer_scene, "a")], refresh=lambda: None), Timer(), Timer(),
                              lambda text: text)
    not_a_folder = tmp_path / "not a folder"
    not_a_folder.write_text("", encoding="utf-8")
    monkeypatch.setattr(tempfile, "tempdir", str(not_a_folder))
    ui.supportsSourceComboBox.currentIndex = 1                          # the TotalSegmentator command
    ui.supportsGenerateButton.clicked.emit(False)
    assert idle(ui.supportsGenerateButton, ui.supportsCancelButton) and section.job is None
    assert len(gui.dialogs()) == 1 and "case 'a'" in gui.dialogs()[0] and str(not_a_folder) in gui.dialogs()[0]
    assert "TMPDIR" in gui.dialogs()[0]


def test_module_cleanup_cleans_up_every_section():
    """Slicer calls the widget's ``cleanup()`` on *Reload* and when the module is unloaded
    (``slicer.util.reloadScriptedModule``, ``Base/Python/slicer/util.py`` v5.10.0:1441-1446), not only at
    ``aboutToQuit``: every section that ``setup`` builds and that has a ``cleanup`` (timers, child processes,
    temporary folders) is cleaned up there too. Read from the source (building the widget needs Qt)."""
    import ast
    import importlib

    tree = ast.parse((REPO / "BackSplitSegment" / "BackSplitSegment.py").read_text(encoding="utf-8"))
    widget = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "BackSplitSegmentWidget")
    methods = {f.name: f for f in widget.body if isinstance(f, ast.FunctionDef)}
    built = {t.attr: n.value.func.id for n in ast.walk(methods["setup"]) if isinstance(n, ast.Assign)
             for t in n.targets if isinstance(t, ast.Attribute) and isinstance(n.value, ast.Call)
             and isinstance(n.value.func, ast.Name) and n.value.func.id.endswith("Section")}
    cleaned = {n.func.value.attr for n in ast.walk(methods["cleanup"]) if isinstance(n, ast.Call)
               and isinstance(n.func, ast.Attribute) and n.func.attr == "cleanup"
               and isinstance(n.func.value, ast.Attribute)}
    modules = {"SupportsSection": "supports_section", "ApplySection": "apply_section", "LoopSection": "loop_section"}
    assert set(built.values()) == set(modules), built
    with_cleanup = {attr for attr, cls in built.items()
                    if hasattr(getattr(importlib.import_module(f"BackSplitSegmentLib.{modules[cls]}"), cls), "cleanup")}
    assert with_cleanup == set(built) and with_cleanup <= cleaned, with_cleanup - cleaned


def test_a_killed_organ_model_child_is_reported_not_summed_up_as_success(gui, slicer_scene, monkeypatch, tmp_path):
    """The Generate child killed from outside (a real SIGKILL to its process group, as the out-of-memory killer
    does to a large model): the status says the worker was killed, not "0 case(s) got generated segments; 0
    failed"; Generate is usable again and the temporary folder is gone. The organ model is the stand-in
    TotalSegmentator of ``fixtures_supports.py`` (no weights can be downloaded here)."""
    import os
    import signal
    import tempfile

    from fixtures_supports import write_standin

    from BackSplitSegmentLib.supports_section import SupportsSection

    monkeypatch.setenv("PATH", f"{write_standin(tmp_path / 'bin').parent}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))   # to see what is left there
    ui = Widget()
    section = SupportsSection(ui, NS(cases=[scene_case(slicer_scene, "a")], refresh=lambda: None), Timer(), Timer(),
                              lambda text: text)
    ui.supportsSourceComboBox.currentIndex = 1                          # the TotalSegmentator command
    ui.supportsGenerateButton.clicked.emit(False)
    job = section.job
    section.timer.timeout.emit()                                        # the first tick starts the child
    os.killpg(os.getpgid(job.process.pid), signal.SIGKILL)
    section.timer.run()
    assert idle(ui.supportsGenerateButton, ui.supportsCancelButton) and section.job is None
    assert "SIGKILL" in ui.supportsStatusLabel.text and "got generated segments" not in ui.supportsStatusLabel.text
    assert not job.work_dir.exists() and not list((tmp_path / "tmp").iterdir())   # nor its request file


def test_a_fine_tune_child_that_ends_without_a_model_is_reported(gui, monkeypatch, tmp_path):
    """The fine-tuning child killed from outside (a real SIGKILL to its process group, as the out-of-memory killer
    does) or cancelled: Fine-tune usable again, and the panel says what happened (one dialog for the killed child,
    a status line for the user's Cancel) instead of keeping the last progress line or "Cancelling..."."""
    import os
    import signal

    from backsplit.training.options import TrainOptions
    from backsplit.training.process import TrainingProcess

    section, ui = make_loop(monkeypatch, tmp_path)

    def start():   # what _startFineTune does once the request is checked: a real training child and the timer
        section._training = TrainingProcess(TrainOptions(tmp_path, tmp_path / "work")).start()
        section._timer.start()
        return True

    section.action.click(start)
    os.killpg(os.getpgid(section._training.pid), signal.SIGKILL)
    section._timer.run()
    assert idle(ui.loopFineTuneButton, ui.loopCancelButton) and section._training is None
    assert len(gui.dialogs()) == 1 and "SIGKILL" in gui.dialogs()[0]
    section.action.click(start)
    ui.loopCancelButton.clicked.emit(False)
    section._timer.run()
    assert idle(ui.loopFineTuneButton, ui.loopCancelButton) and len(gui.dialogs()) == 1
    assert "cancelled" in ui.loopStatusLabel.text.lower()


def test_a_prediction_with_a_work_folder_leaves_no_request_file_in_the_temporary_folder(monkeypatch, tmp_path):
    """Each Apply wrote its request as ``backsplit-predict-*.json`` into the system's temporary folder and nothing
    removed it; with the panel's work folder the request lies there and goes with it (real object; not started)."""
    import tempfile

    from backsplit.inference.process import PredictionProcess
    from backsplit.inference.worker import PredictionRequest

    (tmp_path / "tmp").mkdir()
    (tmp_path / "work").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    job = PredictionProcess(PredictionRequest(str(tmp_path / "model"), [], str(tmp_path / "out")),
                            work_dir=tmp_path / "work")
    assert job.request_file.parent == tmp_path / "work" and not list((tmp_path / "tmp").iterdir())
