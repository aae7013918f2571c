"""Run a child process that reports through progress events, and cancel its whole process tree.

Used for training and prediction, by the command line and the Slicer panels (which call ``poll_events`` from a
timer, so nothing long runs on the GUI thread). The ``popen`` factory is injectable so logic can be tested without
starting processes.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Mapping, Optional, Sequence

from .progress import ProgressEvent, parse_event_line

PopenFactory = Callable[..., subprocess.Popen]


class ChildProcess:
    def __init__(self, args: Sequence[str], env: Optional[Mapping[str, str]] = None, cwd: Optional[str] = None,
                 popen: PopenFactory = subprocess.Popen):
        self.args = list(args)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self._popen = popen
        self.process: Optional[subprocess.Popen] = None
        self._queue: "queue.Queue[ProgressEvent]" = queue.Queue()
        self._reader: Optional[threading.Thread] = None
        self.log_lines: list[str] = []
        self.cancelled = False
        self.started_at: Optional[float] = None

    def start(self) -> "ChildProcess":
        kwargs = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
                      cwd=self.cwd, text=True, encoding="utf-8", errors="replace", bufsize=1)
        if os.name == "nt":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
        else:
            kwargs["start_new_session"] = True  # own process group: cancel ends the whole tree
        self.process = self._popen(self.args, **kwargs)
        self.started_at = time.time()
        self._reader = threading.Thread(target=self._read, name="backsplit-child-reader", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip("\n")
            event = parse_event_line(line)
            if event is None:
                self.log_lines.append(line)
                event = ProgressEvent("log", line)
            self._queue.put(event)

    @property
    def pid(self) -> Optional[int]:
        return self.process.pid if self.process else None

    @property
    def returncode(self) -> Optional[int]:
        return self.process.poll() if self.process else None

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def poll_events(self) -> list[ProgressEvent]:
        """Events (and log lines as 'log' events) that arrived since the last call; never blocks."""
        events = []
        while True:
            try:
                events.append(self._queue.get_nowait())
            except queue.Empty:
                return events

    def wait(self, timeout: Optional[float] = None) -> int:
        assert self.process is not None
        code = self.process.wait(timeout)
        if self._reader is not None:
            self._reader.join(timeout=5)
        return code

    def cancel(self, grace_seconds: float = 5.0) -> None:
        """End the child and everything it started: SIGTERM to the process group, SIGKILL after the grace period."""
        if self.process is None:
            return
        self.cancelled = True
        kill_tree(self.process.pid, grace_seconds)
        try:
            self.process.wait(timeout=grace_seconds + 5)
        except subprocess.TimeoutExpired:
            pass
        if self._reader is not None:
            self._reader.join(timeout=2)


def _descendants(pid: int) -> list[int]:
    try:
        import psutil
    except ImportError:
        return []
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def kill_tree(pid: int, grace_seconds: float = 5.0) -> None:
    if os.name == "nt":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(pid)], capture_output=True)
        return
    children = _descendants(pid)  # also those that left the process group, when psutil is there
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        pgid = None
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if pgid is not None:
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                pass
        for child in children:
            try:
                os.kill(child, sig)
            except ProcessLookupError:
                pass
        if sig == signal.SIGTERM:
            deadline = time.time() + grace_seconds
            while time.time() < deadline and _alive(pid, children):
                time.sleep(0.05)
            if not _alive(pid, children):
                return


def _alive(pid: int, children: Sequence[int]) -> bool:
    """Is any of the processes still running (zombies, which only wait to be reaped, do not count)?"""
    for p in [pid, *children]:
        try:
            os.kill(p, 0)
        except ProcessLookupError:
            continue
        except PermissionError:
            return True
        if not _is_zombie(p):
            return True
    return False


def _is_zombie(pid: int) -> bool:
    try:
        import psutil

        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except ImportError:
        pass
    except Exception:  # psutil.NoSuchProcess and friends: gone
        return True
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return False


def package_root() -> str:
    """The folder that holds the ``backsplit`` package (put on a child's PYTHONPATH)."""
    from pathlib import Path

    return str(Path(__file__).resolve().parent.parent)


def child_environment(base_env: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """An environment in which a child Python finds this ``backsplit`` package and prints without buffering."""
    env = dict(os.environ if base_env is None else base_env)
    env["PYTHONPATH"] = os.pathsep.join([package_root()] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def python_executable() -> str:
    """The Python to start children with: PythonSlicer inside Slicer, else this interpreter."""
    import shutil

    if "slicer" in sys.modules:
        found = shutil.which("PythonSlicer")
        if found:
            return found
    return sys.executable
