"""``squeue`` without waiting: a ``subprocess.run`` stand-in for ``SlurmClient`` that a panel's timer can call.

A panel follows a cluster training from a timer on Slicer's GUI thread; a plain ``squeue`` there waits for
slurmctld (up to its timeout, 60 s) and freezes the panel at every tick (audit N3). ``BackgroundQueue`` is a
``run(args, **kwargs)`` with ``subprocess.run``'s signature: every command other than ``squeue`` runs as before
(``sbatch`` must return its job id; ``scancel`` returns at once), while ``squeue`` is started as a child process
and its *last finished* answer is returned at once. Until the first answer arrives, and while a query is slower than
``timeout_s``, the result is a non-zero exit with "no answer yet", which ``SlurmClient.queued`` raises as an error
and ``ClusterTraining.is_running`` treats as "unknown" (the follow goes on). A new query starts at most every
``interval_s`` seconds. Standard library only.
"""

from __future__ import annotations

import subprocess
import time
from typing import Callable, Optional, Sequence

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
