"""Prediction in a child process: ``PredictionProcess(request).start()``, ``poll_events()``, ``cancel()``."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional

from backsplit.runtime.childprocess import PopenFactory
from backsplit.runtime.progress import ProgressEvent
from backsplit.training.process import append_log
from backsplit.runtime.workerprocess import WorkerProcess
from backsplit.inference.worker import PredictionRequest


class PredictionProcess(WorkerProcess):
    """``python -m backsplit.inference.worker REQUEST.json`` as a child (see ``WorkerProcess``); collects the
    'estimate' and the case summaries of the 'done' event, and the nnU-Net/torch output into the output folder's
    ``backsplit.log``."""

    def __init__(self, request: PredictionRequest, python: Optional[str] = None,
                 popen: PopenFactory = subprocess.Popen, base_env=None):
        super().__init__("backsplit.inference.worker", request, "backsplit-predict-", python, popen, base_env)
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
        return events

    @property
    def summaries(self) -> list[dict]:
        """The case summaries of the 'done' event (empty before it)."""
        return list(self.done_data.get("summaries", []))
