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
from backsplit.io.imagefile import checked_geometry

from .scene_nodes import volume_array, volume_geometry


@dataclass
class PredictionOutcome:
    segmentation_node: object
    probability_node: Optional[object]
    summary_text: str


def write_inputs(volume, extra_channels: Sequence, folder: Path) -> list[str]:
    """Channels as uncompressed NIfTI (fast) on the main volume's grid; refuse channels on another grid."""
    import SimpleITK as sitk

    # A sheared grid would be straightened by the NIfTI write below: refuse it here as export and prediction from
    # files do (backsplit.io.imagefile.checked_geometry says the tilt and how to resample it in Slicer).
    geometry = checked_geometry(volume_geometry(volume), "input volume", volume.GetName(), None)
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
    """Write ``volume`` (and ``extra_channels``, on its grid) into a new temporary folder and start the prediction
    child; the job carries that folder (``work_dir``, removed by ``PredictionFinish``) and the model's info.
    Raises InputError (no volume, a channel count the model does not take, a sheared or mismatched grid)."""
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
    return PredictionProcess(request, work_dir=work, model_info=info).start()


def finish_prediction(job: PredictionProcess, volume, show_auxiliary: bool = True) -> Optional[PredictionOutcome]:
    """After the child ended: import the result (None when cancelled); raise its error message otherwise.
    All at once (scripts, tests); the panel steps a ``PredictionFinish`` from its timer instead."""
    finish = PredictionFinish(job, volume, show_auxiliary)
    while not finish.done:
        finish.step(wait=True)
    return finish.outcome


def apply_progress(event) -> Optional[tuple]:
    """(percent or None, status text with the time left) for the Apply progress bar and label; None for log lines.
    Prediction events count sliding-window tiles of the whole job, so the bar moves within a case."""
    from backsplit.inference.watch import progress_display

    return progress_display(event)


def summary_text(summary: dict) -> str:
    return (f"Lesions: {summary.get('lesion_count', 0)}, volume {summary.get('lesion_volume_ml', 0):.2f} ml, "
            f"largest {summary.get('largest_lesion_ml', 0):.2f} ml, max probability "
            f"{summary.get('max_lesion_probability') or 0:.2f}: lesion "
            f"{'PRESENT' if summary.get('lesion_present') else 'absent'}")


def read_prediction_files(out: Path, class_count: int, geometry=None) -> dict:
    """Labels, their per-class crops and the probability map from the prediction folder (background thread:
    SimpleITK's reader and numpy's loops release the GIL, so the panel's timer keeps ticking)."""
    import SimpleITK as sitk

    from .prediction_import import class_crops, class_images

    image = sitk.ReadImage(str(out / "input.nii.gz"))
    labels = sitk.GetArrayFromImage(image)
    result = {"shape": labels.shape, "crops": class_crops(labels, class_count), "probability": None}
    del labels
    if geometry is not None and tuple(result["shape"]) == tuple(geometry.shape):
        result["images"] = class_images(result.pop("crops"), geometry)
    probability_file = out / "input_lesion_probability.nii.gz"
    if probability_file.is_file():
        from .prediction_import import probability_image

        result["probability"] = probability_image(sitk.GetArrayFromImage(sitk.ReadImage(str(probability_file))))
    return result


class PredictionFinish:
    """Import a finished prediction in short steps: ``step()`` from the panel's timer until ``done``.

    Files are read (and cut into per-class crops) in a background thread; each later step imports one class, then
    the probability map; the temporary folder is removed at the end, also after an error. ``outcome`` is None when
    the job was cancelled. Errors raise ``InputError`` (from ``step``) naming the case and the segment."""

    def __init__(self, job: PredictionProcess, volume, show_auxiliary: bool = True):
        self.job, self.volume, self.show_auxiliary = job, volume, show_auxiliary
        self.outcome: Optional[PredictionOutcome] = None
        self.done = False
        self.phase = ""                       # what the last step did (for the panel and the benchmark)
        self._future = None
        self._pool = None
        self._segmentation = None
        self._next_class = 1
        self._files: Optional[dict] = None
        info = job.model_info
        self.classes = (info.schema.targets if job.lesion_only else info.schema.classes) if info else []

    def step(self, wait: bool = False) -> bool:
        """Do one short piece of work; returns ``done``. ``wait=True`` blocks for the file reading (scripts)."""
        try:
            self._step(wait)
        except BaseException:
            self._close()
            raise
        if self.done:
            self._close()
        return self.done

    def _step(self, wait: bool) -> None:
        from .prediction_import import add_class_segment, import_probability, new_segmentation, set_auxiliary_visible

        job, volume = self.job, self.volume
        if volume.GetScene() is None or (self._segmentation is not None and self._segmentation.GetScene() is None):
            raise InputError("the scene was closed while the prediction was being imported; nothing was added to "
                             "the new scene. Load the volume and apply the model again", case=volume.GetName())
        if self._future is None and self._files is None:
            job.poll_events()
            if job.cancelled:
                self.done = True
                return
            if job.returncode != 0:
                raise InputError(job.error or "prediction failed:\n" + "\n".join(job.log_lines[-10:]),
                                 case=volume.GetName())
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="backsplit-read-prediction")
            self._future = self._pool.submit(read_prediction_files, Path(job.request.out_dir), len(self.classes),
                                             volume_geometry(volume))
            self.phase = "started reading the files"
            return
        if self._files is None:
            self.phase = "waiting for the files"
            if not wait and not self._future.done():
                return
            self.phase = "files read; new segmentation"
            self._files = self._future.result()
            geometry = volume_geometry(volume)
            if tuple(self._files["shape"]) != tuple(geometry.shape):
                raise InputError(f"the prediction has size {tuple(self._files['shape'])[::-1]} but the volume has "
                                 f"{tuple(geometry.shape)[::-1]}", case=volume.GetName())
            self._segmentation = new_segmentation(f"{volume.GetName()} BackSplit ({job.model_info.variant})", volume)
            return
        geometry = volume_geometry(volume)
        if self._next_class <= len(self.classes):
            value = self._next_class
            self.phase = f"imported class {value} ({self.classes[value - 1].name})"
            add_class_segment(self._segmentation, self._files["images"].get(value), self.classes, value,
                              volume.GetName())
            self._next_class += 1
            return
        self.phase = "probability map and summary"
        set_auxiliary_visible(self._segmentation, self.show_auxiliary)
        probability_node = None
        if self._files["probability"] is not None:
            probability_node = import_probability(self._files["probability"], geometry,
                                                  f"{volume.GetName()} lesion probability", volume)
        summary = job.summaries[0] if job.summaries else {}
        self.outcome = PredictionOutcome(self._segmentation, probability_node, summary_text(summary))
        self.done = True

    def close(self) -> None:
        """Stop here (the panel went idle: Cancel, an error, a scene close): a half-imported segmentation still in a
        scene is removed, nodes already removed by a scene close are not touched, the reading thread and the
        temporary folder are released. Idempotent."""
        self._close()

    def _close(self) -> None:
        if not self.done and self._segmentation is not None and self._segmentation.GetScene() is not None:
            self._segmentation.GetScene().RemoveNode(self._segmentation)   # no half-imported result
            self._segmentation = None
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
        self._files = None if self.done else self._files
        if self.job.work_dir is not None:
            shutil.rmtree(self.job.work_dir, ignore_errors=True)

    @property
    def reading(self) -> bool:
        """True while the files are read in the background (the panel then ticks slowly)."""
        return self._future is not None and self._files is None and not self.done

    @property
    def fraction(self) -> float:
        return min(1.0, (self._next_class - 1) / max(1, len(self.classes) + 1))
