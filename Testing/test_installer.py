"""One non-blocking installer for the whole extension (issue 20, K2): the platform pins and skips of SlicerNNUnet
d05d772 (N5), a half-installed package counts as missing (N6), never two pips at once (N7), nothing installed in
Slicer's testing mode (N11). Real ``DependencyGate`` / ``InstallRun`` with real child processes; real package
metadata in a temporary folder.

Stand-ins (slicer-core has neither): ``slicer.app.testingEnabled`` (``Base/QTCore/qSlicerCoreCommandOptions.h``
v5.10.0:58) and ``slicer.packaging`` with only its module flag and ``isPipInstallInProgress`` (written from
``Base/Python/slicer/packaging.py`` v5.12.3:245-268).
"""

from __future__ import annotations

import importlib
import sys
import time
import types
from types import SimpleNamespace as NS

import pytest

from backsplit.runtime.requirements import installed_completely, pinned, requirements_without


class FakeTimer:
    """Stands in for qt.QTimer (no Qt here)."""

    def __init__(self):
        self.active = False

    def start(self):
        self.active = True

    def stop(self):
        self.active = False


def sleeping_plan():
    from BackSplitShared.install_run import InstallStep

    return [InstallStep("x", [sys.executable, "-c", "import time; time.sleep(60)"], "torch")]


def gate_for(reports, asked=None):
    from BackSplitShared.install_run import DependencyGate

    asked = asked if asked is not None else []
    return DependencyGate(FakeTimer(), lambda text, busy: None, lambda text: asked.append(text) or True,
                          reports.append, plan=sleeping_plan, ended=lambda text: None)


def finish(gate):
    gate.cancel()
    while gate.timer.active:
        gate.tick()
        time.sleep(0.02)


@pytest.fixture
def slicer_stand_ins(monkeypatch):
    slicer = pytest.importorskip("slicer")
    packaging = types.ModuleType("slicer.packaging")
    packaging._pip_install_in_progress = False
    packaging.isPipInstallInProgress = lambda: packaging._pip_install_in_progress
    monkeypatch.setitem(sys.modules, "slicer.packaging", packaging)
    monkeypatch.setattr(slicer, "packaging", packaging, raising=False)
    app = NS(testingEnabled=lambda: False)
    monkeypatch.setattr(slicer, "app", app, raising=False)
    return NS(packaging=packaging, app=app)


def test_macos_pins_imagecodecs_and_requests_is_left_to_slicer():
    """N5 (and D5): as SlicerNNUnet d05d772 InstallLogic.py:157-169, 221-235."""
    rest = requirements_without(["imagecodecs>=2021", "requests", "numpy>=1.24", "torch>=2.1.2"])
    assert rest == ["imagecodecs>=2021", "numpy>=1.24"]
    assert pinned(rest, "darwin") == ["imagecodecs<=2026.3.6", "numpy>=1.24"]
    assert pinned(rest, "linux") == rest and pinned(rest, "win32") == rest


def test_a_package_that_pip_did_not_finish_counts_as_missing(tmp_path, monkeypatch):
    """N6: a cancelled pip can leave the package folder without its metadata (or without RECORD, written last)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "halfpkg").mkdir()
    (tmp_path / "halfpkg" / "__init__.py").write_text("")
    importlib.invalidate_caches()
    assert not installed_completely("halfpkg")                          # files, no metadata
    info = tmp_path / "halfpkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: halfpkg\nVersion: 1.0\n")
    (info / "INSTALLER").write_text("pip\n")
    importlib.invalidate_caches()
    assert not installed_completely("halfpkg")                          # pip stopped before RECORD
    (info / "RECORD").write_text("halfpkg/__init__.py,,\n")
    assert installed_completely("halfpkg") and not installed_completely("no_such_package_here")


def test_never_two_pips_at_once(slicer_stand_ins):
    """N7: a second BackSplit installation, or one beside Slicer's own non-blocking pip, does not start; while ours
    runs, Slicer's flag tells other extensions (and Slicer's pip_install) that a pip is running."""
    reports, asked = [], []
    first, second = gate_for(reports, asked), gate_for(reports, asked)
    assert first.run(lambda: True) and first.busy and slicer_stand_ins.packaging.isPipInstallInProgress()
    assert not second.run(lambda: True) and "already installing" in reports[-1] and len(asked) == 1
    finish(first)
    assert not first.busy and not slicer_stand_ins.packaging.isPipInstallInProgress()
    slicer_stand_ins.packaging._pip_install_in_progress = True          # another extension's pip
    assert not second.run(lambda: True) and "another extension" in reports[-1] and len(asked) == 1


def test_testing_mode_installs_nothing_and_says_so(slicer_stand_ins):
    """N11: in Slicer's testing mode the gate neither asks nor installs (the answer would come from no one)."""
    slicer_stand_ins.app.testingEnabled = lambda: True
    reports, asked = [], []
    gate = gate_for(reports, asked)
    assert not gate.run(lambda: True) and not gate.busy and asked == []
    assert "testing mode" in reports[-1]
