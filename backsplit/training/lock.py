"""One training per output folder: a lock file holding the owner's process id (stale locks are taken over)."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import BackSplitError


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:  # Windows: os.kill(pid, 0) is not a probe
        return False
    return True


class TrainingLock:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.held = False

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    owner = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    owner = 0
                if owner and owner != os.getpid() and pid_alive(owner):
                    raise BackSplitError(f"another training (process {owner}) is running on '{self.path.parent}'; "
                                         "wait for it to finish or cancel it first") from None
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(str(os.getpid()))
            self.held = True
            return
        raise BackSplitError(f"could not take the training lock '{self.path}'; remove it if no training is running")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "TrainingLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
