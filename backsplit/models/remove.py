"""Remove a model folder: only after the user confirms, and never while a training or prediction uses it."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from backsplit.errors import CancelledError, OutputError
from backsplit.models.catalog import read_entry
from backsplit.models.usage import model_users


def remove_model(folder: Path, confirm: Callable[[str], bool]) -> Path:
    """Ask ``confirm(question)``; refuse when the model is in use. The folder is first moved to a hidden folder
    next to it (one rename), then deleted, so an interrupted removal never leaves half a model under its name.
    Raises OutputError (in use), CancelledError (not confirmed), InputError (not a model)."""
    entry = read_entry(folder)
    users = model_users(entry.folder)
    if users:
        raise OutputError(f"the model '{entry.name}' is in use ({', '.join(users)}); wait until that has finished "
                          "or cancel it, then remove the model")
    size_mb = entry.size_bytes / 1e6
    if not confirm(f"Remove the model '{entry.name}' ({size_mb:.1f} MB, {entry.folder})? This cannot be undone."):
        raise CancelledError(f"the model '{entry.name}' was not removed")
    users = model_users(entry.folder)         # something may have started while the user was asked
    if users:
        raise OutputError(f"the model '{entry.name}' is in use ({', '.join(users)}); it was not removed")
    trash = Path(tempfile.mkdtemp(prefix=".backsplit-removing-", dir=entry.folder.parent))
    os.replace(entry.folder, trash / entry.name)
    shutil.rmtree(trash, ignore_errors=True)
    return entry.folder
