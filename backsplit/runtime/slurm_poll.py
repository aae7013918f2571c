"""``squeue`` without waiting: a ``subprocess.run`` stand-in for ``SlurmClient`` that a panel's timer can call.

A panel follows a cluster training from a timer on Slicer's GUI thread; a plain ``squeue`` there waits for
slurmctld (up to its timeout, 60 s) and freezes the panel at every tick (audit N3). ``BackgroundQueue`` is a
``run(args, **kwargs)`` with ``subprocess.run``'s signature: every command other than ``squeue`` runs as before
(``sbatch`` must return its job id; ``scancel`` returns at once), while ``squeue`` is started as a child process
and its *last finished* answer is returned at once. Until the first answer arrives, and while a query is slower than
``timeout_s``, the result is a non-zero exit with "no answer yet", which ``SlurmClient.queued`` raises as an error
and ``ClusterTraining.is_running`` treats as "unknown" (the follow goes on). A new query starts at most every
``interval_s`` seconds. Standard library only.

``BackgroundCall`` is the same for the commands whose answer the panel needs once (``sbatch``'s job id, ``scancel``'s
exit): started as a child process, its answer taken by a later tick (``ClusterTraining.start(wait=False)``,
``ClusterTraining.cancel(wait=False)``).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

from backsplit.errors import BackSplitError

PENDING = "no answer from squeue yet"


class BackgroundQueue:
    """``SlurmClient(run=BackgroundQueue())``: squeue in the background, everything else through ``run``."""

    def __init__(self, run: Callable[..., subprocess.CompletedProcess] = subprocess.run, interval_s: float = 15.0,
                 timeout_s: float = 60.0, popen: Callable[..., subprocess.Popen] = subprocess.Popen,
                 clock: Callable[[], float] = time.monotonic):
        self.run, self.interval_s, self.timeout_s, self.popen, self.clock = run, interval_s, timeout_s, popen, clock
        self._process: Optional[subprocess.Popen] = None
        self._started = 0.0
        self._args: Optional[list[str]] = None
        self._answer: Optional[subprocess.CompletedProcess] = None
        self._answered_at: Optional[float] = None

    def __call__(self, args: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
        args = [str(a) for a in args]
        if not args or args[0] != "squeue":
            return self.run(args, **kwargs)
        self._collect()
        if self._args != args:                       # another job or format: old answers do not apply
            self._answer, self._answered_at, self._args = None, None, args
        due = self._answered_at is None or self.clock() - self._answered_at >= self.interval_s
        if self._process is None and due:
            self._process = self.popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                       text=True)
            self._started = self.clock()
        if self._answer is not None:
            return self._answer
        return subprocess.CompletedProcess(args, 1, "", PENDING)

    def _collect(self) -> None:
        """Take the finished query's output (never waits: ``communicate`` runs only once the child has exited);
        a query slower than ``timeout_s`` is killed and counts as failed."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            if self.clock() - self._started < self.timeout_s:
                return
            process.kill()
            process.wait()
            out, err = "", f"squeue gave no answer within {self.timeout_s:.0f} s"
            code = 1
        else:
            out, err = process.communicate()
            code = process.returncode
        self._process = None
        self._answer = subprocess.CompletedProcess(process.args, code, out or "", err or "")
        self._answered_at = self.clock()

    def close(self) -> None:
        """End a query still running (the panel stops following)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
        self._process = None


class BackgroundCall:
    """One SLURM client command as a child process that a timer polls: ``poll()`` never waits; it returns None while
    the command runs, then its ``CompletedProcess`` (text). With ``stdout_file`` and ``stderr_file`` the answer goes
    to these files, so that it outlives this process (an ``sbatch`` whose panel was closed mid-submission still leaves
    its job id for ``ClusterTraining.follow``; the child gets a session of its own, so a Ctrl-C meant for Slicer does
    not stop it halfway); else to pipes (short answers such as ``scancel``'s). Raises BackSplitError naming the
    command and ``missing`` (where to run instead) when the command is not on PATH."""

    def __init__(self, args: Sequence[str], missing: str, stdout_file: Optional[Path] = None,
                 stderr_file: Optional[Path] = None, popen: Callable[..., subprocess.Popen] = subprocess.Popen):
        self.args = [str(a) for a in args]
        self.files = (stdout_file, stderr_file) if stdout_file is not None and stderr_file is not None else None
        self.result: Optional[subprocess.CompletedProcess] = None
        try:
            if self.files is None:
                self.process = popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, text=True)
            else:
                with open(self.files[0], "w", encoding="utf-8") as out, \
                        open(self.files[1], "w", encoding="utf-8") as err:
                    self.process = popen(self.args, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        except FileNotFoundError:
            raise BackSplitError(f"'{self.args[0]}' was not found: {missing}") from None

    def poll(self) -> Optional[subprocess.CompletedProcess]:
        """None while the command runs; then its answer (the same object at every later call)."""
        if self.result is None and self.process.poll() is not None:
            if self.files is None:
                out, err = self.process.communicate()   # the child has exited: returns at once
            else:
                out, err = (Path(f).read_text(encoding="utf-8", errors="replace") for f in self.files)
            self.result = subprocess.CompletedProcess(self.args, self.process.returncode, out or "", err or "")
        return self.result
