"""Cases on disk for the suggestions, read lazily one at a time: the segmentation (``.seg.nrrd``, DICOM SEG, or
labelmap + name map) placed on the image grid (the image's header only is read, not its voxels; a DICOM series is
read), and optionally a binary model's prediction from a folder (``<case>.nii.gz`` labelmap as ``backsplit predict``
writes it, or ``<case>.seg.nrrd``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np

from backsplit.errors import InputError
from backsplit.io.cases import unique_case_ids
from backsplit.io.dicom import is_dicom_seg, series_uid_of
from backsplit.io.dicomseg import seg_on_image
from backsplit.io.geometry import Geometry
from backsplit.io.imagefile import header_geometry
from backsplit.io.readers import (
    FileCaseSource,
    SegmentationContent,
    align_to_image,
    is_seg_nrrd,
    read_image,
    read_labelmap,
    read_seg_nrrd,
)
from backsplit.supports.suggest import SuggestCase, name_key

PREDICTION_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".seg.nrrd")


def image_geometry(path: Path, case_id: str) -> Geometry:
    """The grid of an image file from its header (no voxels read; a DICOM series is read, having no one header)."""
    return header_geometry(Path(path), case_id)


def read_case_masks(source: FileCaseSource) -> tuple[Geometry, dict[str, np.ndarray]]:
    """A case's segments on its image grid (channel 0), without reading the image voxels."""
    if not source.images:
        raise InputError("the case has no image file", case=source.case_id)
    geometry = image_geometry(Path(source.images[0]), source.case_id)
    seg = Path(source.segmentation)
    if is_seg_nrrd(seg):
        content = read_seg_nrrd(seg, source.case_id)
    elif is_dicom_seg(seg):  # names and geometry from the SEG, already on the image grid
        content = seg_on_image(seg, geometry, source.case_id, series_uid_of(Path(source.images[0])))
    elif source.name_map:
        content = read_labelmap(seg, source.name_map, source.case_id)
    else:
        raise InputError("a labelmap needs a name map (--names)", case=source.case_id, path=str(seg))
    return geometry, align_to_image(content, geometry, source.case_id, seg)


def _target_values(folder: Path) -> Optional[set[int]]:
    """Values of the target classes from the ``labels.json`` that ``backsplit predict`` writes, if there is one."""
    table = Path(folder) / "labels.json"
    if not table.is_file():
        return None
    raw = json.loads(table.read_text(encoding="utf-8"))
    return {int(v) for v, entry in raw.items() if isinstance(entry, dict) and entry.get("role") == "target"}


def read_prediction(folder: Path, case_id: str, geometry: Geometry, target: str) -> np.ndarray:
    """The binary model's lesion mask for a case, on the case's image grid."""
    folder = Path(folder)
    found = [folder / f"{case_id}{s}" for s in PREDICTION_SUFFIXES if (folder / f"{case_id}{s}").is_file()]
    if not found:
        raise InputError(f"no prediction for the case in '{folder}' (expected {case_id}.nii.gz or "
                         f"{case_id}.seg.nrrd, as backsplit predict writes them)", case=case_id)
    unique_case_ids([(case_id, p) for p in found], folder)  # a.nii.gz beside a.seg.nrrd: which is the prediction?
    path = found[0]
    if is_seg_nrrd(path):
        content = read_seg_nrrd(path, case_id)
        keys = {name_key(n): n for n in content.masks}
        chosen = [keys[name_key(target)]] if name_key(target) in keys else list(content.masks)
        mask = np.zeros(content.geometry.shape, bool)
        for name in chosen:
            mask |= content.masks[name]
        content = SegmentationContent(content.geometry, {"prediction": mask})
        return align_to_image(content, geometry, case_id, path)["prediction"]
    labels, pred_geometry = read_image(path, case_id, "prediction")
    problems = geometry.differences(pred_geometry)
    if problems:
        raise InputError(f"the prediction is not on the image grid: {'; '.join(problems)}", case=case_id,
                         path=str(path))
    values = _target_values(folder)
    return np.isin(labels, sorted(values)) if values else labels > 0


def suggest_cases(sources: Sequence[FileCaseSource], predictions: Optional[Path] = None,
                  target: str = "") -> Iterator[SuggestCase]:
    """One ``SuggestCase`` at a time (a generator: nothing is read before it is needed)."""
    for source in sources:
        geometry, masks = read_case_masks(source)
        prediction = read_prediction(predictions, source.case_id, geometry, target) if predictions else None
        yield SuggestCase(source.case_id, tuple(geometry.spacing[::-1]), masks, prediction)
