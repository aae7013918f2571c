"""Progress events shared by every long job (export, training, prediction).

An event is a small JSON-serialisable record. Jobs call a ``ProgressCallback``; child processes write
one JSON object per line, which ``parse_event_line`` turns back into an event. The command line
renders events as a text progress bar, the Slicer panels as a progress bar (and curves for training).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional, TextIO


@dataclass
class ProgressEvent:
    stage: str                    # e.g. "export", "plan", "preprocess", "train", "predict", "done", "error"
    message: str = ""
    current: Optional[int] = None  # units done (cases, epochs, ...)
    total: Optional[int] = None    # units in all
    data: dict[str, Any] = field(default_factory=dict)  # stage specific numbers (losses, dice, ...)
    time: float = field(default_factory=time.time)

    @property
    def fraction(self) -> Optional[float]:
        if self.current is None or not self.total:
            return None
        return max(0.0, min(1.0, self.current / self.total))

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=_json_default)


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays, paths
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


ProgressCallback = Callable[[ProgressEvent], None]


EVENT_PREFIX = "@backsplit-event "


def format_event_line(event: ProgressEvent) -> str:
    """One line for a child process's stdout; the prefix keeps it apart from nnU-Net's own prints."""
    return EVENT_PREFIX + event.to_json()


def parse_event_line(line: str) -> Optional[ProgressEvent]:
    """Parse a line written by ``format_event_line`` (or a bare ``ProgressEvent.to_json``); other lines give None."""
    line = line.strip()
    if line.startswith(EVENT_PREFIX.strip()):
        line = line[len(EVENT_PREFIX.strip()):].strip()
    if not line.startswith("{"):
        return None
    try:
        raw = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(raw, dict) or "stage" not in raw:
        return None
    return ProgressEvent(stage=str(raw["stage"]), message=str(raw.get("message", "")),
                         current=raw.get("current"), total=raw.get("total"),
                         data=dict(raw.get("data") or {}), time=float(raw.get("time", time.time())))


def ignore_progress(event: ProgressEvent) -> None:
    """A ProgressCallback that does nothing."""


class TextProgressBar:
    """Renders events as a one-line progress bar on a terminal (plain lines when not a TTY)."""

    def __init__(self, stream: TextIO | None = None, width: int = 30):
        self.stream = stream or sys.stderr
        self.width = width
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._last_line = ""

    def __call__(self, event: ProgressEvent) -> None:
        frac = event.fraction
        if frac is not None:
            filled = int(round(frac * self.width))
            bar = "#" * filled + "-" * (self.width - filled)
            line = f"[{bar}] {event.current}/{event.total} {event.stage}: {event.message}"
        else:
            line = f"{event.stage}: {event.message}"
        if self._tty:
            self.stream.write("\r" + line.ljust(len(self._last_line)))
            if event.stage in ("done", "error") or (frac is not None and frac >= 1.0):
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self._last_line = line
