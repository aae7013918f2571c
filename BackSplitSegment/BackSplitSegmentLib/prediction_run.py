"""Apply a model to volumes in the scene: write the input to a temporary file, predict in a child process (the
application never freezes; Cancel ends the process tree), then import the result on the volume's own grid."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence


from backsplit.errors import InputError
from backsplit.inference.model import read_model_info
from backsplit.inference.process import PredictionProcess
from backsplit.inference.worker import PredictionRequest

from .prediction_import import import_labels, import_probability
from .scene_cases import volume_array, volume_geometry


@dataclass
class PredictionOutcome:
    segmentation_node: object
    probability_node: Optional[object]
    summary_text: str


def write_inputs(volume, extra_channels: Sequence, folder: Path) -> list[str]:
    """Channels as uncompressed NIfTI (fast) on the main volume's grid; refuse channels on another grid."""
    import SimpleITK as sitk

    geometry = volume_geometry(volume)
    paths = []
    for index, node in enumerate([volume, *extra_channels]):
        if index and geometry.differences(volume_geometry(node)):
            raise InputError(f"channel {index} ('{node.GetName()}') is not on the grid of '{volume.GetName()}': "
                             f"{'; '.join(geometry.differences(volume_geometry(node)))}")
        path = folder / f"input_{index:04d}.nii"
        sitk.WriteImage(geometry.to_sitk(volume_array(node, "input", f"channel {index}")), str(path), False)
        paths.append(str(path))
    return paths


def start_prediction(model_dir: Path, volume, extra_channels: Sequence = (), *, lesion_only: bool = False,
                     probabilities: bool = True, device: str = "auto", threshold: float = 0.5,
                     min_volume_ml: float = 0.0) -> PredictionProcess:
    if volume is None:
        raise InputError("choose the input volume to predict")
    info = read_model_info(model_dir)                       # clear errors before anything starts
    if len(info.channel_names) != 1 + len(extra_channels):
        raise InputError(f"the model takes {len(info.channel_names)} channel(s) ({', '.join(info.channel_names)}); "
                         f"{1 + len(extra_channels)} volume(s) were chosen")
    work = Path(tempfile.mkdtemp(prefix="backsplit-apply-"))
    inputs = write_inputs(volume, extra_channels, work)
    request = PredictionRequest(str(model_dir), [["input", inputs]], str(work / "out"), device=device,
                                lesion_only=lesion_only, probabilities=probabilities, threshold=threshold,
                                min_volume_ml=min_volume_ml)
    job = PredictionProcess(request).start()
    job.work_dir = work
    job.model_info = info
    job.lesion_only = lesion_only
    return job


def finish_prediction(job: PredictionProcess, volume) -> Optional[PredictionOutcome]:
    """After the child ended: import the result (None when cancelled); raise its error message otherwise."""
    import SimpleITK as sitk

    try:
        job.poll_events()
        if job.cancelled:
            return None
        if job.returncode != 0:
            raise InputError(job.error or "prediction failed:\n" + "\n".join(job.log_lines[-10:]))
        out = Path(job.request.out_dir)
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "input.nii.gz")))
        geometry = volume_geometry(volume)
        info = job.model_info
        classes = info.schema.targets if job.lesion_only else info.schema.classes
        name = f"{volume.GetName()} BackSplit ({info.variant})"
        segmentation = import_labels(labels, geometry, classes, name, volume)
        probability_node = None
        probability_file = out / "input_lesion_probability.nii.gz"
        if probability_file.is_file():
            probability = sitk.GetArrayFromImage(sitk.ReadImage(str(probability_file)))
            probability_node = import_probability(probability, geometry, f"{volume.GetName()} lesion probability",
                                                  volume)
        summary = job.summaries[0] if job.summaries else {}
        text = (f"Lesions: {summary.get('lesion_count', 0)}, volume {summary.get('lesion_volume_ml', 0):.2f} ml, "
                f"largest {summary.get('largest_lesion_ml', 0):.2f} ml, max probability "
                f"{summary.get('max_lesion_probability') or 0:.2f}: lesion "
                f"{'PRESENT' if summary.get('lesion_present') else 'absent'}")
        return PredictionOutcome(segmentation, probability_node, text)
    finally:
        shutil.rmtree(getattr(job, "work_dir", ""), ignore_errors=True)
