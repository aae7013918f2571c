"""How a BackSplit child process ends, in one place: its exit status, and the user's message for each way a job can
fail (the worker's side), and the text for a child that ended without a message (the parent's side).

Exit status of every BackSplit child (prediction, organ-model generation, context view, training, study unit):

* ``EXIT_DONE`` (0): finished; its last event is a ``done`` event;
* ``EXIT_ERROR`` (1): a user's error (``InputError``, ``OutputError``, any ``BackSplitError``), a full disk or an
  out-of-memory error; its last event is an ``error`` event with the message to show;
* ``EXIT_UNEXPECTED`` (2): a bug or an unforeseen failure; ``error`` event "<what> failed: <type>: <message>" and the
  traceback in the log;
* ``EXIT_CANCELLED`` (130, the shell's 128 + SIGINT): cancelled (``CancelledError``, or a SLURM job cancelled
  before it reported);
* negative (POSIX): ended by a signal (``-9``: SIGKILL, e.g. the machine ran out of memory, or a kill from
  outside); ``ended_text`` words it.
"""

from __future__ import annotations

import errno
import signal
from typing import Optional

from backsplit.errors import BackSplitError, CancelledError

EXIT_DONE = 0
EXIT_ERROR = 1
EXIT_UNEXPECTED = 2
EXIT_CANCELLED = 130

DISK_FULL_ERRNOS = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))   # no space left; disk quota exceeded

DISK_FULL_HINT = "free space or choose another output folder (files already finished are kept)"
OUT_OF_MEMORY_HINT = ("choose a smaller input or the CPU device, or close other programs that use the GPU")


def is_disk_full(exc: BaseException) -> bool:
    """True for an OSError of a full disk or an exceeded disk quota (``DISK_FULL_ERRNOS``)."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch's ``OutOfMemoryError`` (CUDA or MPS) or an error whose message says "out of memory" (torch's
    older RuntimeError); found by name so this module never imports torch."""
    return type(exc).__name__ == "OutOfMemoryError" or "out of memory" in str(exc).lower()


def failure(exc: BaseException, failed: Optional[str] = None, *, disk_full: str = DISK_FULL_HINT,
            out_of_memory: str = OUT_OF_MEMORY_HINT) -> tuple[int, str]:
    """(exit status, user's message) for an exception that ended a job; see the module doc for the statuses.

    ``failed`` names the job for an unexpected error ("training" gives "training failed: KeyError: 'x'"; None gives
    "KeyError: 'x'"). ``disk_full`` and ``out_of_memory`` are the job's fix hints: "the disk is full; <hint>" and
    "the GPU ran out of memory; <hint>"."""
    if isinstance(exc, CancelledError):
        return EXIT_CANCELLED, str(exc) or "cancelled"
    if isinstance(exc, BackSplitError):
        return EXIT_ERROR, str(exc)
    if is_disk_full(exc):
        where = f" (writing '{exc.filename}')" if getattr(exc, "filename", None) else ""
        return EXIT_ERROR, f"the disk is full{where}; {disk_full}"
    if is_out_of_memory(exc):
        return EXIT_ERROR, f"the GPU ran out of memory; {out_of_memory}"
    text = f"{type(exc).__name__}: {exc}"
    return EXIT_UNEXPECTED, f"{failed} failed: {text}" if failed else text


# the likely cause of a child's end by each signal (signal(7)); the out-of-memory killer sends SIGKILL
SIGNAL_CAUSES = {
    "SIGKILL": "most often the machine ran out of memory and the kernel's out-of-memory killer ended it ('dmesg' "
               "shows it), else a kill from outside",
    "SIGTERM": "asked to stop from outside: a scheduler's time limit (SLURM), a shutdown or a kill",
    "SIGINT": "interrupted (Ctrl-C)",
    "SIGHUP": "its terminal was closed",
    "SIGSEGV": "a crash inside native code (torch or an image library)",
    "SIGBUS": "a crash inside native code, or a file it mapped was truncated (a full disk)",
    "SIGABRT": "a crash inside native code (torch or an image library)",
    "SIGXCPU": "it reached a CPU-time limit",
}


def ended_text(returncode: Optional[int]) -> str:
    """Why a child ended, in words, from its exit status alone (for a child that left no ``error`` event):
    "ended by signal SIGKILL (signal 9: <likely cause>)" for a negative status, "was cancelled", or "ended with
    exit code N"."""
    if returncode is None:
        return "is still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            return f"ended by signal {-returncode}"
        cause = SIGNAL_CAUSES.get(name)
        return f"ended by signal {name} (signal {-returncode}{': ' + cause if cause else ''})"
    if returncode == EXIT_CANCELLED:
        return "was cancelled"
    return f"ended with exit code {returncode}"
