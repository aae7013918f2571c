"""Prediction in a child process: ``PredictionProcess(request).start()``, ``poll_events()``, ``cancel()``."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any, Optional

from backsplit.inference.worker import PredictionRequest
from backsplit.runtime.childprocess import PopenFactory
from backsplit.runtime.workerprocess import WorkerProcess

MODULE = "backsplit.inference.worker"


class PredictionProcess(WorkerProcess):
    """``python -m backsplit.inference.worker REQUEST.json`` as a child (see ``WorkerProcess``); collects the
    'estimate' and the case summaries of the 'done' event, and the nnU-Net/torch output into the output folder's
    ``backsplit.log``.

    ``work_dir``: a folder of the caller's (e.g. the Slicer panel's temporary inputs) that goes with the job and is
    removed by whoever imports the result; ``model_info``: the ``inference.model.ModelInfo`` read before the start
    (the class names and variant for the import). Both are kept as given; the worker never reads them."""

    def __init__(self, request: PredictionRequest, python: Optional[str] = None,
                 popen: PopenFactory = subprocess.Popen, base_env=None, *, work_dir: Optional[Path] = None,
                 model_info: Any = None):
        super().__init__(MODULE, request, "backsplit-predict-", python, popen, base_env,
                         log_file=Path(request.out_dir) / "backsplit.log",   # nnU-Net's and torch's own output
                         log_own_events=False,   # the request goes with work_dir (removed with it), else a temp file
                         request_file=Path(work_dir) / "request.json" if work_dir is not None else None)
        self.work_dir: Optional[Path] = Path(work_dir) if work_dir is not None else None
        self.model_info = model_info

    @property
    def lesion_only(self) -> bool:
        """The request's choice: only the target classes are written (and imported)."""
        return bool(self.request.lesion_only)

    @property
    def summaries(self) -> list[dict]:
        """The case summaries of the 'done' event (empty before it)."""
        return list(self.done_data.get("summaries", []))
