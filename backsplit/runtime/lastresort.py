"""The command line's handler of last resort: an exception that no command turned into a user's message ends in one
line and a documented exit status instead of a Python traceback; the traceback goes to a log file that the line
names.

Exit status of the ``backsplit`` command (docs/cli-reference.md, "Exit codes"):

* ``EXIT_OK`` (0): done;
* ``EXIT_ERROR`` (1): a problem the message names (input, output, a failed case, a killed training worker), or an
  operating-system refusal with a known cause (read-only folder, permission, full disk, name too long);
* ``EXIT_USAGE`` (2): the command line itself is wrong (argparse: unknown option, value out of range);
* ``EXIT_INTERNAL`` (70, ``EX_SOFTWARE`` of BSD's sysexits.h): an internal error, a fault of BackSplit: one line on
  the terminal, the traceback in the log file it names;
* ``EXIT_INTERRUPTED`` (130, the shell's 128 + SIGINT): interrupted (Ctrl-C) or cancelled.
"""

from __future__ import annotations

import errno
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Optional, Sequence, TextIO

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130

# an OSError with one of these causes is the user's to fix: said in words, exit 1
OS_ADVICE = {
    errno.EROFS: "the file system is read-only; choose a folder on a writable disk",
    errno.EACCES: "permission denied; choose a folder you can write to (or fix its permissions)",
    errno.EPERM: "operation not permitted; choose a folder you can write to",
    errno.ENOSPC: "the disk is full; free space or choose another folder",
    getattr(errno, "EDQUOT", errno.ENOSPC): "the disk quota is exceeded; free space or choose another folder",
    errno.ENAMETOOLONG: "a file name is longer than the file system allows (usually 255 bytes); shorten the case id "
                        "or the folder names",
}


def crash_log_dir() -> Path:
    """Where the traceback of an internal error goes: ``$BACKSPLIT_LOG_DIR`` when set, else
    ``$XDG_CACHE_HOME/backsplit/logs`` (``~/.cache/backsplit/logs``; the XDG base directory rule)."""
    if os.environ.get("BACKSPLIT_LOG_DIR"):
        return Path(os.environ["BACKSPLIT_LOG_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "backsplit" / "logs"


def os_error_text(exc: OSError) -> Optional[str]:
    """One line for an OSError whose cause the user can fix (``OS_ADVICE``), naming the file; None otherwise."""
    advice = OS_ADVICE.get(exc.errno if exc.errno is not None else -1)
    if advice is None:
        return None
    names = [f"'{name}'" for name in (exc.filename, getattr(exc, "filename2", None)) if name]
    return f"{' -> '.join(names) + ': ' if names else ''}{advice}"


def internal_error_text(exc: BaseException, argv: Sequence[str], log_dir: Optional[Path] = None) -> str:
    """Write the traceback of ``exc`` (with the command line and the time) to a new file in ``log_dir`` (default
    ``crash_log_dir()``) and return the one line to show: the error's type and first line, the log file, and a
    request to report it. Never raises: an unwritable log folder is said in the line."""
    folder = Path(log_dir) if log_dir else crash_log_dir()
    text = (f"backsplit {' '.join(str(a) for a in argv)}\n{time.strftime('%Y-%m-%d %H:%M:%S')}\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"backsplit-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        path.write_text(text, encoding="utf-8")
        where = f"details in {path}"
    except OSError:
        where = f"the details could not be saved in {folder} (set BACKSPLIT_LOG_DIR to a writable folder)"
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return (f"internal error ({type(exc).__name__}{': ' + first if first else ''}); {where}; please report it "
            "with that file")


def last_resort(exc: Exception, argv: Sequence[str], stderr: Optional[TextIO] = None) -> int:
    """Print one line for an exception no command handled and return the exit status: ``EXIT_ERROR`` for an
    OSError with a known cause (``os_error_text``), else ``EXIT_INTERNAL`` with the traceback in a log file."""
    stderr = stderr or sys.stderr
    if isinstance(exc, OSError):
        text = os_error_text(exc)
        if text:
            print(f"backsplit: error: {text}", file=stderr)
            return EXIT_ERROR
    print(f"backsplit: {internal_error_text(exc, argv)}", file=stderr)
    return EXIT_INTERNAL
