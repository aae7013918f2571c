"""Recent exports and trained models, and what one Slicer panel hands to the other, in one small JSON file next to
the models location (``<models location>/../recent.json``, by default ``~/BackSplit/recent.json``).

BackSplit Segment records each finished export (``remember("datasets", ...)``) and its "Train on this dataset"
hands the dataset to BackSplit Train (``hand_over``); Train takes it on its next visit (``take_handoff``). The same
for a finished training's model, handed to Segment's Apply. The file outlives a scene close (which resets the
modules' parameter nodes) and a restart. At most ``KEEP`` entries per kind, newest first; folders that no longer
exist are left out on reading. The file is only a convenience: an unreadable one counts as empty (and is replaced
on the next write), never as an error.

Format: ``{"datasets": [path, ...], "models": [path, ...], "handoff": {"datasets": path, "models": path}}``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Optional

from backsplit.models.location import models_dir

KINDS = ("datasets", "models")
KEEP = 10


def recent_file(models: Optional[Path] = None) -> Path:
    """``recent.json`` beside the models location (``models_dir``): ``~/BackSplit/recent.json`` by default."""
    return models_dir(models).parent / "recent.json"


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")


def _read(file: Path) -> dict:
    try:
        data = json.loads(Path(file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(file: Path, data: dict) -> None:
    """Whole-file replace (a temporary file in the same folder, then ``os.replace``): never half written."""
    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".recent-", suffix=".json", dir=file.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2)
        os.replace(temporary, file)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def remember(kind: str, folder: Path, file: Optional[Path] = None) -> None:
    """Put ``folder`` (made absolute) first in the ``kind`` list ("datasets" or "models"), once, at most ``KEEP``.
    Raises OSError when the file cannot be written (the caller shows it or ignores it)."""
    _check_kind(kind)
    file = file or recent_file()
    data = _read(file)
    entry = str(Path(folder).expanduser().resolve())
    entries = [e for e in data.get(kind, []) if isinstance(e, str) and e != entry]
    data[kind] = [entry] + entries[: KEEP - 1]
    _write(file, data)


def recent(kind: str, file: Optional[Path] = None) -> list[Path]:
    """The ``kind`` folders, newest first, those that still exist."""
    _check_kind(kind)
    entries = _read(file or recent_file()).get(kind, [])
    return [Path(e) for e in entries if isinstance(e, str) and Path(e).is_dir()]


def hand_over(kind: str, folder: Path, file: Optional[Path] = None) -> None:
    """Remember ``folder`` and leave it for the other panel (``take_handoff``); replaces an earlier hand-over."""
    remember(kind, folder, file)
    file = file or recent_file()
    data = _read(file)
    handoff = data.get("handoff") if isinstance(data.get("handoff"), dict) else {}
    handoff[kind] = str(Path(folder).expanduser().resolve())
    data["handoff"] = handoff
    _write(file, data)


def take_handoff(kind: str, file: Optional[Path] = None) -> Optional[Path]:
    """The folder handed over for ``kind`` (then forgotten: taken once), or None when there is none or it no
    longer exists."""
    _check_kind(kind)
    file = file or recent_file()
    data = _read(file)
    handoff = data.get("handoff")
    if not isinstance(handoff, dict) or kind not in handoff:
        return None
    value = handoff.pop(kind)
    try:
        _write(file, data)
    except OSError:
        pass   # taken for this visit; with a read-only file it is offered again on the next one
    return Path(value) if isinstance(value, str) and Path(value).is_dir() else None
