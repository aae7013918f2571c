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


class Stage:
    """The lifecycle stages every producer and consumer of events shares (plain strings on the wire, so an event
    line from an older or newer BackSplit still parses). A job's own stages ("export", "plan", "preprocess",
    "train", "epoch", "predict", "generate", ...) are named by the job itself.

    Plain string constants rather than an ``enum``: a (str, Enum) member hashes by its name and formats as
    ``Stage.DONE`` on Python 3.12, which would break ``event.stage in {...}`` lookups and the rendered lines."""
    DONE = "done"            # the job's last event on success; its data carries the result
    ERROR = "error"          # the job's last event on failure; its message is the user's error
    LOG = "log"              # a line of third-party output (nnU-Net, torch) read from a child's stdout
    WARNING = "warning"      # something the user should know; the job goes on
    ESTIMATE = "estimate"    # the up-front duration estimate (data: ``seconds`` and the estimate's parts)


FINAL_STAGES = (Stage.DONE, Stage.ERROR)


@dataclass
class ProgressEvent:
    stage: str                    # a ``Stage`` constant, or the job's own stage ("export", "plan", "train", ...)
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


def emit_event(event: ProgressEvent) -> None:
    """Print one event as a prefixed JSON line on stdout and flush: how every child process (training, prediction,
    organ-model generation) reports to its parent, which reads it back with ``parse_event_line``."""
    sys.stdout.write(format_event_line(event) + "\n")
    sys.stdout.flush()


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
    """Renders events as a progress bar: one line rewritten in place on a terminal; on a pipe, log file or SLURM
    output, sparse plain lines (a new stage or phase, every ``step`` of progress, at most every ``interval`` seconds
    otherwise) so logs stay short. Identical consecutive lines are never printed twice. An event's
    ``data["seconds_left"]`` is shown as the time left."""

    def __init__(self, stream: TextIO | None = None, width: int = 30, *, tty: Optional[bool] = None,
                 step: float = 0.1, interval: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.stream = stream or sys.stderr
        self.width = width
        self._tty = (hasattr(self.stream, "isatty") and self.stream.isatty()) if tty is None else tty
        self.step, self.interval, self._clock = step, interval, clock
        self._last_line = ""
        self._open = False            # a bar line is on screen without its newline (TTY)
        self._printed_key: tuple = ()
        self._printed_at = -1e18
        self._printed_fraction = -1.0

    def render(self, event: ProgressEvent) -> str:
        """The text of one event: bar, percent, stage, message, time left."""
        frac = event.fraction
        left = (event.data or {}).get("seconds_left")
        tail = f", about {format_duration(float(left))} left" if left is not None and frac is not None and \
            frac < 1.0 else ""
        if frac is None:
            return f"{event.stage}: {event.message}"
        filled = int(round(frac * self.width))
        bar = "#" * filled + "-" * (self.width - filled)
        return f"[{bar}] {100 * frac:3.0f}% {event.stage}: {event.message}{tail}"

    def __call__(self, event: ProgressEvent) -> None:
        line = self.render(event)
        frac = event.fraction
        final = event.stage in FINAL_STAGES or (frac is not None and frac >= 1.0)
        if self._tty:
            self._write_tty(line, frac is not None and not final)
        else:
            self._write_plain(event, line, frac, final)
        self.stream.flush()

    def _write_tty(self, line: str, keep_open: bool) -> None:
        if line == self._last_line and self._open == keep_open:
            return
        import shutil

        columns = max(20, shutil.get_terminal_size((120, 20)).columns - 1)
        line_shown = line if len(line) <= columns else line[: columns - 3] + "..."
        if keep_open:
            self.stream.write("\r" + line_shown.ljust(len(self._last_line) if self._open else 0))
        else:
            self.stream.write(("\r" if self._open else "") + line_shown.ljust(len(self._last_line) if self._open
                                                                             else 0) + "\n")
        self._open = keep_open
        self._last_line = line_shown

    def _write_plain(self, event: ProgressEvent, line: str, frac: Optional[float], final: bool) -> None:
        if line == self._last_line:
            return
        now = self._clock()
        key = (event.stage, (event.data or {}).get("phase"), (event.data or {}).get("case"))
        if frac is not None and not final and key == self._printed_key:
            due = frac >= self._printed_fraction + self.step - 1e-9 or now - self._printed_at >= self.interval
            if not due:
                return
        self.stream.write(line + "\n")
        self._last_line, self._printed_key, self._printed_at = line, key, now
        self._printed_fraction = frac if frac is not None else -1.0


class Eta:
    """Time left from progress so far: elapsed time since the first sample over the fraction done since then.

    Starts at the first ``update`` (so set-up before the work, e.g. loading a model, does not count). Returns None
    until some progress has been made.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._start: Optional[tuple[float, float]] = None

    def update(self, fraction: float) -> Optional[float]:
        now = self._clock()
        if self._start is None:
            self._start = (now, fraction)
            return None
        t0, f0 = self._start
        if fraction <= f0 or now <= t0:
            return None
        return max(0.0, (now - t0) / (fraction - f0) * (1.0 - fraction))


def format_duration(seconds: float) -> str:
    """'45 s', '3 min 05 s', '2 h 10 min'."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
