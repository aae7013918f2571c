"""Step markers: ``<unit>/steps/<step>.json`` records a finished step's content hash and the hashes of its output
files. A step counts as done only when the planned hash matches and every recorded output still has its hash."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Optional

from backsplit.study.hashing import FileHasher


def marker_path(unit_dir: Path, step: str) -> Path:
    return Path(unit_dir) / "steps" / f"{step}.json"


def write_marker(unit_dir: Path, step: str, content_hash: str, outputs: Iterable[Path] = (), **extra) -> Path:
    """Record ``step`` as done with ``content_hash``; ``outputs`` are hashed now (paths relative to ``unit_dir``
    when inside it)."""
    hasher = FileHasher()
    unit_dir = Path(unit_dir)
    recorded = {}
    for path in outputs:
        path = Path(path)
        try:
            key = str(path.relative_to(unit_dir))
        except ValueError:
            key = str(path)
        recorded[key] = hasher(path)
    path = marker_path(unit_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps({"hash": content_hash, "outputs": recorded, **extra}, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_marker(unit_dir: Path, step: str) -> Optional[dict]:
    path = marker_path(unit_dir, step)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def step_done(unit_dir: Path, step: str, content_hash: str, hasher: Optional[FileHasher] = None) -> bool:
    """True when the step's marker has ``content_hash`` and every output it recorded is unchanged."""
    marker = read_marker(unit_dir, step)
    if not marker or marker.get("hash") != content_hash:
        return False
    hasher = hasher or FileHasher()
    for key, digest in marker.get("outputs", {}).items():
        path = Path(key) if os.path.isabs(key) else Path(unit_dir) / key
        if not path.is_file() or hasher(path) != digest:
            return False
    return True


def clear_markers(unit_dir: Path, steps: Iterable[str]) -> None:
    for step in steps:
        marker_path(unit_dir, step).unlink(missing_ok=True)
