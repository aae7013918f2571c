"""Keep third-party output (nnU-Net's prints, torch / ITK / Python warnings, C-level messages) off the user's
screen: it goes to a log file beside the output, shown with ``--verbose`` or when it explains an error.

``ThirdPartyOutput(log_path)`` redirects the process's file descriptors 1 and 2 (so C/C++ libraries such as ITK are
caught too) into the log while it is active; ``console()`` is a stream on the terminal that stays visible (for
BackSplit's own progress bar). Where the streams have no file descriptor (3D Slicer's Python console, pytest's
capture) it falls back to redirecting ``sys.stdout``/``sys.stderr`` only.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Optional, TextIO


def _fileno(stream) -> Optional[int]:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None


class ThirdPartyOutput:
    """Context manager: third-party output -> ``log_path`` (appended); ``verbose`` leaves everything on screen.

    On an unexpected exception inside the block (not a ``BackSplitError``, whose message says what to do) the log's
    last ``tail_lines`` lines are written to the console, since they may explain it.
    """

    def __init__(self, log_path: Path, verbose: bool = False, tail_lines: int = 25):
        self.log_path = Path(log_path)
        self.verbose = verbose
        self.tail_lines = tail_lines
        self._saved: dict[int, int] = {}
        self._console: Optional[TextIO] = None
        self._log = None
        self._stack: Optional[contextlib.ExitStack] = None

    def console(self) -> TextIO:
        """A stream on the original stderr (the terminal), unaffected by the redirection."""
        if self._console is None:
            fd = _fileno(sys.stderr)
            self._console = os.fdopen(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="replace") \
                if fd is not None and not self.verbose else sys.stderr
        return self._console

    def __enter__(self) -> "ThirdPartyOutput":
        self.console()
        if self.verbose:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "a", encoding="utf-8", errors="replace", buffering=1)
        self._log.write(f"---- {time.strftime('%Y-%m-%d %H:%M:%S')} backsplit {' '.join(sys.argv[1:])}\n")
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        self._stack = contextlib.ExitStack()
        fds = [_fileno(sys.stdout), _fileno(sys.stderr)]
        if None not in fds and fds == [1, 2]:
            for fd in (1, 2):
                self._saved[fd] = os.dup(fd)
                os.dup2(self._log.fileno(), fd)
        else:
            self._stack.enter_context(contextlib.redirect_stdout(self._log))
            self._stack.enter_context(contextlib.redirect_stderr(self._log))
        self._stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("default")   # shown once each, into the log
        self._show_input_warnings_on_console()
        return self

    def _show_input_warnings_on_console(self) -> None:
        """Warnings about the user's data (``InputWarning``: translated ITK messages) stay on the console; other
        warnings go to the log. ``catch_warnings`` restores ``showwarning`` when the block ends."""
        from backsplit.io.itkmessages import InputWarning

        previous, console = warnings.showwarning, self.console()

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, InputWarning):
                console.write(f"backsplit: warning: {message}\n")
                return
            previous(message, category, filename, lineno, file, line)

        warnings.showwarning = show

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.verbose:
            return
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        if self._stack is not None:
            self._stack.close()
        for fd, saved in self._saved.items():
            os.dup2(saved, fd)
            os.close(saved)
        self._saved = {}
        if self._log is not None:
            self._log.close()
        from backsplit.errors import BackSplitError

        if exc_type is not None and not issubclass(exc_type, (KeyboardInterrupt, BackSplitError)):
            tail = self.tail()
            if tail:
                self.console().write(f"last messages of nnU-Net/torch (full log: {self.log_path}):\n{tail}\n")
                self.console().flush()

    def tail(self) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        start = max((i for i, line in enumerate(lines) if line.startswith("---- ")), default=0)
        return "\n".join(lines[start + 1:][-self.tail_lines:])
