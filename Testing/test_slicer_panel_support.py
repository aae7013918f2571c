"""Panel plumbing without Qt (there is no Qt here): the timer guard and the parameter-node binding run with fake
timers, widgets and wrappers (said so at each fake); the release policy and the torch rule are pure functions; the
training folders are resolved without the working directory, also after a real scene close (slicer-core)."""

from pathlib import Path

import pytest

from backsplit.runtime.requirements import torch_problem
from BackSplitShared.panel_support import GuiBinding, TickGuard
from BackSplitShared.release import release_problem
from BackSplitTrainLib.paths import default_work_folder, resolve_folder


class FakeTimer:
    """Stands in for qt.QTimer (no Qt here): only what the guard uses."""

    def __init__(self):
        self.active = True

    def stop(self):
        self.active = False


def test_failing_tick_stops_its_timer_restores_the_panel_and_reports_once():
    timer, restored, reports = FakeTimer(), [], []
    guard = TickGuard(timer, lambda: restored.append(True), lambda message, detail: reports.append((message, detail)),
                      "Prediction failed")
    calls = []

    def tick():
        calls.append(1)
        raise KeyError("summary")

    guarded = guard.wrap(tick)
    guarded()
    assert not timer.active and restored == [True]
    assert len(reports) == 1 and reports[0][0] == "Prediction failed: 'summary'" and "KeyError" in reports[0][1]
    ok = guard.wrap(lambda: calls.append(2))        # the guard itself stays usable: a healthy tick runs normally
    ok()
    assert calls == [1, 2] and len(reports) == 1


def test_guard_reports_even_when_restoring_fails_and_is_not_reentered():
    timer, reports = FakeTimer(), []

    def restore():
        raise RuntimeError("widget gone")

    guard = TickGuard(timer, restore, lambda message, detail: reports.append(message))
    inner = []

    def tick():          # a tick that opens a dialog runs Qt's event loop: the timer may call it again meanwhile
        inner.append(1)
        guarded()
        raise ValueError("boom")

    guarded = guard.wrap(tick)
    guarded()
    assert inner == [1] and not timer.active and len(reports) == 1 and "boom" in reports[0]


class FakeWrapper:
    """Stands in for a parameterNodeWrapper instance (slicer.parameterNodeWrapper needs Qt): connectGui returns a
    tag like 5.10+ or None like 5.8, disconnectGui(tag) removes that connection."""

    def __init__(self, node, returns_tag=True):
        self.parameterNode = node
        self.returns_tag = returns_tag
        self._nextParameterGUIsTag = 0
        self.connections = {}

    def connectGui(self, gui):
        tag = self._nextParameterGUIsTag
        self._nextParameterGUIsTag += 1
        self.connections[tag] = gui
        return tag if self.returns_tag else None

    def disconnectGui(self, tag):
        self.connections.pop(tag, None)


@pytest.mark.parametrize("returns_tag", [True, False])
def test_gui_is_connected_once_per_parameter_node(returns_tag):
    node = object()
    binding = GuiBinding("ui")
    first = FakeWrapper(node, returns_tag)
    assert binding.bind(first)
    for _ in range(5):                                  # module entered again and again: new wrapper, same node
        assert not binding.bind(FakeWrapper(node, returns_tag))
    assert len(first.connections) == 1 and binding.parameters is first
    binding.unbind()                                    # scene close
    assert first.connections == {}
    second = FakeWrapper(object(), returns_tag)
    assert binding.bind(second) and len(second.connections) == 1
    third = FakeWrapper(object(), returns_tag)
    assert binding.bind(third) and second.connections == {} and len(third.connections) == 1


def test_release_policy():
    assert "5.10 or later" in release_problem((5, 8)) and "5.8" in release_problem((5, 8, 1))
    assert release_problem((5, 10)) is None and release_problem((5, 12, 3)) is None and release_problem((6, 0)) is None
    assert "Python 3.10" in release_problem((5, 10), (3, 9))
    assert release_problem(()) is not None


def test_torch_rule_of_nnunet():
    assert torch_problem(None) is None
    for good in ("2.1.2", "2.8.0+cu128", "2.10.1", "2.14.1"):
        assert torch_problem(good) is None, good
    for bad in ("2.9.0", "2.9.1+cpu", "2.0.1", "1.13.1"):
        assert "torch>=2.1.2,!=2.9.*" in torch_problem(bad), bad
    assert "unreadable" in torch_problem("not a version")


def test_training_folders_never_use_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    home = tmp_path / "home"
    default = default_work_folder(home)
    assert default == home / "BackSplit" / "work"
    for unset in (None, "", ".", Path("."), " "):
        assert resolve_folder(unset, default, home) == default
    assert resolve_folder(Path("."), None, home) is None
    assert resolve_folder("runs/a", default, home) == home / "runs" / "a"
    assert resolve_folder("~/w", default, home) == home / "w"
    assert resolve_folder(tmp_path / "abs", default, home) == tmp_path / "abs"
    assert all(resolve_folder(v, default, home).is_absolute() for v in (".", "x", "~", str(tmp_path)))


def test_scene_close_resets_the_parameter_node_and_the_default_comes_back(slicer_scene, tmp_path):
    """What Slicer does to a module's singleton parameter node on scene close (vtkMRMLScene::Clear(0) ->
    ResetNodes), on a real scene: the stored work folder is gone, so the panel must apply its default again."""
    slicer, scene = slicer_scene.slicer, slicer_scene.scene
    node = slicer.vtkMRMLScriptedModuleNode()
    node.SetSingletonTag("BackSplitTrain")
    node.SetParameter("workFolder", str(tmp_path / "mine"))
    scene.AddNode(node)
    scene.Clear(0)
    same = scene.GetSingletonNode("BackSplitTrain", "vtkMRMLScriptedModuleNode")
    assert same is not None and same.GetParameter("workFolder") in (None, "")
    stored = same.GetParameter("workFolder") or "."          # what the wrapper's Path serializer then reads: "."
    home = tmp_path / "home"
    assert resolve_folder(stored, default_work_folder(home), home) == home / "BackSplit" / "work"


def test_install_plan_passes_nnunets_torch_rule(tmp_path):
    from BackSplitShared.install_run import confirmation_text, install_plan

    class PyTorchUtilsLogic:      # the PyTorch extension's logic (a Slicer module; not installable here)
        @staticmethod
        def _getPipInstallArguments(forceComputationBackend=None, torchVersionRequirement=None, tv=None):
            return ["install", "torch" + (torchVersionRequirement or ""), "torchvision"]

    steps = install_plan(["torch", "nnunetv2"], "PythonSlicer", PyTorchUtilsLogic(), light_the_torch_present=False)
    assert [s.command[:3] for s in steps[:3]] == [["PythonSlicer", "-m", "pip"], ["PythonSlicer", "-m",
                                                                                 "light_the_torch"],
                                                 ["PythonSlicer", "-m", "pip"]]
    assert steps[1].command[3:5] == ["install", "torch>=2.1.2,!=2.9.*"]
    assert steps[2].command[-2:] == ["--no-deps", "nnunetv2>=2.8,<2.9"]
    dependencies = steps[3].command()          # built from the installed nnunetv2's metadata (here: the venv's)
    assert dependencies[:4] == ["PythonSlicer", "-m", "pip", "install"]
    assert not [r for r in dependencies[4:] if r.lower().startswith(("torch", "simpleitk"))]
    assert install_plan([], "p") == [] and "is not installed" in confirmation_text(["nnunetv2"])


def test_install_run_moves_on_step_by_step_and_reports_failures():
    import sys
    import time

    from BackSplitShared.install_run import InstallRun, InstallStep

    ok = InstallRun([InstallStep("one", [sys.executable, "-c", "print('Collecting one')"]),
                     InstallStep("two", lambda: [sys.executable, "-c", "import time; time.sleep(0.3); print('done')"])])
    seen = []
    while True:
        status = ok.step()
        seen.append(status.message)
        if status.done:
            break
        time.sleep(0.02)
    assert status.state == "finished" and any("step 2 of 2" in m for m in seen)
    failing = InstallRun([InstallStep("bad", [sys.executable, "-c", "print('ERROR: no matching distribution'); "
                                                                   "raise SystemExit(1)"])])
    status = failing.step()
    while not status.done:
        time.sleep(0.02)
        status = failing.step()
    assert status.state == "failed" and "no matching distribution" in status.message and "bad" in status.message
    slow = InstallRun([InstallStep("slow", [sys.executable, "-c", "import time; time.sleep(60)"])])
    slow.step()
    slow.cancel()
    assert slow.step().state == "cancelled"


def test_dependency_gate_asks_first_then_installs_then_continues():
    """The panel side with a fake timer and fake dialogs (Qt is not available here), real child processes."""
    import sys
    import time

    from BackSplitShared.install_run import DependencyGate, InstallStep

    timer, shown, reports, started = FakeTimer(), [], [], []
    timer.start = lambda: setattr(timer, "active", True)
    asked = []
    steps = [InstallStep("nnU-Net", [sys.executable, "-c", "print('Successfully installed nnunetv2')"], "nnunetv2")]
    gate = DependencyGate(timer, lambda text, busy: shown.append((text, busy)),
                          lambda text: asked.append(text) or False, reports.append, plan=lambda: list(steps))
    assert not gate.run(lambda: started.append(1)) and not started and "nnU-Net v2" in asked[0]
    gate.confirm = lambda text: True
    assert gate.run(lambda: started.append(1)) and timer.active and shown[-1][1] is True
    while timer.active:
        gate.tick()
        time.sleep(0.02)
    assert started == [1] and shown[-1] == ("Installed.", False) and reports == []
    gate.plan = lambda: []                                  # all installed: runs at once, asks nothing
    asked.clear()
    assert gate.run(lambda: started.append(2)) and started == [1, 2] and not asked

    def broken_plan():
        raise RuntimeError("PyTorch 2.9.0 is installed, but nnU-Net 2.8 needs torch>=2.1.2,!=2.9.*")

    gate.plan = broken_plan
    assert not gate.run(lambda: started.append(3)) and "2.9.0" in reports[-1] and started == [1, 2]
