"""Segmentation metrics for one target class on boolean masks (z, y, x) with voxel spacing in mm.

Surface distances, HD95 and NSD come from DeepMind's ``surface-distance`` (PyPI ``surface-distance``, Apache-2.0,
14 kB, numpy + SciPy only): the field's reference implementation of the surface Dice / NSD (Nikolov et al., "Clinically
applicable segmentation of head and neck anatomy for radiotherapy", J Med Internet Res 2021), with surfaces made of
surface elements weighted by their area. MONAI computes the same quantities but needs torch and is slow to import
inside Slicer; panoptica (lesion-wise matching) pins numpy < 2.3 and pulls pandas, plotly, rich and typer, so it
cannot be installed beside this project's numpy 2 and the lesion-wise counts stay here (26-connected components by
SciPy, matched by overlap). See docs/METRICS.md for every convention.

Conventions (docs/METRICS.md; tested in Testing/test_metrics.py):
- Dice: both empty -> 1.0; one empty -> 0.0.
- HD95 (mm): the larger of the two directed 95th percentiles of the surface distances, each weighted by surface
  element area (``compute_robust_hausdorff(..., 95)``, as MONAI's ``compute_hausdorff_distance(percentile=95)``
  takes the larger directed value). Both empty -> 0.0. One empty -> the worst value, the image's diagonal in mm
  (the BraTS 2023 lesion-wise convention, 374 mm on the BraTS grid), so a missed or invented lesion is penalised
  and never left out of a mean (Metrics Reloaded, Maier-Hein et al., Nat Methods 2024: empty references or
  predictions must not silently drop cases from the aggregate).
- NSD at tolerance t mm (surface Dice, ``compute_surface_dice_at_tolerance``): both empty -> 1.0; one empty -> 0.0.
- Precision TP/(TP+FP) is undefined (NaN) when nothing is predicted; recall TP/(TP+FN) when the reference is empty.
  Undefined values are left out of means and counted with their reason.
- Lesion-wise (26-connected components), matching criterion ``lesion_match`` (``parse_lesion_match``):
  ``overlap`` (default): a reference lesion is detected when a predicted voxel overlaps it; a predicted component
  that overlaps no reference voxel is a false-positive lesion. ``iou:T`` / ``dice:T``: a reference lesion is detected
  when some predicted component has IoU / Dice above T with it (pairwise, component against component), and a
  predicted component is a false positive when no reference lesion reaches T with it (Metrics Reloaded's
  localisation criteria; IoU > 0.5 makes the matching one-to-one, Kirillov et al., Panoptic Segmentation, CVPR 2019).
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
    reference_empty: int = 0      # 1 when the reference mask has no voxel
    prediction_empty: int = 0     # 1 when the predicted mask has no voxel

    def to_json(self) -> dict:
        return asdict(self)


METRIC_FIELDS = list(ClassMetrics.__dataclass_fields__)
INTEGER_FIELDS = ("reference_lesions", "detected_lesions", "missed_lesions", "false_positive_lesions",
                  "reference_empty", "prediction_empty")


def worst_distance_mm(shape: Sequence[int], spacing_zyx: Sequence[float]) -> float:
    """The image's diagonal in mm: the HD95 given when exactly one mask is empty."""
    return float(np.linalg.norm(np.asarray(shape, float) * np.asarray(spacing_zyx, float)))


def _library():
    """DeepMind's ``surface_distance`` module, or a clear error saying how to install it."""
    try:
        import surface_distance
    except ImportError:
        from backsplit.errors import BackSplitError

        raise BackSplitError("surface metrics need the 'surface-distance' package (DeepMind's, on PyPI): "
                             "pip install surface-distance==0.1") from None
    return surface_distance


def _distances(reference: np.ndarray, prediction: np.ndarray, spacing_zyx: Sequence[float]) -> dict:
    import warnings

    compute_surface_distances = _library().compute_surface_distances  # DeepMind's surface-distance

    with warnings.catch_warnings():  # surface-distance 0.1 uses scipy.ndimage.morphology (deprecated name only)
        warnings.simplefilter("ignore", DeprecationWarning)
        return compute_surface_distances(np.asarray(reference, bool), np.asarray(prediction, bool),
                                         tuple(float(s) for s in spacing_zyx))


def surface_distances(a: np.ndarray, b: np.ndarray, spacing_zyx: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from the surface elements of ``a`` to the surface of ``b``, and from ``b`` to ``a``."""
    found = _distances(a, b, spacing_zyx)
    return found["distances_gt_to_pred"], found["distances_pred_to_gt"]


def dice(reference: np.ndarray, prediction: np.ndarray) -> float:
    total = int(np.count_nonzero(reference)) + int(np.count_nonzero(prediction))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(np.logical_and(reference, prediction))) / total


def hd95(reference: np.ndarray, prediction: np.ndarray, spacing_zyx: Sequence[float]) -> float:
    """Symmetric HD95 in mm (see the module's conventions for empty masks)."""
    compute_robust_hausdorff = _library().compute_robust_hausdorff

    has_ref, has_pred = bool(np.any(reference)), bool(np.any(prediction))
    if not has_ref and not has_pred:
        return 0.0
    if not has_ref or not has_pred:
        return worst_distance_mm(np.shape(reference), spacing_zyx)
    return float(compute_robust_hausdorff(_distances(reference, prediction, spacing_zyx), 95))


def nsd(reference: np.ndarray, prediction: np.ndarray, spacing_zyx: Sequence[float], tolerance_mm: float) -> float:
    """Normalised surface distance (surface Dice) at ``tolerance_mm``."""
    compute_surface_dice_at_tolerance = _library().compute_surface_dice_at_tolerance

    has_ref, has_pred = bool(np.any(reference)), bool(np.any(prediction))
    if not has_ref and not has_pred:
        return 1.0
    if not has_ref or not has_pred:
        return 0.0
    return float(compute_surface_dice_at_tolerance(_distances(reference, prediction, spacing_zyx), tolerance_mm))


LESION_MATCHES = ("overlap", "iou:T", "dice:T")


LESION_MATCH_HELP = ("when a predicted lesion matches a reference lesion: overlap (any shared voxel; default), or "
                     "iou:T / dice:T (IoU / Dice of the two components above T, e.g. iou:0.5); see docs/METRICS.md")


def parse_lesion_match(text: str) -> tuple[str, float]:
    """``"overlap"`` -> ("overlap", 0.0); ``"iou:0.5"`` / ``"dice:0.1"`` -> (kind, threshold), 0 <= T < 1.
    Raises InputError naming the accepted forms."""
    from backsplit.errors import InputError

    value = str(text).strip().lower()
    if value == "overlap":
        return "overlap", 0.0
    kind, _, number = value.partition(":")
    try:
        threshold = float(number)
    except ValueError:
        threshold = math.nan
    if kind not in ("iou", "dice") or not 0 <= threshold < 1:
        raise InputError(f"lesion match '{text}' is not valid; choose overlap (any overlapping voxel), iou:T or "
                         "dice:T with 0 <= T < 1 (e.g. iou:0.5)")
    return kind, threshold


def lesion_counts(reference: np.ndarray, prediction: np.ndarray,
                  lesion_match: str = "overlap") -> tuple[int, int, int, int]:
    """(reference lesions, detected, missed, false-positive predicted lesions) for boolean (z, y, x) masks;
    26-connected components matched by ``lesion_match`` (module doc; ``parse_lesion_match``)."""
    from backsplit.evaluation.summary import lesion_components

    kind, threshold = parse_lesion_match(lesion_match)
    ref_components, n_ref = lesion_components(reference)
    pred_components, n_pred = lesion_components(prediction)
    if kind == "overlap" or not n_ref or not n_pred:
        detected = len(set(np.unique(ref_components[prediction])) - {0}) if n_ref else 0
        false_positive = len(set(range(1, n_pred + 1)) - set(np.unique(pred_components[reference]))) if n_pred else 0
        return n_ref, detected, n_ref - detected, false_positive
    both = np.logical_and(reference, prediction)
    pairs = ref_components[both].astype(np.int64) * (n_pred + 1) + pred_components[both]
    intersection = np.bincount(pairs, minlength=(n_ref + 1) * (n_pred + 1)).reshape(n_ref + 1, n_pred + 1)
    ref_sizes = np.bincount(ref_components.ravel(), minlength=n_ref + 1).astype(float)
    pred_sizes = np.bincount(pred_components.ravel(), minlength=n_pred + 1).astype(float)
    total = ref_sizes[:, None] + pred_sizes[None, :]
    score = intersection / (total - intersection) if kind == "iou" else 2.0 * intersection / total
    matched = (score > threshold) & (intersection > 0)
    detected = int(matched[1:, 1:].any(axis=1).sum())
    false_positive = int((~matched[1:, 1:].any(axis=0)).sum())
    return n_ref, detected, n_ref - detected, false_positive


def class_metrics(reference: np.ndarray, prediction: np.ndarray, spacing_xyz: Sequence[float],
                  nsd_tolerance_mm: float = 2.0, lesion_match: str = "overlap") -> ClassMetrics:
    """All metrics of one class; masks (z, y, x), spacing (x, y, z) in mm; ``lesion_match``: the lesion-wise
    matching criterion (``parse_lesion_match``)."""
    if not (math.isfinite(float(nsd_tolerance_mm)) and float(nsd_tolerance_mm) > 0):   # NSD 0 on a perfect case
        from backsplit.errors import InputError

        raise InputError(f"the NSD tolerance must be > 0 mm (got {nsd_tolerance_mm})")
    reference, prediction = np.asarray(reference, bool), np.asarray(prediction, bool)
    if reference.shape != prediction.shape:
        raise ValueError(f"shapes differ: {reference.shape} vs {prediction.shape}")
    spacing_zyx = tuple(float(s) for s in spacing_xyz)[::-1]
    tp = int(np.count_nonzero(np.logical_and(reference, prediction)))
    n_pred, n_ref = int(np.count_nonzero(prediction)), int(np.count_nonzero(reference))
    voxel_ml = float(np.prod(spacing_xyz)) / 1000.0
    lesions = lesion_counts(reference, prediction, lesion_match)
    surfaces = _distances(reference, prediction, spacing_zyx) if n_ref and n_pred else None
    if surfaces is not None:
        library = _library()
        hd, surface_dice = (float(library.compute_robust_hausdorff(surfaces, 95)),
                            float(library.compute_surface_dice_at_tolerance(surfaces, nsd_tolerance_mm)))
    else:
        hd, surface_dice = hd95(reference, prediction, spacing_zyx), nsd(reference, prediction, spacing_zyx, 1.0)
    return ClassMetrics(
        dice=dice(reference, prediction), hd95=hd, nsd=surface_dice,
        precision=tp / n_pred if n_pred else math.nan, recall=tp / n_ref if n_ref else math.nan,
        reference_lesions=lesions[0], detected_lesions=lesions[1], missed_lesions=lesions[2],
        false_positive_lesions=lesions[3], reference_ml=n_ref * voxel_ml, predicted_ml=n_pred * voxel_ml,
        reference_empty=int(n_ref == 0), prediction_empty=int(n_pred == 0))


def finite_mean(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, standard deviation, count left out) over the finite values."""
    array = np.asarray(list(values), float)
    finite = array[np.isfinite(array)]
    if finite.size == 0:
        return math.nan, math.nan, int(array.size)
    return float(finite.mean()), float(finite.std()), int(array.size - finite.size)
