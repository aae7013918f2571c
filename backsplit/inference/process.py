"""Prediction in a child process: ``PredictionProcess(request).start()``, ``poll_events()``, ``cancel()``."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

from ..process import ChildProcess, PopenFactory, child_environment, python_executable
from ..progress import ProgressEvent
from ..training.process import append_log
from .worker import PredictionRequest


class PredictionProcess(ChildProcess):
    def __init__(self, request: PredictionRequest, python: Optional[str] = None,
                 popen: PopenFactory = subprocess.Popen, base_env=None):
        self.request = request
        handle, name = tempfile.mkstemp(prefix="backsplit-predict-", suffix=".json")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(request.to_json())
        self.request_file = Path(name)
        env = child_environment(base_env)
        env["nnUNet_compile"] = "f"
        super().__init__([python or python_executable(), "-m", "backsplit.inference.worker", str(self.request_file)],
                         env, popen=popen)
        self.summaries: list[dict] = []
        self.error: Optional[str] = None
        self.estimate: Optional[dict] = None
        self.log_file = Path(request.out_dir) / "backsplit.log"   # nnU-Net's and torch's own output, kept aside

    def poll_events(self) -> list[ProgressEvent]:
        events = super().poll_events()
        if any(e.stage == "log" for e in events):
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            append_log(self.log_file, [e for e in events if e.stage == "log"])
        for event in events:
            if event.stage == "estimate":
                self.estimate = dict(event.data)
            elif event.stage == "done":
                self.summaries = list(event.data.get("summaries", []))
            elif event.stage == "error":
                self.error = event.message
        return events
