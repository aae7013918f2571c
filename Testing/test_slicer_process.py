"""Child processes as the Slicer panels start them: hidden console on Windows (the choice tested as a pure function
of the platform; Windows itself cannot run here) and a cancel that returns at once while the tree is ended in the
background (real processes)."""

import subprocess
import sys
import time
import types

import psutil

from backsplit.runtime.childprocess import (
    CREATE_NEW_PROCESS_GROUP,
    CREATE_NO_WINDOW,
    STARTF_USESHOWWINDOW,
    SW_HIDE,
    ChildProcess,
    popen_platform_kwargs,
)


def fake_startupinfo():
    return types.SimpleNamespace(dwFlags=0, wShowWindow=1)   # subprocess.STARTUPINFO exists on Windows only


def test_windows_children_get_no_console_window():
    kwargs = popen_platform_kwargs("nt", fake_startupinfo)
    assert kwargs["creationflags"] == CREATE_NO_WINDOW | CREATE_NEW_PROCESS_GROUP
    info = kwargs["startupinfo"]
    assert info.dwFlags & STARTF_USESHOWWINDOW and info.wShowWindow == SW_HIDE      # as launchConsoleProcess
    assert "start_new_session" not in kwargs
    assert popen_platform_kwargs("nt", fake_startupinfo, new_group=False)["creationflags"] == CREATE_NO_WINDOW
    if sys.platform == "win32":
        assert subprocess.CREATE_NO_WINDOW == CREATE_NO_WINDOW


def test_posix_children_get_their_own_session():
    assert popen_platform_kwargs("posix") == {"start_new_session": True}
    assert popen_platform_kwargs("posix", new_group=False) == {}


TREE = r"""
import subprocess, sys, time
stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
children = [subprocess.Popen([sys.executable, "-c", stubborn]) for _ in range(2)]
print("ready", flush=True)
import signal
signal.signal(signal.SIGTERM, signal.SIG_IGN)   # ignores the polite request: only the kill after the grace ends it
time.sleep(600)
"""


def test_cancel_returns_at_once_and_the_tree_is_gone_afterwards():
    job = ChildProcess([sys.executable, "-c", TREE]).start()
    deadline = time.time() + 30
    while "ready" not in job.log_lines and time.time() < deadline:
        time.sleep(0.05)
    tree = [psutil.Process(job.pid)] + psutil.Process(job.pid).children(recursive=True)
    assert len(tree) == 3
    started = time.monotonic()
    job.cancel(grace_seconds=2.0, wait=False)
    returned_after = time.monotonic() - started
    assert job.cancelled and job.is_running()          # returned before the grace period could have passed
    print(f"cancel(wait=False) returned after {1000 * returned_after:.1f} ms")
    deadline = time.time() + 30
    while job.is_running() and time.time() < deadline:   # what the panel's timer does
        time.sleep(0.05)
    assert not job.is_running() and job.returncode != 0
    gone, alive = psutil.wait_procs(tree, timeout=10)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], alive
    job.cancel(wait=True)                                 # again, after the end: harmless
