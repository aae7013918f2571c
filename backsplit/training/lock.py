"""One training per output folder: a lock file holding the owner's process id (stale locks are taken over)."""

from __future__ import annotations

import os
from pathlib import Path

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
