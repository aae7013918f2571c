"""A hand-over child stops waiting when Slicer went away: POSIX by the changed parent pid, Windows (no re-parenting)
by psutil's process table. The Windows branch runs here with ``os.name`` replaced in the module (no Windows here);
the process checked is a real one that has exited."""

import os
import subprocess
import sys
from types import SimpleNamespace

from backsplit.io import handover


def test_the_real_parent_is_alive_and_another_pid_is_not(tmp_path):
    assert handover.parent_alive(os.getppid())
    assert not handover.handover_cancelled(tmp_path, os.getppid())
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert handover.handover_cancelled(tmp_path, gone.pid)      # not our parent (POSIX)


def test_windows_asks_the_process_table(monkeypatch):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    monkeypatch.setattr(handover, "os", SimpleNamespace(name="nt", getppid=os.getppid))
    assert handover.parent_alive(os.getpid())
    assert not handover.parent_alive(gone.pid)


def launcher_script(tmp_path):
    """A stand-in for Slicer's ``PythonSlicer``, written from Slicer's source: it is CTKAppLauncher
    (``CMake/SlicerBlockInstallPython.cmake`` v5.10.0:120-135), which starts the real Python as *its own child* and
    waits for it (``QProcess::start``, commontk/AppLauncher ``Base/ctkAppLauncher.cpp`` HEAD dcb7a7e:713). So the
    worker's parent pid is the launcher's, never Slicer's. Nothing is mocked: the launcher is a real process."""
    script = tmp_path / "PythonSlicer"
    script.write_text(f"#!{sys.executable}\nimport subprocess, sys\n"
                      f"sys.exit(subprocess.call([{sys.executable!r}] + sys.argv[1:]))\n", encoding="utf-8")
    script.chmod(0o755)
    return str(script)


def test_a_child_started_through_slicers_python_launcher_is_not_taken_as_orphaned(slicer_scene, tmp_path):
    """Inside Slicer the children run under ``PythonSlicer`` (``childprocess.python_executable``): an export handed
    over that way must finish, not end as "cancelled" because the worker's parent is the launcher."""
    import pytest

    if os.name == "nt":
        pytest.skip("the launcher stand-in is a POSIX script")
    from test_export_steps import scene_cases_for_export

    from backsplit.datasets.export import ExportRequest
    from BackSplitSegmentLib.export_run import ExportRun

    cases = scene_cases_for_export(slicer_scene.slicer, slicer_scene.scene, count=1)
    run = ExportRun([c.source() for c in cases], ExportRequest(tmp_path / "out", 517, "Launcher", ["lesion"],
                                                               ["organ"]), python=launcher_script(tmp_path))
    step = run.run_to_end()
    assert step.state == "finished", step.message
    assert not run.handover.root.exists()


def test_a_cancel_the_child_cannot_see_ends_it_all_the_same(slicer_scene, tmp_path):
    """The cancel file cannot be written (the hand-over folder made immutable with ``chattr +i``: a real EPERM, as
    on a read-only or full disk), so the child, waiting for its next case, would wait as long as Slicer runs: the
    hand-over then ends the child's process tree (never waiting for it) and the job ends as cancelled."""
    import shutil
    import time

    import pytest
    from test_export_steps import scene_cases_for_export

    from backsplit.supports.suggest import SuggestOptions
    from BackSplitSegmentLib.supports_scene import start_suggest

    if os.name == "nt" or shutil.which("chattr") is None:
        pytest.skip("needs chattr (Linux)")
    cases = scene_cases_for_export(slicer_scene.slicer, slicer_scene.scene, count=2)
    job = start_suggest(cases, SuggestOptions("Lesion"), read_budget_s=0.0)
    job.step()                                                    # the child starts; nothing handed over yet
    root = job.handover.root
    if subprocess.run(["chattr", "+i", str(root)], capture_output=True).returncode != 0:
        job.close()
        pytest.skip("this file system has no immutable flag")
    try:
        job.cancel()
        for _ in range(3000):                                     # bounded: a child that waits forever fails here
            if job.step().done:
                break
            time.sleep(0.01)
        assert job.state == "cancelled" and job.handover.child.returncode is not None
    finally:
        subprocess.run(["chattr", "-i", str(root)], capture_output=True)
        child = job.handover.child
        if child.returncode is None:
            child.cancel(grace_seconds=0.0, wait=True)
        shutil.rmtree(root, ignore_errors=True)
