"""One training per output folder: a lock file holding the owner's process id (stale locks are taken over)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable, Optional

from backsplit.errors import BackSplitError, OutputError


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
    """A lock file holding its owner's process id (``O_EXCL`` creation; a lock whose process is gone is stale and
    taken over). ``acquire`` refuses when another live process holds it; ``wait`` waits for it instead."""

    FRESH_S = 10.0   # a lock file still empty this long after its creation: its owner is writing its process id

    def __init__(self, path: Path):
        self.path = Path(path)
        self.held = False

    def try_acquire(self) -> Optional[int]:
        """Take the lock if free (or stale); None when taken, else the owner's process id (0: an owner that has not
        written its id yet). Raises BackSplitError when the lock file can be neither taken nor read."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    owner = int(self.path.read_text(encoding="utf-8").strip() or 0)
                    age = time.time() - self.path.stat().st_mtime
                except (OSError, ValueError):
                    owner, age = 0, self.FRESH_S
                if owner and owner != os.getpid() and pid_alive(owner):
                    return owner
                if not owner and age < self.FRESH_S:
                    return 0   # just created by another process, its id not written yet
                self.path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as handle:
                handle.write(str(os.getpid()))
            self.held = True
            return None
        raise BackSplitError(f"could not take the training lock '{self.path}'; remove it if no training is running")

    def acquire(self) -> None:
        """Take the lock; raises BackSplitError naming the live process that holds it."""
        owner = self.try_acquire()
        if owner is not None:
            who = f" (process {owner})" if owner else ""
            raise BackSplitError(f"another training{who} is running on '{self.path.parent}'; "
                                 "wait for it to finish or cancel it first")

    def wait(self, announce: Optional[Callable[[int], None]] = None, poll_s: float = 1.0) -> None:
        """Take the lock, waiting while another live process holds it; ``announce(owner)`` is called once when
        waiting starts. A cancel (signal) ends the wait like any other step."""
        owner = self.try_acquire()
        if owner is not None and announce is not None:
            announce(owner)
        while owner is not None:
            time.sleep(poll_s)
            owner = self.try_acquire()

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "TrainingLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def refuse_existing_model(fold_dir: Path, resume: bool, overwrite: bool) -> None:
    """Raise OutputError when ``fold_dir`` already holds a finished model or an unfinished training and the user
    asked neither to resume it nor to overwrite it (called with the fold's TrainingLock held)."""
    has_final = (Path(fold_dir) / "checkpoint_final.pth").is_file()
    has_latest = (Path(fold_dir) / "checkpoint_latest.pth").is_file()
    if not resume and (has_final or has_latest) and not overwrite:
        state = "a finished model" if has_final else "an unfinished training"
        raise OutputError(f"{state} already exists in '{fold_dir}'; resume it (continue training: --resume, "
                          "with a larger --epochs for a finished model), or allow overwriting it (--overwrite), "
                          "or use another work folder")
