"""Segmentation metrics for one target class on boolean masks (z, y, x) with voxel spacing in mm.

Conventions for empty masks (documented in README and tested):
- Dice: both empty -> 1.0; one empty -> 0.0.
- HD95 (mm, symmetric 95th percentile of surface distances): both empty -> 0.0; one empty -> inf.
- NSD at tolerance t mm (fraction of both surfaces within t of the other): both empty -> 1.0; one empty -> 0.0.
- Precision TP/(TP+FP) is NaN when nothing is predicted; recall TP/(TP+FN) is NaN when the reference is empty.
  NaN and inf are left out of means (and counted).
- Lesion-wise (26-connected components): a reference lesion is detected when a predicted voxel overlaps it;
  a predicted component that overlaps no reference voxel is a false-positive lesion.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np


@dataclass
class ClassMetrics:
    dice: float
    hd95: float
    nsd: float
    precision: float
    recall: float
    reference_lesions: int
    detected_lesions: int
    missed_lesions: int
    false_positive_lesions: int
    reference_ml: float
    predicted_ml: float

    def to_json(self) -> dict:
        return asdict(self)


METRIC_FIELDS = list(ClassMetrics.__dataclass_fields__)


def _surface(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1), border_value=0)
    return mask & ~eroded


def surface_distances(a: np.ndarray, b: np.ndarray, spacing_zyx: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each surface voxel of ``a`` to the surface of ``b``, and from ``b`` to ``a``."""
    from scipy import ndimage

    surface_a, surface_b = _surface(a), _surface(b)
    to_b = ndimage.distance_transform_edt(~surface_b, sampling=spacing_zyx)
    to_a = ndimage.distance_transform_edt(~surface_a, sampling=spacing_zyx)
    return to_b[surface_a], to_a[surface_b]


def dice(reference: np.ndarray, prediction: np.ndarray) -> float:
    total = int(reference.sum()) + int(prediction.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(reference, prediction).sum()) / total


def hd95(reference: np.ndarray, prediction: np.ndarray, spacing_zyx: Sequence[float]) -> float:
    if not reference.any() and not prediction.any():
        return 0.0
    if not reference.any() or not prediction.any():
        return math.inf
    d_ab, d_ba = surface_distances(reference, prediction, spacing_zyx)
    return float(np.percentile(np.concatenate([d_ab, d_ba]), 95))


def nsd(reference: np.ndarray, prediction: np.ndarray, spacing_zyx: Sequence[float], tolerance_mm: float) -> float:
    if not reference.any() and not prediction.any():
        return 1.0
    if not reference.any() or not prediction.any():
        return 0.0
    d_ab, d_ba = surface_distances(reference, prediction, spacing_zyx)
    return float((np.sum(d_ab <= tolerance_mm) + np.sum(d_ba <= tolerance_mm)) / (d_ab.size + d_ba.size))


def lesion_counts(reference: np.ndarray, prediction: np.ndarray) -> tuple[int, int, int, int]:
    """(reference lesions, detected, missed, false-positive predicted lesions)."""
    from .summary import lesion_components

    ref_components, n_ref = lesion_components(reference)
    pred_components, n_pred = lesion_components(prediction)
    detected = len(set(np.unique(ref_components[prediction])) - {0}) if n_ref else 0
    false_positive = len(set(range(1, n_pred + 1)) - set(np.unique(pred_components[reference]))) if n_pred else 0
    return n_ref, detected, n_ref - detected, false_positive


def class_metrics(reference: np.ndarray, prediction: np.ndarray, spacing_xyz: Sequence[float],
                  nsd_tolerance_mm: float = 2.0) -> ClassMetrics:
    reference, prediction = np.asarray(reference, bool), np.asarray(prediction, bool)
    if reference.shape != prediction.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {prediction.shape}")
    spacing_zyx = tuple(float(s) for s in spacing_xyz)[::-1]
    tp = int(np.logical_and(reference, prediction).sum())
    n_pred, n_ref = int(prediction.sum()), int(reference.sum())
    voxel_ml = float(np.prod(spacing_xyz)) / 1000.0
    lesions = lesion_counts(reference, prediction)
    return ClassMetrics(
        dice=dice(reference, prediction), hd95=hd95(reference, prediction, spacing_zyx),
        nsd=nsd(reference, prediction, spacing_zyx, nsd_tolerance_mm),
        precision=tp / n_pred if n_pred else math.nan, recall=tp / n_ref if n_ref else math.nan,
        reference_lesions=lesions[0], detected_lesions=lesions[1], missed_lesions=lesions[2],
        false_positive_lesions=lesions[3], reference_ml=n_ref * voxel_ml, predicted_ml=n_pred * voxel_ml)


def finite_mean(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, standard deviation, count left out) over the finite values."""
    array = np.asarray(list(values), float)
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        return math.nan, math.nan, int(array.size)
    return float(finite.mean()), float(finite.std()), int(array.size - finite.size)
