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

from backsplit.runtime.progress import ProgressEvent, Stage, parse_event_line

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
        self._killer: Optional[threading.Thread] = None

    def start(self) -> "ChildProcess":
        kwargs = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
                      cwd=self.cwd, text=True, encoding="utf-8", errors="replace", bufsize=1)
        kwargs.update(popen_platform_kwargs(os.name))
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
                event = ProgressEvent(Stage.LOG, line)
            self._queue.put(event)

    @property
    def pid(self) -> Optional[int]:
        return self.process.pid if self.process else None

    @property
    def returncode(self) -> Optional[int]:
        return self.process.poll() if self.process else None

    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def output_done(self) -> bool:
        """The child ended and its output has been read to the end (``poll_events`` then returns the last events);
        never blocks (the panels ask this from their timer instead of ``wait``)."""
        return not self.is_running() and (self._reader is None or not self._reader.is_alive())

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

    def cancel(self, grace_seconds: float = 5.0, wait: bool = True) -> None:
        """End the child and everything it started: SIGTERM to the process group, SIGKILL after the grace period.

        ``wait=False`` (the Slicer panels) returns at once: the kill runs in a background thread and the caller's
        timer notices the end through ``is_running()``; ``wait=True`` (command line) returns when the tree is gone."""
        if self.process is None:
            return
        self.cancelled = True
        if self._killer is None or not self._killer.is_alive():
            self._killer = threading.Thread(target=self._kill, args=(grace_seconds,), name="backsplit-child-killer",
                                            daemon=True)
            self._killer.start()
        if wait:
            self._killer.join()

    def _kill(self, grace_seconds: float) -> None:
        assert self.process is not None
        process = self.process
        # the direct child counts as gone once it has exited: Popen.poll reaps it on every OS, so no psutil and no
        # /proc are needed (Slicer ships no psutil; macOS has no /proc: the grace period was always waited; F7)
        kill_tree(process.pid, grace_seconds, reaped=lambda: process.poll() is not None)
        try:
            self.process.wait(timeout=grace_seconds + 5)
        except subprocess.TimeoutExpired:
            pass
        if self._reader is not None:
            self._reader.join(timeout=2)


# Windows process-creation values (winbase.h); named here so that the choice can be tested on any platform.
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000
STARTF_USESHOWWINDOW = 0x00000001
SW_HIDE = 0


def popen_platform_kwargs(platform: str, startupinfo_factory: Optional[Callable[[], object]] = None,
                          new_group: bool = True) -> dict:
    """The platform part of the ``subprocess.Popen`` arguments for a child process.

    ``platform`` is ``os.name``. POSIX: ``start_new_session`` (own process group, so cancel ends the whole tree).
    Windows: no console window, as Slicer's ``slicer.util.launchConsoleProcess`` does (a ``STARTUPINFO`` with
    ``STARTF_USESHOWWINDOW`` and ``SW_HIDE``), plus ``CREATE_NO_WINDOW`` so that the console programs it starts
    (nnU-Net's worker processes) get none either, and a new process group. Closing such a window would kill the
    training. ``startupinfo_factory`` defaults to ``subprocess.STARTUPINFO`` (Windows only; injected in tests)."""
    if platform != "nt":
        return {"start_new_session": True} if new_group else {}
    factory = startupinfo_factory or subprocess.STARTUPINFO
    info = factory()
    info.dwFlags = getattr(info, "dwFlags", 0) | STARTF_USESHOWWINDOW
    info.wShowWindow = SW_HIDE
    flags = CREATE_NO_WINDOW | (CREATE_NEW_PROCESS_GROUP if new_group else 0)
    return {"creationflags": flags, "startupinfo": info}


def _descendants(pid: int) -> list[int]:
    try:
        import psutil
    except ImportError:
        return []
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def kill_tree(pid: int, grace_seconds: float = 5.0, reaped: Optional[Callable[[], bool]] = None) -> None:
    """SIGTERM to the process group (and to descendants psutil finds), SIGKILL after ``grace_seconds`` if any is
    still alive. ``reaped()``: True once ``pid`` itself has exited (``Popen.poll``), so that its end is seen without
    psutil or /proc. Windows: ``taskkill /T``."""
    if os.name == "nt":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(pid)], capture_output=True,
                       **popen_platform_kwargs("nt", new_group=False))
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
            while time.time() < deadline and _alive(pid, children, reaped):
                time.sleep(0.05)
            if not _alive(pid, children, reaped):
                return


def _alive(pid: int, children: Sequence[int], reaped: Optional[Callable[[], bool]] = None) -> bool:
    """Is any of the processes still running (zombies, which only wait to be reaped, do not count)?"""
    for p in [pid, *children]:
        if p == pid and reaped is not None and reaped():
            continue
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
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return False


def package_root() -> str:
    """The folder that holds the ``backsplit`` package (put on a child's PYTHONPATH)."""
    from pathlib import Path

    return str(Path(__file__).resolve().parent.parent.parent)


def child_environment(base_env: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """An environment in which a child Python finds this ``backsplit`` package and prints without buffering."""
    env = dict(os.environ if base_env is None else base_env)
    root, paths = package_root(), [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths if paths[:1] == [root] else [root] + paths)   # once, also if built twice
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
