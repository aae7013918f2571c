"""What a viewer needs to add a prediction to its scene in short steps, written by the prediction child process
(``PredictionRequest.scene_arrays``) so that the viewer does no whole-volume work itself: each class cut to its
bounding box as a raw uint8 ``.npy`` mask, the lesion probability as a raw uint8 ``.npy`` volume (stored value =
round(255 * P), as in ``probability.py``) that the viewer copies slab by slab, and a small ``index.json``.

Folder ``<out>/<case>.scene/`` (written aside, then renamed into place), arrays in (z, y, x) = (k, j, i) order:
``index.json`` {"format": 1, "shape": [k, j, i], "classes": {"<value>": {"offset": [k0, j0, i0], "shape": [...],
"voxels": n, "file": "class_<value>.npy"}}, "probability": "probability.npy" or null}.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from backsplit.errors import InputError

FORMAT = 1
INDEX = "index.json"
PROBABILITY = "probability.npy"
SUFFIX = ".scene"


def scene_folder(out_dir: Path, case_id: str) -> Path:
    """Where ``write_scene_arrays`` puts case ``case_id``'s arrays: ``<out_dir>/<case_id>.scene``."""
    return Path(out_dir) / f"{case_id}{SUFFIX}"


def class_crops(labels: np.ndarray, count: int) -> dict[int, tuple[tuple[int, int, int], np.ndarray]]:
    """For each label value 1..count present in ``labels`` (k, j, i): (first voxel (k0, j0, i0), boolean mask
    cropped to the value's bounding box, shape (k1-k0, j1-j0, i1-i0)). Absent values have no entry."""
    crops = {}
    for value in range(1, count + 1):
        mask = labels == value
        planes = np.flatnonzero(mask.any(axis=(1, 2)))
        if planes.size == 0:
            continue
        k0, k1 = int(planes[0]), int(planes[-1]) + 1
        slab = mask[k0:k1]
        rows = np.flatnonzero(slab.any(axis=(0, 2)))
        columns = np.flatnonzero(slab.any(axis=(0, 1)))
        j0, j1, i0, i1 = int(rows[0]), int(rows[-1]) + 1, int(columns[0]), int(columns[-1]) + 1
        crops[value] = ((k0, j0, i0), np.ascontiguousarray(slab[:, j0:j1, i0:i1]))
    return crops


def write_scene_arrays(out_dir: Path, case_id: str, class_count: int) -> Path:
    """Read the prediction of ``case_id`` in ``out_dir`` (``<case>.nii.gz`` labels 0..class_count and, when written,
    ``<case>_lesion_probability.nii.gz``) and write its scene arrays (module docstring); returns the folder.
    An earlier folder of the same name is replaced (it belongs to this output folder's own earlier run).
    Raises InputError when the labelmap is missing."""
    import SimpleITK as sitk

    out_dir = Path(out_dir)
    labels_file = out_dir / f"{case_id}.nii.gz"
    if not labels_file.is_file():
        raise InputError("the prediction wrote no labelmap to prepare for the scene", case=case_id,
                         path=str(labels_file))
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(labels_file)))
    folder = scene_folder(out_dir, case_id)
    aside = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(aside, ignore_errors=True)
    aside.mkdir(parents=True)
    index = {"format": FORMAT, "shape": [int(n) for n in labels.shape], "classes": {}, "probability": None}
    for value, (offset, mask) in class_crops(labels, class_count).items():
        name = f"class_{value}.npy"
        np.save(aside / name, mask.astype(np.uint8), allow_pickle=False)
        index["classes"][str(value)] = {"offset": list(offset), "shape": list(mask.shape),
                                        "voxels": int(np.count_nonzero(mask)), "file": name}
    del labels
    probability_file = out_dir / f"{case_id}_lesion_probability.nii.gz"
    if probability_file.is_file():   # SimpleITK applies the NIfTI scaling: P back; stored again as round(255 P)
        probability = sitk.GetArrayFromImage(sitk.ReadImage(str(probability_file)))
        stored = np.rint(np.clip(probability, 0.0, 1.0) * 255.0).astype(np.uint8)
        del probability
        np.save(aside / PROBABILITY, stored, allow_pickle=False)
        index["probability"] = PROBABILITY
    (aside / INDEX).write_text(json.dumps(index, indent=1), encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(aside, folder)
    return folder


@dataclass
class SceneArrays:
    """A read ``index.json``: ``shape`` (k, j, i) voxels, ``classes`` {value: entry}, ``probability`` file or None."""
    folder: Path
    shape: tuple
    classes: dict
    probability: Optional[Path]

    def class_mask(self, value: int) -> Optional[tuple[tuple[int, int, int], np.ndarray]]:
        """(offset (k0, j0, i0), uint8 mask (k, j, i) of the class's bounding box), or None for an absent class."""
        entry = self.classes.get(value)
        if entry is None:
            return None
        mask = np.load(self.folder / entry["file"], allow_pickle=False)
        if list(mask.shape) != list(entry["shape"]):
            raise InputError(f"the mask of class {value} has shape {mask.shape}, index.json says {entry['shape']}",
                             path=str(self.folder / entry["file"]))
        return tuple(int(v) for v in entry["offset"]), mask

    def open_probability(self) -> Optional[np.ndarray]:
        """The stored probability (uint8 (k, j, i), P = value / 255) as a read-only memory map, or None."""
        if self.probability is None:
            return None
        stored = np.load(self.probability, mmap_mode="r", allow_pickle=False)
        if tuple(stored.shape) != tuple(self.shape) or stored.dtype != np.uint8:
            raise InputError(f"the probability map has shape {stored.shape} ({stored.dtype}), the labels "
                             f"{tuple(self.shape)} (uint8 expected)", path=str(self.probability))
        return stored


def read_scene_arrays(out_dir: Path, case_id: str) -> SceneArrays:
    """The index of ``case_id``'s scene arrays in ``out_dir`` (a small JSON file; the arrays are read later, one
    class or slab at a time). Raises InputError when the child wrote none or another format."""
    folder = scene_folder(out_dir, case_id)
    try:
        index = json.loads((folder / INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"the prediction process left no readable result for the scene ({exc}); apply the model "
                         "again", case=case_id, path=str(folder / INDEX)) from None
    if index.get("format") != FORMAT:
        raise InputError(f"scene arrays of format {index.get('format')!r}; this BackSplit reads format {FORMAT}. "
                         "Apply the model again", case=case_id, path=str(folder / INDEX))
    probability = folder / index["probability"] if index.get("probability") else None
    return SceneArrays(folder, tuple(int(n) for n in index["shape"]),
                       {int(k): v for k, v in index.get("classes", {}).items()}, probability)


def copy_probability_slab(stored: np.ndarray, target: np.ndarray, start: int, stop: int) -> None:
    """P = value / 255 for slices ``start:stop`` (first axis, k) of ``stored`` (uint8 (k, j, i)) into the same
    slices of ``target`` (float32 (k, j, i), e.g. a view of the viewer's image), in place."""
    np.divide(stored[start:stop], np.float32(255.0), out=target[start:stop], dtype=np.float32)
