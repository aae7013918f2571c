"""Apply a model to volumes in the scene: write the input to a temporary file, predict in a child process (the
application never freezes; Cancel ends the process tree; the child also reads and cuts the result for the import),
then import the result on the volume's own grid in short timer steps, without threads: Python threads barely run in
Slicer's process while it idles (docs/SLICER_COMPATIBILITY.md, "Background threads")."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from backsplit.errors import InputError
from backsplit.inference.model import read_model_info
from backsplit.inference.process import PredictionProcess
from backsplit.inference.scenearrays import copy_probability_slab, read_scene_arrays
from backsplit.inference.worker import PredictionRequest
from backsplit.io.imagefile import checked_geometry

from .scene_nodes import volume_array, volume_geometry

CASE_ID = "input"                     # the one case of a panel's prediction (file names input_0000.nii, input.nii.gz)


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


def preview_label(request) -> str:
    """'' for the full prediction (every fold of the model, with test-time mirroring); otherwise what the result
    lacks, e.g. 'PREVIEW: fold 0, no mirroring', put into the names of the nodes it makes so that nobody takes a
    fast preview for the full prediction. ``request``: the job's ``PredictionRequest``."""
    folds = getattr(request, "folds", None)
    mirroring = getattr(request, "use_mirroring", True)
    if not folds and mirroring:
        return ""
    parts = ([f"fold{'s' if len(folds) > 1 else ''} {', '.join(str(f) for f in folds)}"] if folds else []) + \
        ([] if mirroring else ["no mirroring"])
    return "PREVIEW: " + ", ".join(parts)


def start_prediction(model_dir: Path, volume, extra_channels: Sequence = (), *, lesion_only: bool = False,
                     probabilities: bool = True, device: str = "auto", threshold: float = 0.5,
                     min_volume_ml: float = 0.0, preview: bool = False) -> PredictionProcess:
    """Write ``volume`` (and ``extra_channels``, on its grid) into a new temporary folder and start the prediction
    child; the job carries that folder (``work_dir``, removed by ``PredictionFinish``) and the model's info.
    ``preview``: the fast preview, the model's first fold only and no test-time mirroring (on a CPU several times
    faster, see ``benchmarks/bench_preview.py``); its nodes are named as a preview (``preview_label``).
    The child also cuts the result into what the scene import needs (``scenearrays``), so the import does no
    whole-volume work in this process. Raises InputError (no volume, a channel count the model does not take, a
    sheared or mismatched grid)."""
    if volume is None:
        raise InputError("choose the input volume to predict")
    info = read_model_info(model_dir)                       # clear errors before anything starts
    if len(info.channel_names) != 1 + len(extra_channels):
        raise InputError(f"the model takes {len(info.channel_names)} channel(s) ({', '.join(info.channel_names)}); "
                         f"{1 + len(extra_channels)} volume(s) were chosen")
    work = Path(tempfile.mkdtemp(prefix="backsplit-apply-"))
    inputs = write_inputs(volume, extra_channels, work)
    folds = [str(list(info.manifest.get("folds", ["all"]))[0])] if preview else None
    request = PredictionRequest(str(model_dir), [[CASE_ID, inputs]], str(work / "out"), device=device,
                                lesion_only=lesion_only, probabilities=probabilities, threshold=threshold,
                                min_volume_ml=min_volume_ml, use_mirroring=not preview, folds=folds,
                                scene_arrays=True)
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


class PredictionFinish:
    """Import a finished prediction in short steps: ``step()`` from the panel's timer until ``done``.

    The prediction child wrote the result cut for the import (``backsplit.inference.scenearrays``): the first step
    reads its small index and makes the segmentation node, each later step adds one class (its cropped mask), then
    the probability map is copied in slabs of at most ``SLAB_VOXELS`` voxels and shown. No thread, and no step
    reads or converts a whole volume. The temporary folder is removed at the end, also after an error. ``outcome``
    is None when the job was cancelled. Errors raise ``InputError`` (from ``step``) naming the case and the
    segment."""

    SLAB_VOXELS = 4_000_000            # voxels of the probability map copied per step (about 10 ms here)

    def __init__(self, job: PredictionProcess, volume, show_auxiliary: bool = True):
        self.job, self.volume, self.show_auxiliary = job, volume, show_auxiliary
        self.outcome: Optional[PredictionOutcome] = None
        self.done = False
        self.phase = ""                       # what the last step did (for the panel and the benchmark)
        self.preview = preview_label(job.request)
        self._arrays = None                   # scenearrays.SceneArrays once the index is read
        self._probability: Optional[list] = None   # [vtkImageData, its numpy view, stored uint8 map, next slice]
        self._segmentation = None
        self._next_class = 1
        info = job.model_info
        self.classes = (info.schema.targets if job.lesion_only else info.schema.classes) if info else []

    def step(self, wait: bool = False) -> bool:
        """Do one short piece of work; returns ``done``. (``wait`` is accepted for older scripts: no step waits.)"""
        try:
            self._step()
        except BaseException:
            self._close()
            raise
        if self.done:
            self._close()
        return self.done

    def _name(self, text: str) -> str:
        return f"{text} [{self.preview}]" if self.preview else text

    def _step(self) -> None:
        from .prediction_import import (
            add_class_segment,
            class_images,
            empty_probability_image,
            import_probability,
            new_segmentation,
            set_auxiliary_visible,
        )

        job, volume = self.job, self.volume
        if volume.GetScene() is None or (self._segmentation is not None and self._segmentation.GetScene() is None):
            raise InputError("the scene was closed while the prediction was being imported; nothing was added to "
                             "the new scene. Load the volume and apply the model again", case=volume.GetName())
        geometry = volume_geometry(volume)
        if self._arrays is None:
            job.poll_events()
            if job.cancelled:
                self.done = True
                return
            if job.returncode != 0:
                raise InputError(job.error or "prediction failed:\n" + "\n".join(job.log_lines[-10:]),
                                 case=volume.GetName())
            arrays = read_scene_arrays(Path(job.request.out_dir), CASE_ID)
            if tuple(arrays.shape) != tuple(geometry.shape):
                raise InputError(f"the prediction has size {tuple(arrays.shape)[::-1]} but the volume has "
                                 f"{tuple(geometry.shape)[::-1]}", case=volume.GetName())
            self._arrays = arrays
            self.phase = "result index read; new segmentation"
            self._segmentation = new_segmentation(self._name(f"{volume.GetName()} BackSplit "
                                                             f"({job.model_info.variant})"), volume)
            return
        if self._next_class <= len(self.classes):
            value = self._next_class
            self.phase = f"imported class {value} ({self.classes[value - 1].name})"
            crop = self._arrays.class_mask(value)
            prepared = class_images({value: crop}, geometry)[value] if crop is not None else None
            add_class_segment(self._segmentation, prepared, self.classes, value, volume.GetName())
            self._next_class += 1
            return
        if self._arrays.probability is not None:
            if self._probability is None:
                image, view = empty_probability_image(self._arrays.shape)
                self._probability = [image, view, self._arrays.open_probability(), 0]
                self.phase = "probability map allocated"
                return
            image, view, stored, start = self._probability
            if start < view.shape[0]:
                stop = min(view.shape[0], start + max(1, self.SLAB_VOXELS // max(1, view[0].size)))
                copy_probability_slab(stored, view, start, stop)
                self._probability[3] = stop
                self.phase = f"probability slices {start}-{stop - 1}"
                return
        self.phase = "probability map and summary"
        set_auxiliary_visible(self._segmentation, self.show_auxiliary)
        probability_node = None
        if self._probability is not None:
            image = self._probability[0]
            self._probability = None            # the memory-mapped file is released before the folder is removed
            image.GetPointData().GetScalars().Modified()   # filled through a numpy view: tell VTK
            image.Modified()
            probability_node = import_probability(image, geometry, self._name(f"{volume.GetName()} lesion "
                                                                              "probability"), volume)
        summary = job.summaries[0] if job.summaries else {}
        text = summary_text(summary)
        self.outcome = PredictionOutcome(self._segmentation, probability_node,
                                         f"{self.preview} (Apply without Fast preview for the full prediction). "
                                         f"{text}" if self.preview else text)
        self.done = True

    def close(self) -> None:
        """Stop here (the panel went idle: Cancel, an error, a scene close): a half-imported segmentation still in a
        scene is removed, nodes already removed by a scene close are not touched, the temporary folder is
        released. Idempotent."""
        self._close()

    def _close(self) -> None:
        if not self.done and self._segmentation is not None and self._segmentation.GetScene() is not None:
            self._segmentation.GetScene().RemoveNode(self._segmentation)   # no half-imported result
            self._segmentation = None
        self._probability = None       # drops the memory map (Windows cannot remove a mapped file)
        self._arrays = None
        if self.job.work_dir is not None:
            shutil.rmtree(self.job.work_dir, ignore_errors=True)

    @property
    def fraction(self) -> float:
        """Share of the import done (classes, then the probability map's slices), 0..1."""
        parts = len(self.classes) + 2
        done = self._next_class - 1
        if self._probability is not None:
            done += self._probability[3] / max(1, self._probability[1].shape[0])
        return min(1.0, done / parts)
