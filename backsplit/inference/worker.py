"""Prediction child process (used by Slicer so the application never freezes):
``python -m backsplit.inference.worker REQUEST.json``; progress events on stdout, results as files."""

from __future__ import annotations

import json
import sys
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from ..errors import BackSplitError
from ..progress import ProgressEvent, emit_event
from ..summary import DecisionRule


@dataclass
class PredictionRequest:
    model_dir: str
    inputs: list                      # [[case_id, [image paths, one per channel]], ...]
    out_dir: str
    device: str = "auto"
    lesion_only: bool = False
    probabilities: bool = False
    output_format: str = "nii.gz"
    threshold: float = 0.5
    min_volume_ml: float = 0.0
    overwrite: bool = False
    use_mirroring: bool = True
    estimate: bool = True             # time a few tiles first and report the expected duration ('estimate' event)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @staticmethod
    def from_json(text: str) -> "PredictionRequest":
        return PredictionRequest(**json.loads(text))


emit = emit_event   # one JSON event line per call, read back by the parent process


def main(argv: Optional[list] = None) -> int:
    from .files import InputCase, predict_files

    argv = sys.argv[1:] if argv is None else argv
    try:
        request = PredictionRequest.from_json(Path(argv[0]).read_text(encoding="utf-8"))
        inputs = [InputCase(case_id, [Path(p) for p in paths]) for case_id, paths in request.inputs]
        summaries = predict_files(Path(request.model_dir), inputs, Path(request.out_dir), device=request.device,
                                  lesion_only=request.lesion_only, probabilities=request.probabilities,
                                  output_format=request.output_format,
                                  rule=DecisionRule(request.threshold, request.min_volume_ml),
                                  overwrite=request.overwrite, use_mirroring=request.use_mirroring, progress=emit,
                                  estimate=request.estimate)
    except BackSplitError as exc:
        emit(ProgressEvent("error", str(exc)))
        return 1
    except Exception as exc:  # noqa: BLE001 - reported, traceback in the log
        traceback.print_exc()
        emit(ProgressEvent("error", f"prediction failed: {type(exc).__name__}: {exc}"))
        return 2
    emit(ProgressEvent("done", f"predicted {len(summaries)} case(s)", len(summaries), len(summaries),
                       {"summaries": [s.to_json() for s in summaries], "out_dir": request.out_dir}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
