"""Organ-model generation in a child process (used by Slicer so the application never freezes; cancel ends the
process tree, TotalSegmentator's children included): ``python -m backsplit.supports.worker REQUEST.json``.
The cases come as image files (``cases``) or, from the Slicer panel, handed over through files
(``handover_dir``: the panel reads each case's volumes from the scene in short timer steps and writes them for this
child, ``backsplit.io.handover``; the child asks for each case when it comes to it, so no whole volume is written on
Slicer's GUI thread in one go). Writes ``<out>/<case>.seg.nrrd`` with the generated segments only, and the same
cropped per class in ``<out>/<case>.crops/`` (the scene adapter adds them to the case's segmentation node, one
class per timer tick); progress events on stdout, one per case with its file and crops folder. A hand-over's cancel
(``handover.request_cancel``) is seen while waiting for a case, between cases and inside a TotalSegmentator run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from backsplit.io.cases import Case
from backsplit.io.handover import handed_cases, handover_cancelled
from backsplit.runtime.childprocess import PopenFactory
from backsplit.runtime.progress import ProgressEvent, Stage, emit_event
from backsplit.runtime.workerprocess import JsonRequest, WorkerProcess, run_worker


@dataclass
class ImageOnlySource:
    """A case given by its image files alone (no segmentation): what Slicer writes for the worker."""
    case_id: str
    images: Sequence[Path]

    @property
    def description(self) -> str:
        return f"case '{self.case_id}'"

    def load(self) -> Case:
        from backsplit.io.readers import read_image

        channels, geometries = zip(*(read_image(Path(p), self.case_id, f"image (channel {i})")
                                     for i, p in enumerate(self.images)))
        return Case(self.case_id, list(channels), geometries[0], {}, description=self.description)


@dataclass
class GenerationRequest(JsonRequest):
    cases: list                          # [[case_id, [image paths, one per channel]], ...]
    out_dir: str
    model_dir: Optional[str] = None      # an nnU-Net model folder, or None for TotalSegmentator
    classes: list = field(default_factory=list)
    device: str = "auto"
    task: str = "total"
    fast: bool = False
    executable: Optional[str] = None
    use_mirroring: bool = True
    handover_dir: Optional[str] = None   # the cases are handed over there instead (``handed``; ``cases`` empty)
    handed: list = field(default_factory=list)   # [[case_id, description, number of channels], ...]
    parent_pid: Optional[int] = None     # Slicer's process: the hand-over wait ends when it is gone

    def runner(self):
        from backsplit.supports.runners import NnUNetModelRunner, TotalSegmentatorRunner

        if self.model_dir:
            return NnUNetModelRunner(Path(self.model_dir), device=self.device, classes=self.classes or None,
                                     use_mirroring=self.use_mirroring)
        return TotalSegmentatorRunner(task=self.task, roi_subset=self.classes or None, fast=self.fast,
                                      device=self.device, executable=self.executable)


emit = emit_event   # one JSON event line per call, read back by the parent process


def main(argv: Optional[list] = None) -> int:
    """``python -m backsplit.supports.worker REQUEST.json``: generate, report events on stdout; exit 0, 1 (the
    user's error) or 2 (unexpected, traceback in the log)."""
    return run_worker(_generate, GenerationRequest, "generation", emit, argv)


def _generate(request: GenerationRequest) -> ProgressEvent:
    from backsplit.supports.generate import GenerateRequest, generate_supports

    root = Path(request.handover_dir) if request.handover_dir else None

    def cancelled() -> bool:
        return root is not None and handover_cancelled(root, request.parent_pid)
    try:
        runner = request.runner()
        if root is None:
            sources = [ImageOnlySource(case_id, [Path(p) for p in paths]) for case_id, paths in request.cases]
        else:   # channel counts checked before any case, as generate_supports checks image files
            for case_id, _description, channels in request.handed:
                runner.check_channels(int(channels), case_id)
            sources = handed_cases([entry[:2] for entry in request.handed], root, emit, request.parent_pid)
        outcomes = generate_supports(sources, runner, GenerateRequest(Path(request.out_dir),
                                                                      include_user_segments=False), _with_crops,
                                     cancelled)
    finally:
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
    return ProgressEvent(Stage.DONE, f"{sum(o.status != 'failed' for o in outcomes)} of {len(outcomes)} case(s) done",
                         len(outcomes), len(outcomes), {"outcomes": [asdict(o) for o in outcomes]})


def _with_crops(event: ProgressEvent) -> None:
    """Emit ``event``; a finished case's segments are first also written cropped per class (``data['crops']``), so
    that Slicer adds them one class per timer tick without reading the whole file (``handover.write_class_crops``)."""
    if event.stage == "generate" and event.data.get("status") == "done" and event.data.get("file"):
        from backsplit.io.handover import write_class_crops
        from backsplit.io.readers import read_seg_nrrd
        from backsplit.supports.generate import read_segment_tags
        from backsplit.supports.runners import MODEL_TAG

        path, case_id = Path(event.data["file"]), event.data["case"]
        content = read_seg_nrrd(path, case_id)
        model = next((t.get(MODEL_TAG, "") for t in read_segment_tags(path).values()), "")
        crops = write_class_crops(path.parent / f"{case_id}.crops", content.masks, content.geometry, content.colors,
                                  content.terminology, model)
        event = ProgressEvent(event.stage, event.message, event.current, event.total, dict(event.data,
                                                                                          crops=str(crops)))
    emit(event)


class GenerationProcess(WorkerProcess):
    """The worker as a child process: ``start()``, ``poll_events()``, ``cancel()`` (whole tree)."""

    def __init__(self, request: GenerationRequest, python: Optional[str] = None,
                 popen: PopenFactory = subprocess.Popen, base_env=None, request_file: Optional[Path] = None):
        """``request_file``: where the request is written (the panel: inside its temporary folder, removed with
        it); default a new temporary file."""
        super().__init__("backsplit.supports.worker", request, "backsplit-supports-", python, popen, base_env,
                         request_file=request_file)

    @property
    def outcomes(self) -> list[dict]:
        """One dict per case from the 'done' event (empty before it)."""
        return list(self.done_data.get("outcomes", []))


if __name__ == "__main__":
    sys.exit(main())
