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
