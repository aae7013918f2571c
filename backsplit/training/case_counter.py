"""Per-case progress of nnU-Net steps that report nothing themselves (preprocessing runs in a worker pool): count
the files it writes per case (nnunetv2 2.8.1 ``DefaultPreprocessor.run_case_save`` -> ``nnUNetDatasetBlosc2.save_case``
writes ``<case>.b2nd``, ``<case>_seg.b2nd``, ``<case>.pkl``) from a background thread and call back on each change."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable


class FolderProgress:
    """``with FolderProgress(folder, "*.pkl", n_cases, callback):`` calls ``callback(done, total)`` whenever the
    number of matching files changes (polled every ``interval`` seconds), and once more at the end."""

    def __init__(self, folder: Path, pattern: str, total: int, callback: Callable[[int, int], None],
                 interval: float = 1.0):
        self.folder, self.pattern, self.total = Path(folder), pattern, int(total)
        self.callback, self.interval = callback, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="backsplit-folder-progress", daemon=True)
        self._seen = -1

    def count(self) -> int:
        try:
            return min(self.total, sum(1 for _ in self.folder.glob(self.pattern)))
        except OSError:
            return 0

    def _report(self) -> None:
        done = self.count()
        if done != self._seen:
            self._seen = done
            self.callback(done, self.total)

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            self._report()

    def __enter__(self) -> "FolderProgress":
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if exc_type is None:
            self._report()
