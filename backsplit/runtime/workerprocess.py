"""A BackSplit worker module run as a child process on a JSON request file: ``python -m <module> REQUEST.json``.

Shared by prediction (``inference/worker.py``) and organ-model generation (``supports/worker.py``); training has
its own starter (``training/process.py``: options file in the work folder, nnU-Net variables for its dataset).
The parent writes the request into a temporary file, starts the worker with ``child_environment`` (this package
on PYTHONPATH, unbuffered output) and ``nnUNet_compile=f`` in the child's environment only, and follows it through
``ChildProcess`` (progress events from stdout, ``cancel()`` ends the whole process tree, no console window on
Windows). The worker's ``main`` is ``run_worker``: it reads the request back, runs the job and reports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence, Type, TypeVar

from backsplit.errors import BackSplitError
from backsplit.runtime.childprocess import ChildProcess, PopenFactory, child_environment, python_executable
from backsplit.runtime.progress import ProgressCallback, ProgressEvent, emit_event

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


def write_request_file(request: JsonRequest, prefix: str) -> Path:
    """Write ``request.to_json()`` into a new temporary file ``<prefix>*.json`` and return its path."""
    handle, name = tempfile.mkstemp(prefix=prefix, suffix=".json")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(request.to_json())
    return Path(name)


def worker_environment(base_env: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The worker's environment: ``child_environment`` plus ``nnUNet_compile=f`` (no torch.compile start-up wait);
    the calling process's own environment is not changed."""
    env = child_environment(base_env)
    env["nnUNet_compile"] = "f"
    return env


class WorkerProcess(ChildProcess):
    """``python -m <module> <request file>`` as a child: ``start()``, ``poll_events()``, ``cancel()`` (whole tree).

    ``module`` is the worker's module name (``backsplit.inference.worker``), ``prefix`` the request file's name
    prefix, ``python`` the interpreter (default: ``python_executable()``, PythonSlicer inside Slicer)."""

    def __init__(self, module: str, request: JsonRequest, prefix: str, python: Optional[str] = None,
                 popen: PopenFactory = subprocess.Popen, base_env: Optional[Mapping[str, str]] = None):
        self.request = request
        self.request_file = write_request_file(request, prefix)
        super().__init__([python or python_executable(), "-m", module, str(self.request_file)],
                         worker_environment(base_env), popen=popen)
        self.error: Optional[str] = None    # the message of the worker's 'error' event
        self.done_data: dict = {}           # the data of the worker's 'done' event (``run_worker``)

    def poll_events(self) -> list[ProgressEvent]:
        """New events since the last call; records the 'done' event's data and the 'error' event's message."""
        events = super().poll_events()
        for event in events:
            if event.stage == "done":
                self.done_data = dict(event.data)
            elif event.stage == "error":
                self.error = event.message
        return events


def run_worker(job: Callable[[R], ProgressEvent], request_type: Type[R], failed: str,
               emit: ProgressCallback = emit_event, argv: Optional[Sequence[str]] = None) -> int:
    """A worker's ``main``: read the ``request_type`` request from the file named by ``argv[0]`` (default: the
    command line's first argument), run ``job(request)``, emit the ``"done"`` event it returns; return the exit
    status.

    A ``BackSplitError`` is emitted as an ``"error"`` event with its message (exit 1); any other exception (a
    missing argument included) as "<failed> failed: <type>: <message>" with the traceback printed for the log
    (exit 2); success exits 0."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        done = job(request_type.from_json(Path(argv[0]).read_text(encoding="utf-8")))
    except BackSplitError as exc:
        emit(ProgressEvent("error", str(exc)))
        return 1
    except Exception as exc:  # noqa: BLE001 - reported, traceback in the log
        traceback.print_exc()
        emit(ProgressEvent("error", f"{failed} failed: {type(exc).__name__}: {exc}"))
        return 2
    emit(done)
    return 0
