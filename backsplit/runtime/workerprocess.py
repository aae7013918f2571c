"""The one child-process protocol of BackSplit: ``python -m <module> REQUEST.json``, JSON events out.

Prediction (``inference/worker.py``), organ-model generation (``supports/worker.py``), the learned-context view
(``training/colab/show_process.py``), training (``training/worker.py``, options file in the work folder) and the
Slicer panel's export, *Suggest* and *Add to dataset* (``datasets/export_worker.py``, ``supports/suggest_worker.py``,
``datasets/add_worker.py``, their cases handed over as files: ``io/handover.py``) all follow it; a study unit
(``study/runtask.py``) ends the same way, with its outcome also in ``status.json``.

* Parent: a request dataclass (``JsonRequest``) is written to a file (``write_request_file``, or a file the caller
  names); ``WorkerProcess`` starts the worker with ``worker_environment`` (this package on PYTHONPATH, unbuffered
  output, ``nnUNet_compile=f``; the caller's own environment is never changed) and follows it through
  ``ChildProcess``: progress events from stdout, ``cancel()`` ends the whole process tree, no console window on
  Windows. ``poll_events`` records the ``done`` event's data, the ``error`` event's message and the ``estimate``,
  and appends the child's output to ``log_file`` when one is given.
* Child: ``run_worker`` is the worker's ``main``: it reads the request back, runs the job, emits the ``done`` event
  the job returns, or an ``error`` event; ``finish_job`` maps the exception to the exit status
  (``backsplit.runtime.exits``: 0 done, 1 the user's error / full disk / out of memory, 2 unexpected, 130
  cancelled).
* Stages: ``backsplit.runtime.progress.Stage`` (``done``, ``error``, ``log``, ``warning``, ``estimate``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional, Sequence, Type, TypeVar

from backsplit.runtime.childprocess import ChildProcess, PopenFactory, child_environment, python_executable
from backsplit.runtime.exits import DISK_FULL_HINT, EXIT_DONE, EXIT_UNEXPECTED, OUT_OF_MEMORY_HINT, ended_text, failure
from backsplit.runtime.progress import ProgressCallback, ProgressEvent, Stage, emit_event

R = TypeVar("R", bound="JsonRequest")


class JsonRequest:
    """Mixin for a worker's request dataclass: its fields as JSON and back (only JSON types in the fields)."""

    def to_json(self) -> str:
        """The request as an indented JSON object, one key per dataclass field."""
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls: Type[R], text: str) -> R:
        """The request written by ``to_json``; raises TypeError for an unknown or missing field."""
        return cls(**json.loads(text))


def write_request_file(request: JsonRequest, prefix: str, path: Optional[Path] = None) -> Path:
    """Write ``request.to_json()`` into ``path``, or a new temporary file ``<prefix>*.json``; return its path."""
    if path is not None:
        Path(path).write_text(request.to_json(), encoding="utf-8")
        return Path(path)
    handle, name = tempfile.mkstemp(prefix=prefix, suffix=".json")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(request.to_json())
    return Path(name)


def worker_command(module: str, request_file: Path, python: Optional[str] = None) -> list[str]:
    """``[python, "-m", module, request_file]``; ``python`` defaults to ``python_executable()``."""
    return [python or python_executable(), "-m", module, str(request_file)]


def append_log(path: Path, events: Iterable[ProgressEvent], own_events: bool = True) -> None:
    """Append a child's output to the text file ``path`` (its folder is made): third-party output (``log`` events)
    as it came, and, with ``own_events``, BackSplit's own events as "[backsplit <stage>] <message>" lines."""
    lines = [e.message if e.stage == Stage.LOG else f"[backsplit {e.stage}] {e.message}" for e in events
             if own_events or e.stage == Stage.LOG]
    if lines:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8", errors="replace") as out:
            out.write("\n".join(lines) + "\n")


def worker_environment(base_env: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The worker's environment: ``child_environment`` plus ``nnUNet_compile=f`` (no torch.compile start-up wait);
    the calling process's own environment is not changed."""
    env = child_environment(base_env)
    env["nnUNet_compile"] = "f"
    return env


class EventRecord:
    """What a parent keeps of a worker's events (a local child or a SLURM job alike): the ``done`` event's data,
    the ``error`` event's message, the last ``estimate`` event's data, and the output in ``log_file``."""

    def init_record(self, log_file: Optional[Path] = None, log_own_events: bool = True) -> None:
        """Start with nothing recorded (call from ``__init__``); ``log_file``: where the output is appended (None:
        not kept), with BackSplit's own events too when ``log_own_events``."""
        self.error: Optional[str] = None      # the message of the worker's 'error' event
        self.done_data: dict = {}             # the data of the worker's 'done' event (``run_worker``)
        self.estimate: Optional[dict] = None  # the data of the last 'estimate' event
        self.log_file = log_file              # the child's output appended here (None: not kept)
        self.log_own_events = log_own_events  # also BackSplit's own events in ``log_file``

    def record(self, events: list[ProgressEvent]) -> list[ProgressEvent]:
        """Record ``events`` (see the class doc) and return them."""
        if self.log_file is not None:
            append_log(self.log_file, events, self.log_own_events)
        for event in events:
            if event.stage == Stage.DONE:
                self.done_data = dict(event.data)
            elif event.stage == Stage.ERROR:
                self.error = event.message
            elif event.stage == Stage.ESTIMATE:
                self.estimate = dict(event.data)
        return events


class WorkerProcess(EventRecord, ChildProcess):
    """``python -m <module> <request file>`` as a child: ``start()``, ``poll_events()``, ``cancel()`` (whole tree).

    ``module`` is the worker's module name (``backsplit.inference.worker``), ``prefix`` the request file's name
    prefix (a temporary file) unless ``request_file`` names the file, ``python`` the interpreter (default:
    ``python_executable()``, PythonSlicer inside Slicer), ``base_env`` the environment the worker's is built from
    (default: this process's). ``log_file``: the child's output is appended there (``append_log``)."""

    def __init__(self, module: str, request: JsonRequest, prefix: str = "backsplit-", python: Optional[str] = None,
                 popen: PopenFactory = subprocess.Popen, base_env: Optional[Mapping[str, str]] = None, *,
                 request_file: Optional[Path] = None, log_file: Optional[Path] = None, log_own_events: bool = True):
        self.request = request
        self.request_file = write_request_file(request, prefix, request_file)
        super().__init__(worker_command(module, self.request_file, python), worker_environment(base_env),
                         popen=popen)
        self.init_record(log_file, log_own_events)

    def poll_events(self) -> list[ProgressEvent]:
        """New events since the last call (never blocks); records them (``EventRecord.record``)."""
        return self.record(super().poll_events())

    @property
    def failure(self) -> Optional[str]:
        """The user's message once the child failed: its ``error`` event, else why it ended (a signal, an exit
        code; ``exits.ended_text``) with the last log lines. None while running, after success or a cancel."""
        code = self.returncode
        if code in (None, EXIT_DONE) or self.cancelled:
            return None
        if self.error:
            return self.error
        tail = "\n".join(self.log_lines[-10:])
        return f"the worker {ended_text(code)} without a message" + (f"; its last output:\n{tail}" if tail else "")


@dataclass
class JobEnd:
    """How a job ended: its exit status (``backsplit.runtime.exits``) and its last event (the ``done`` event it
    returned, or an ``error`` event whose message is the user's message)."""
    code: int
    event: ProgressEvent

    @property
    def ok(self) -> bool:
        """True when the job finished (exit status 0)."""
        return self.code == EXIT_DONE


def finish_job(job: Callable[[], ProgressEvent], failed: Optional[str] = None, *, disk_full: str = DISK_FULL_HINT,
               out_of_memory: str = OUT_OF_MEMORY_HINT) -> JobEnd:
    """Run ``job()`` (it returns its ``done`` event) and say how it ended; never raises an ``Exception``.

    The exception of a failed job becomes the ``error`` event's message and the exit status through
    ``exits.failure`` (``failed``, ``disk_full``, ``out_of_memory``: see there); for an unexpected one (status 2)
    the traceback is printed for the log."""
    try:
        return JobEnd(EXIT_DONE, job())
    except Exception as exc:  # noqa: BLE001 - reported to the user, traceback in the log when unexpected
        code, message = failure(exc, failed, disk_full=disk_full, out_of_memory=out_of_memory)
        if code == EXIT_UNEXPECTED:
            traceback.print_exc()
        return JobEnd(code, ProgressEvent(Stage.ERROR, message))


def run_worker(job: Callable[[R], ProgressEvent], request_type: Type[R], failed: str,
               emit: ProgressCallback = emit_event, argv: Optional[Sequence[str]] = None, *,
               disk_full: str = DISK_FULL_HINT, out_of_memory: str = OUT_OF_MEMORY_HINT) -> int:
    """A worker's ``main``: read the ``request_type`` request from the file named by ``argv[0]`` (default: the
    command line's first argument), run ``job(request)``, emit the ``done`` event it returns; return the exit
    status.

    Failures as ``finish_job`` maps them: a ``BackSplitError``, a full disk or an out-of-memory error gives an
    ``error`` event with the user's message (exit 1); any other exception (an unreadable request included)
    "<failed> failed: <type>: <message>" with the traceback printed for the log (exit 2). Without exactly one
    argument: a usage line on stderr, exit 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if len(argv) != 1:
        print(f"usage: python -m {getattr(job, '__module__', 'WORKER')} REQUEST.json", file=sys.stderr)
        return EXIT_UNEXPECTED
    end = finish_job(lambda: job(request_type.from_json(Path(argv[0]).read_text(encoding="utf-8"))), failed,
                     disk_full=disk_full, out_of_memory=out_of_memory)
    emit(end.event)
    return end.code
