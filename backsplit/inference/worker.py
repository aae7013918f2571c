"""Prediction child process (used by Slicer so the application never freezes):
``python -m backsplit.inference.worker REQUEST.json``; progress events on stdout, results as files."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from backsplit.evaluation.summary import DecisionRule
from backsplit.runtime.progress import ProgressEvent, Stage, emit_event
from backsplit.runtime.workerprocess import JsonRequest, run_worker


@dataclass
class PredictionRequest(JsonRequest):
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
    folds: Optional[list] = None      # a subset of the model's folds (nnU-Net's -f); None: every fold, ensembled
    scene_arrays: bool = False        # also write what a viewer's import needs (``scenearrays``; Slicer's panel)


emit = emit_event   # one JSON event line per call, read back by the parent process


def main(argv: Optional[list] = None) -> int:
    """``python -m backsplit.inference.worker REQUEST.json``: predict, report events on stdout; exit 0, 1 (the
    user's error) or 2 (unexpected, traceback in the log)."""
    return run_worker(_predict, PredictionRequest, "prediction", emit, argv)


def _predict(request: PredictionRequest) -> ProgressEvent:
    from backsplit.inference.files import InputCase, predict_files

    inputs = [InputCase(case_id, [Path(p) for p in paths]) for case_id, paths in request.inputs]
    summaries = predict_files(Path(request.model_dir), inputs, Path(request.out_dir), device=request.device,
                              lesion_only=request.lesion_only, probabilities=request.probabilities,
                              output_format=request.output_format,
                              rule=DecisionRule(request.threshold, request.min_volume_ml),
                              overwrite=request.overwrite, use_mirroring=request.use_mirroring, progress=emit,
                              estimate=request.estimate, folds=request.folds)
    if request.scene_arrays:   # the whole-volume reading and cropping happen here, not in the viewer's process
        _write_scene_arrays(request, [s.case_id for s in summaries])
    return ProgressEvent(Stage.DONE, f"predicted {len(summaries)} case(s)", len(summaries), len(summaries),
                         {"summaries": [s.to_json() for s in summaries], "out_dir": request.out_dir})


def _write_scene_arrays(request: PredictionRequest, case_ids: list) -> None:
    from backsplit.inference.model import read_model_info
    from backsplit.inference.scenearrays import write_scene_arrays

    schema = read_model_info(Path(request.model_dir), folds=request.folds).schema
    count = len(schema.targets if request.lesion_only else schema.classes)
    for index, case_id in enumerate(case_ids):
        emit(ProgressEvent("predict", f"case '{case_id}': preparing the result for the scene", None, None,
                           {"phase": "scene arrays", "case_index": index}))
        write_scene_arrays(Path(request.out_dir), case_id, count)


if __name__ == "__main__":
    sys.exit(main())
