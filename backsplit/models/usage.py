"""Is a model in use? Markers written by trainings (fine-tuning from it) and predictions, plus training locks.

A marker is ``<model>/.backsplit-in-use/<pid>-<purpose>``, written by the process that uses the model and removed
when it is done (``ModelInUse`` as a context manager, or ``hold()``: removed when the returned handle is garbage
collected or the process exits). A marker whose process is gone (a crash, a killed process) is stale and ignored.
A model folder that is a training's output in ``nnUNet_results`` is also in use while that training's lock
(``training/lock.py``: ``.backsplit-train-<folder>-fold_<f>.lock`` next to it) names a live process.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path
from typing import Optional

from backsplit.training.lock import pid_alive

IN_USE_DIR = ".backsplit-in-use"


class ModelInUse:
    """Mark ``model_dir`` as used by this process for ``purpose`` ('prediction', 'fine-tuning', ...). Best effort:
    a read-only model folder cannot be marked (then only training locks protect it)."""

    def __init__(self, model_dir: Path, purpose: str):
        self.path = Path(model_dir) / IN_USE_DIR / f"{os.getpid()}-{purpose}"
        self.marked = False

    def acquire(self) -> "ModelInUse":
        try:
            self.path.parent.mkdir(exist_ok=True)
            self.path.write_text(str(os.getpid()), encoding="utf-8")
            self.marked = True
        except OSError:
            self.marked = False
        return self

    def release(self) -> None:
        if self.marked:
            self.path.unlink(missing_ok=True)
            try:
                self.path.parent.rmdir()
            except OSError:
                pass
            self.marked = False

    def hold(self) -> "_Handle":
        """Mark now; the mark goes when the returned handle is dropped (e.g. a function's local) or at exit."""
        self.acquire()
        return _Handle(self)

    def __enter__(self) -> "ModelInUse":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class _Handle:
    def __init__(self, use: ModelInUse):
        self._finalizer = weakref.finalize(self, use.release)   # also runs at interpreter exit (finalize.atexit)


def model_users(model_dir: Path) -> list[str]:
    """Who uses the model now, e.g. ['prediction (process 123)']; empty when nobody does."""
    model_dir = Path(model_dir)
    users = []
    folder = model_dir / IN_USE_DIR
    if folder.is_dir():
        for marker in sorted(folder.iterdir()):
            pid_text, _, purpose = marker.name.partition("-")
            pid = int(pid_text) if pid_text.isdigit() else 0
            if pid and pid_alive(pid):
                users.append(f"{purpose or 'use'} (process {pid})")
    for lock in sorted(model_dir.parent.glob(f".backsplit-train-{model_dir.name}-fold_*.lock")):
        pid = _pid_in(lock)
        if pid and pid_alive(pid):
            users.append(f"training (process {pid})")
    return users


def _pid_in(path: Path) -> Optional[int]:
    try:
        return int(path.read_text(encoding="utf-8").strip() or 0)
    except (OSError, ValueError):
        return None
