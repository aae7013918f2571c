"""Progress events of a prediction: model loading, the estimate, tiles within each case, case results.

Every ``predict`` event's ``current``/``total`` count tiles of the whole job (all cases, all folds), so a progress
bar moves smoothly and never jumps back between cases; ``data`` carries the case view (``case``, ``case_index``,
``cases``, ``tiles_done``, ``tiles_total``, ``case_fraction``), ``phase`` (loading, estimating, network, writing,
case done) and ``seconds_left`` (from the rate so far, or the estimate before any tile is done).
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Optional, Sequence

from backsplit.inference.tiles import TileListener
from backsplit.runtime.progress import Eta, ProgressCallback, ProgressEvent, Stage, format_duration


class PredictionWatch:
    def __init__(self, progress: ProgressCallback, case_ids: Sequence[str], n_models: int = 1,
                 min_interval: float = 0.5):
        self.progress = progress
        self.case_ids = list(case_ids)
        self.tiles = [1] * len(self.case_ids)          # until the plan gives the real counts
        self.listener = TileListener(self._on_tiles, n_models, min_interval)
        self.index = 0
        self.started = time.time()
        self.estimate_s: Optional[float] = None
        self._eta = Eta()
        self._lock = threading.Lock()          # events come from the heartbeat thread too
        self._last: Optional[tuple] = None     # (done, total, phase, seconds_left, when) of the last tile event

    @property
    def total(self) -> int:
        return int(sum(self.tiles))

    def _done_before(self, index: int) -> int:
        return int(sum(self.tiles[:index]))

    def loading(self, what: str) -> None:
        self.progress(ProgressEvent("predict", f"loading the model ({what})", 0, self.total,
                                    {"phase": "loading", "cases": len(self.case_ids)}))

    def planned(self, plan) -> None:
        """The estimate is known: real tile counts, and the 'estimate' event."""
        self.tiles = [max(1, int(t)) for t in plan.tiles_per_case]
        self.estimate_s = plan.estimate.seconds
        self.progress(plan.estimate.event())

    def case_started(self, index: int) -> None:
        self.index = index
        self.listener.start_case()
        self._emit(0, self.tiles[index], "preprocessing")

    def _on_tiles(self, done: int, total: int) -> None:
        if total and total != self.tiles[self.index]:
            self.tiles[self.index] = total                # nnU-Net's own count wins over the header arithmetic
        self._emit(done, total, "network" if done < total else "writing")

    def _emit(self, done: int, total: int, phase: str) -> None:
        overall = self._done_before(self.index) + done
        fraction = overall / max(1, self.total)
        left = self._eta.update(fraction) if done > 0 or self.index > 0 else None
        if left is None and self.estimate_s is not None:
            left = max(0.0, self.estimate_s - (time.time() - self.started))
        self._last = (done, total, phase, left, time.time())
        self._send(done, total, phase, left)

    def _send(self, done: int, total: int, phase: str, left: Optional[float]) -> None:
        overall = self._done_before(self.index) + done
        case_id = self.case_ids[self.index]
        n = len(self.case_ids)
        text = {"preprocessing": "reading and resampling", "network": f"tile {done}/{total}",
                "writing": "resampling back and writing"}[phase]
        with self._lock:
            self.progress(ProgressEvent(
                "predict", f"case '{case_id}' ({self.index + 1}/{n}): {text}", overall, self.total,
                {"phase": phase, "case": case_id, "case_index": self.index, "cases": n, "tiles_done": done,
                 "tiles_total": total, "case_fraction": done / max(1, total), "seconds_left": left,
                 "elapsed_s": time.time() - self.started}))

    @contextlib.contextmanager
    def heartbeat(self, interval: float = 15.0):
        """While nothing is reported for ``interval`` seconds (reading a large case, nnU-Net's resampling), repeat
        the last event with the time left counted down, so a bar never looks stuck."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(min(interval, 5.0)):
                last = self._last
                if last is not None and time.time() - last[4] >= interval:
                    done, total, phase, left, when = last
                    left = None if left is None else max(0.0, left - (time.time() - when))
                    self._last = (done, total, phase, left, time.time())
                    self._send(done, total, phase, left)

        thread = threading.Thread(target=beat, name="backsplit-prediction-heartbeat", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(timeout=10)

    def case_finished(self, index: int, message: str, data: dict) -> None:
        overall = self._done_before(index + 1)
        self._last = None
        with self._lock:
            self.progress(ProgressEvent("predict", message, overall, self.total,
                                        {"phase": "case done", "case_index": index, "cases": len(self.case_ids),
                                         "case_fraction": 1.0, **data}))

    def finished_message(self) -> str:
        spent = time.time() - self.started
        if self.estimate_s is None:
            return f"took {format_duration(spent)}"
        return f"took {format_duration(spent)} (estimated {format_duration(self.estimate_s)})"


def progress_display(event: ProgressEvent) -> Optional[tuple]:
    """What a panel shows for a prediction event: (percent or None, text with the time left); None for log lines
    (nnU-Net's own output, kept in the log file)."""
    if event.stage == Stage.LOG:
        return None
    percent = None if event.fraction is None else int(round(100 * event.fraction))
    left = (event.data or {}).get("seconds_left")
    text = event.message
    if left is not None and percent is not None and percent < 100:
        text += f" - about {format_duration(float(left))} left"
    return percent, text
