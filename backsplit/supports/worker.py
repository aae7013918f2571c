"""Organ-model generation in a child process (used by Slicer so the application never freezes; cancel ends the
process tree, TotalSegmentator's children included): ``python -m backsplit.supports.worker REQUEST.json``.
Writes ``<out>/<case>.seg.nrrd`` with the generated segments only (the scene adapter adds them to the case's
segmentation node); progress events on stdout, one per case with its file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from ..cases import Case
from ..errors import BackSplitError
from ..process import ChildProcess, PopenFactory, child_environment, python_executable
from ..progress import ProgressEvent, emit_event


@dataclass
class ImageOnlySource:
    """A case given by its image files alone (no segmentation): what Slicer writes for the worker."""
    case_id: str
    images: Sequence[Path]

    @property
    def description(self) -> str:
        return f"case '{self.case_id}'"

    def load(self) -> Case:
        from ..readers import read_image

        channels, geometries = zip(*(read_image(Path(p), self.case_id, f"image (channel {i})")
                                     for i, p in enumerate(self.images)))
        return Case(self.case_id, list(channels), geometries[0], {}, description=self.description)


@dataclass
class GenerationRequest:
    cases: list                          # [[case_id, [image paths, one per channel]], ...]
    out_dir: str
    model_dir: Optional[str] = None      # an nnU-Net model folder, or None for TotalSegmentator
    classes: list = field(default_factory=list)
    device: str = "auto"
    task: str = "total"
    fast: bool = False
    executable: Optional[str] = None
    use_mirroring: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @staticmethod
    def from_json(text: str) -> "GenerationRequest":
        return GenerationRequest(**json.loads(text))

    def runner(self):
        from .runners import NnUNetModelRunner, TotalSegmentatorRunner

        if self.model_dir:
            return NnUNetModelRunner(Path(self.model_dir), device=self.device, classes=self.classes or None,
                                     use_mirroring=self.use_mirroring)
        return TotalSegmentatorRunner(task=self.task, roi_subset=self.classes or None, fast=self.fast,
                                      device=self.device, executable=self.executable)


emit = emit_event   # one JSON event line per call, read back by the parent process


def main(argv: Optional[list] = None) -> int:
    from .generate import GenerateRequest, generate_supports

    argv = sys.argv[1:] if argv is None else argv
    try:
        request = GenerationRequest.from_json(Path(argv[0]).read_text(encoding="utf-8"))
        sources = [ImageOnlySource(case_id, [Path(p) for p in paths]) for case_id, paths in request.cases]
        outcomes = generate_supports(sources, request.runner(),
                                     GenerateRequest(Path(request.out_dir), include_user_segments=False), emit)
    except BackSplitError as exc:
        emit(ProgressEvent("error", str(exc)))
        return 1
    except Exception as exc:  # noqa: BLE001 - reported, traceback in the log
        traceback.print_exc()
        emit(ProgressEvent("error", f"generation failed: {type(exc).__name__}: {exc}"))
        return 2
    emit(ProgressEvent("done", f"{sum(o.status != 'failed' for o in outcomes)} of {len(outcomes)} case(s) done",
                       len(outcomes), len(outcomes), {"outcomes": [asdict(o) for o in outcomes]}))
    return 0


class GenerationProcess(ChildProcess):
    """The worker as a child process: ``start()``, ``poll_events()``, ``cancel()`` (whole tree)."""

    def __init__(self, request: GenerationRequest, python: Optional[str] = None,
                 popen: PopenFactory = subprocess.Popen, base_env=None):
        self.request = request
        handle, name = tempfile.mkstemp(prefix="backsplit-supports-", suffix=".json")
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(request.to_json())
        self.request_file = Path(name)
        env = child_environment(base_env)
        env["nnUNet_compile"] = "f"
        super().__init__([python or python_executable(), "-m", "backsplit.supports.worker", str(self.request_file)],
                         env, popen=popen)
        self.outcomes: list[dict] = []
        self.error: Optional[str] = None

    def poll_events(self) -> list[ProgressEvent]:
        events = super().poll_events()
        for event in events:
            if event.stage == "done":
                self.outcomes = list(event.data.get("outcomes", []))
            elif event.stage == "error":
                self.error = event.message
        return events


if __name__ == "__main__":
    sys.exit(main())
