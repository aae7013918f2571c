"""Organ models behind one interface: give a case, get named masks on the case's own image grid.

* ``NnUNetModelRunner``: any nnU-Net v2 model folder (a BackSplit model, a user's organ model, TotalSegmentator's
  task folders on disk) through BackSplit's own prediction engine (``backsplit.inference``: nnU-Net's predictor,
  lossless reorientation to the training orientation and back, labels on the input's exact grid).
* ``TotalSegmentatorRunner``: the ``TotalSegmentator`` command (pip package) in a child process per case (cancel ends
  the whole process tree), multi-label output (``--ml``) read with its class map.

Segment names are the model's class names (TotalSegmentator's own names kept, e.g. ``kidney_right``); colours come
from the model's manifest when it has them, else a muted support palette; terminology from the manifest, else the
well-known-name table (``backsplit.labels.terminology``: ``kidney_right`` -> SNOMED CT Kidney, modifier Right).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Protocol, Sequence

import numpy as np

from backsplit.errors import CancelledError, InputError
from backsplit.io.cases import Case
from backsplit.io.geometry import Geometry
from backsplit.labels.schema import SUPPORT_COLORS
from backsplit.labels.terminology import class_terminology
from backsplit.runtime.progress import ProgressCallback, ProgressEvent, ignore_progress

GENERATED_TAG = "BackSplit.Generated"
MODEL_TAG = "BackSplit.Model"
TOTALSEGMENTATOR_INSTALL = ("install it with 'pip install TotalSegmentator' into the Python that runs BackSplit (it "
                            "downloads its weights on first use), or give its path with --executable; in 3D Slicer, "
                            "install the TotalSegmentator extension from the Extensions Manager")


@dataclass
class GeneratedSegments:
    """What a model found in one case: boolean masks (z, y, x) on the case's image grid, by segment name."""
    masks: dict[str, np.ndarray]
    colors: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    terminology: dict[str, str] = field(default_factory=dict)
    model: str = ""
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


class OrganModelRunner(Protocol):
    description: str  # recorded in the generated segments' tags ("nnU-Net model <folder>", "TotalSegmentator ...")

    def class_names(self) -> Optional[list[str]]:
        """Classes the runner will produce (after the subset), or None when the model cannot tell before a run."""

    def check_channels(self, n_channels: int, case_id: str) -> None:
        """Raise InputError when a case with this many image channels cannot be run."""

    def prepare(self, progress: ProgressCallback = ignore_progress) -> None:
        """Load what is shared by all cases (network weights); called once before the first case."""

    def segment(self, case: Case, image_paths: Sequence[Path],
                cancel: Callable[[], bool] = lambda: False) -> GeneratedSegments:
        """Run the model on one case; masks on ``case.geometry``. Raises CancelledError, InputError."""


def appearance(names: Sequence[str], colors: Optional[dict] = None, entries: Optional[dict] = None):
    """(colours, terminology) for class names: the model's own when given, else muted palette / well-known names."""
    out_colors, out_terms = {}, {}
    for index, name in enumerate(names):
        color = (colors or {}).get(name)
        out_colors[name] = tuple(float(c) for c in color[:3]) if color else SUPPORT_COLORS[index % len(SUPPORT_COLORS)]
        entry = class_terminology(name, entries or {})
        if entry:
            out_terms[name] = entry
    return out_colors, out_terms


def check_subset(subset: Optional[Sequence[str]], available: Sequence[str], what: str) -> Optional[list[str]]:
    """The subset in the model's spelling; InputError listing the valid classes for a name the model lacks."""
    if not subset:
        return None
    by_key = {n.casefold(): n for n in available}
    unknown = [n for n in subset if n.casefold() not in by_key]
    if unknown:
        raise InputError(f"{what} has no class {', '.join(repr(n) for n in unknown)}; its classes are: "
                         f"{', '.join(available)}")
    return [by_key[n.casefold()] for n in subset]


# ---- any nnU-Net v2 model folder ------------------------------------------------------------------------------------
def external_manifest(folder: Path, orientation: Optional[str] = None) -> dict:
    """A stand-in manifest for a plain nnU-Net v2 model folder (``inference.model.plain_model_manifest``): every
    foreground label is a class. ``orientation``: the orientation code the model was trained in, when known."""
    from backsplit.inference.model import plain_model_manifest

    return plain_model_manifest(folder, orientation)


class NnUNetModelRunner:
    """An nnU-Net v2 model folder run in this process by ``backsplit.inference`` (same guarantees as predict)."""

    def __init__(self, model_dir: Path, *, device: str = "auto", classes: Optional[Sequence[str]] = None,
                 use_mirroring: bool = True, orientation: Optional[str] = None):
        from backsplit.inference.model import read_model_info
        from backsplit.training.manifest import MANIFEST_NAME

        self.model_dir = Path(model_dir)
        manifest = None if (self.model_dir / MANIFEST_NAME).is_file() else \
            external_manifest(self.model_dir, orientation)
        self.info = read_model_info(self.model_dir, manifest=manifest)
        self.device = device
        self.use_mirroring = use_mirroring
        names = [spec.name for spec in self.info.schema.classes]
        self.subset = check_subset(classes, names, f"the model '{self.model_dir.name}'")
        self.description = f"nnU-Net model {self.model_dir.resolve()}"
        specs = {spec.name: spec for spec in self.info.schema.classes}
        self.colors, self.terminology = appearance(
            names, {n: s.color for n, s in specs.items()} if manifest is None else None,
            {n: s.terminology for n, s in specs.items() if s.terminology})
        self.predictor = None

    def class_names(self) -> list[str]:
        return list(self.subset) if self.subset else [spec.name for spec in self.info.schema.classes]

    def check_channels(self, n_channels: int, case_id: str) -> None:
        expected = self.info.channel_names
        if n_channels != len(expected):
            raise InputError(f"the case has {n_channels} image channel(s) but the organ model takes {len(expected)} "
                             f"({', '.join(expected)}); give cases with matching channels or another model",
                             case=case_id)

    def prepare(self, progress: ProgressCallback = ignore_progress) -> None:
        from backsplit.inference.model import load_predictor

        if self.predictor is None:
            progress(ProgressEvent("generate", f"loading the organ model ({self.info.configuration})"))
            self.predictor = load_predictor(self.info, self.device, use_mirroring=self.use_mirroring)

    def segment(self, case: Case, image_paths: Sequence[Path],
                cancel: Callable[[], bool] = lambda: False) -> GeneratedSegments:
        from backsplit.inference.predict import predict_arrays

        self.check_channels(len(case.channels), case.case_id)
        self.prepare()
        prediction = predict_arrays(self.predictor, self.info, case.channels, case.geometry, probabilities=False,
                                    case=case.case_id)
        wanted = set(self.class_names())
        masks = {spec.name: prediction.labels == value
                 for value, spec in enumerate(self.info.schema.classes, start=1) if spec.name in wanted}
        return GeneratedSegments(masks, {n: self.colors[n] for n in masks},
                                 {n: self.terminology[n] for n in masks if n in self.terminology},
                                 self.description, list(prediction.warnings), prediction.seconds)


# ---- TotalSegmentator -----------------------------------------------------------------------------------------------
def totalsegmentator_device(device: str) -> str:
    """BackSplit's device choice in TotalSegmentator's spelling (gpu, gpu:N, cpu, mps)."""
    if device in ("cuda", "gpu") or re.fullmatch(r"(cuda|gpu):\d+", device):
        return device.replace("cuda", "gpu")
    if device in ("cpu", "mps"):
        return device
    if device == "auto":
        return "gpu" if shutil.which("nvidia-smi") else "cpu"
    raise InputError(f"device '{device}' is not one of auto, cpu, cuda, cuda:N, mps")


def _beside_python(name: str) -> Optional[str]:
    """A console script of this Python's environment (Slicer's Python: where the TotalSegmentator extension installs
    the package, as its logic looks it up: ``sysconfig.get_path('scripts')``), when it is not on PATH."""
    import os
    import sysconfig

    for candidate in (name, f"{name}.exe"):
        path = os.path.join(sysconfig.get_path("scripts"), candidate)
        if os.path.isfile(path):
            return path
    return None


def on_case_grid(array: np.ndarray, geometry: Geometry, target: Geometry, case_id: str, what: str) -> np.ndarray:
    """An output volume on the case's image grid: as it is, or losslessly reoriented (axes permuted/flipped);
    anything else (resampled, cropped) is an error naming what differs."""
    if not target.differences(geometry):
        return array
    import SimpleITK as sitk

    code = sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(target.direction)
    image = sitk.DICOMOrient(geometry.to_sitk(array), code)
    turned = Geometry.from_sitk(image)
    problems = target.differences(turned)
    if problems:
        raise InputError(f"the {what} is not on the image grid: {'; '.join(problems)}", case=case_id)
    return sitk.GetArrayFromImage(image)


class TotalSegmentatorRunner:
    """``TotalSegmentator -i <image> -o <labels.nii.gz> --ml -ta <task> [-rs ...] [--fast] -d <device>`` per case."""

    def __init__(self, *, task: str = "total", roi_subset: Optional[Sequence[str]] = None, fast: bool = False,
                 device: str = "auto", executable: Optional[str] = None, env: Optional[dict] = None,
                 poll_seconds: float = 0.2):
        beside = None if executable or shutil.which("TotalSegmentator") else _beside_python("TotalSegmentator")
        found = executable or shutil.which("TotalSegmentator") or beside
        # a script installed into this Python's environment runs with this Python (Slicer: PythonSlicer)
        self.prefix = [sys.executable] if beside and not beside.lower().endswith(".exe") else []
        if not found or not Path(found).is_file():
            where = f" ({executable} does not exist)" if executable else ""
            raise InputError(f"TotalSegmentator is not installed{where}: {TOTALSEGMENTATOR_INSTALL}")
        self.executable = str(found)
        self.task, self.fast, self.env, self.poll_seconds = task, fast, env, poll_seconds
        self.device = totalsegmentator_device(device)
        self._classes: Optional[list[str]] = self._list_classes()
        self.subset = check_subset(roi_subset, self._classes, f"TotalSegmentator task '{task}'") \
            if roi_subset and self._classes is not None else (list(roi_subset) if roi_subset else None)
        self.description = f"TotalSegmentator task {task}{' (fast)' if fast else ''}"

    def _list_classes(self) -> Optional[list[str]]:
        """``TotalSegmentator --list-classes <task>`` (index, name per line); None for versions without it."""
        try:
            done = subprocess.run([*self.prefix, self.executable, "--list-classes", self.task], capture_output=True,
                                  text=True, timeout=300, env=self.env)
        except (OSError, subprocess.TimeoutExpired):
            return None
        names = [m.group(2) for m in re.finditer(r"^\s*(\d+)\s+(\S+)\s*$", done.stdout, re.MULTILINE)]
        return names if done.returncode == 0 and names else None

    def class_names(self) -> Optional[list[str]]:
        return list(self.subset) if self.subset else (list(self._classes) if self._classes else None)

    def check_channels(self, n_channels: int, case_id: str) -> None:
        if n_channels != 1:
            raise InputError(f"the case has {n_channels} image channels; TotalSegmentator takes one CT or MR volume",
                             case=case_id)

    def prepare(self, progress: ProgressCallback = ignore_progress) -> None:
        pass  # each case is its own process (TotalSegmentator loads its weights per run)

    def command(self, image: Path, output: Path) -> list[str]:
        args = [*self.prefix, self.executable, "-i", str(image), "-o", str(output), "--ml", "-ta", self.task,
                "-d", self.device]
        if self.fast:
            args.append("--fast")
        if self.subset:
            args += ["-rs", *self.subset]
        return args

    def segment(self, case: Case, image_paths: Sequence[Path],
                cancel: Callable[[], bool] = lambda: False) -> GeneratedSegments:
        from backsplit.io.readers import read_image
        from backsplit.runtime.childprocess import ChildProcess
        from backsplit.runtime.exits import ended_text
        from backsplit.supports.niftilabels import read_label_table

        self.check_channels(len(case.channels), case.case_id)
        started = time.time()
        with tempfile.TemporaryDirectory(prefix="backsplit-totalseg-") as tmp:
            image = Path(image_paths[0]) if image_paths and str(image_paths[0]).lower().endswith((".nii", ".nii.gz")) \
                else Path(tmp) / "image.nii.gz"
            if not image.exists():
                import SimpleITK as sitk

                sitk.WriteImage(case.geometry.to_sitk(case.channels[0]), str(image), True)
            output = Path(tmp) / "labels.nii.gz"
            job = ChildProcess(self.command(image, output), env=self.env).start()
            while job.is_running():
                if cancel():
                    job.cancel()
                    raise CancelledError("organ segmentation cancelled")
                time.sleep(self.poll_seconds)
            job.wait()
            job.poll_events()
            if job.returncode != 0 or not output.is_file():
                tail = "\n".join(job.log_lines[-8:])
                raise InputError(f"TotalSegmentator failed: it {ended_text(job.returncode)}: {tail}",
                                 case=case.case_id)
            table = read_label_table(output)
            labels, geometry = read_image(output, case.case_id, "TotalSegmentator output")
        labels = on_case_grid(labels, geometry, case.geometry, case.case_id, "TotalSegmentator output")
        wanted = {n.casefold() for n in self.subset} if self.subset else None
        masks = {name: labels == value for value, name in sorted(table.items())
                 if wanted is None or name.casefold() in wanted}
        if wanted is not None and len(masks) < len(wanted):
            missing = sorted(set(self.subset) - set(masks))
            raise InputError(f"TotalSegmentator's output has no class {', '.join(missing)} (it has: "
                             f"{', '.join(table.values())})", case=case.case_id)
        colors, terms = appearance(list(masks))
        return GeneratedSegments(masks, colors, terms, self.description, [], time.time() - started)
