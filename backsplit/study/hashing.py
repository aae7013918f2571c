"""Content hashes: of files (SHA-256 of their bytes, cached by path, size and modification time) and of settings
(SHA-256 of canonical JSON). A hash changes when and only when the content changes: rewriting a file with the same
bytes (a new modification time) gives the same hash."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional

CHUNK = 1 << 20


def stable_hash(value: Any, length: int = 16) -> str:
    """SHA-256 of ``value`` as canonical JSON (sorted keys, no spaces); the first ``length`` hex digits."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


class FileHasher:
    """SHA-256 of file contents (first 32 hex digits); a JSON cache file (optional) keyed by path, size and mtime
    avoids re-reading. Case files of an exported dataset use the hashes recorded in its dataset.json instead
    (``study.scan.file_hash``); this hasher is the fallback for files without a valid record and for the study's
    own outputs (``markers``)."""

    def __init__(self, cache_file: Optional[Path] = None):
        self.cache_file = Path(cache_file) if cache_file else None
        self._cache: dict[str, list] = {}
        if self.cache_file and self.cache_file.is_file():
            try:
                self._cache = json.loads(self.cache_file.read_text(encoding="utf-8"))
            except (ValueError, OSError):
                self._cache = {}
        self._dirty = False

    def __call__(self, path: Path) -> str:
        path = Path(path)
        stat = path.stat()
        key = str(path.resolve())
        cached = self._cache.get(key)
        if cached and cached[0] == stat.st_size and cached[1] == stat.st_mtime_ns:
            return cached[2]
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(CHUNK), b""):
                digest.update(block)
        value = digest.hexdigest()[:32]
        self._cache[key] = [stat.st_size, stat.st_mtime_ns, value]
        self._dirty = True
        return value

    def save(self) -> None:
        if self.cache_file and self._dirty:
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_file.with_name(self.cache_file.name + f".{os.getpid()}.partial")
            tmp.write_text(json.dumps(self._cache), encoding="utf-8")
            os.replace(tmp, self.cache_file)
            self._dirty = False
