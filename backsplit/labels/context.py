"""Generated context labels (CoLab, seed paper 002) for cases that have lesion labels but no organ labels.

Two generators, both returning extra support classes painted only onto background voxels (a user's own support
structures and the lesions always win):

* ``rings``: shells around the target classes by physical distance, e.g. widths (5, 15) mm give "ring 0-5 mm" and
  "ring 5-15 mm". They teach the network what the lesion's immediate surroundings look like.
* ``kmeans``: the background inside the body split into ``t`` intensity clusters (1-D k-means of the case's
  intensities, the body found by Otsu's threshold), named from dark to bright ("intensity 1 of 2", ...). On CT they
  separate e.g. fat from soft tissue and bone.

numpy arrays (z, y, x); Otsu's threshold from ITK (SimpleITK) and k-means from SciPy, both well-kept libraries
already needed here; the export calls ``add_context`` on the label array of each case.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from backsplit.errors import InputError

METHODS = ("none", "rings", "kmeans")


@dataclass(frozen=True)
class ContextSpec:
    method: str = "none"                                   # none | rings | kmeans
    ring_widths_mm: tuple[float, ...] = (5.0, 15.0)        # outer radius of each ring, increasing
    clusters: int = 2                                      # k-means clusters (the paper suggests 2, or 4)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"context method '{self.method}' is unknown; choose none, rings or kmeans")
        widths = tuple(float(w) for w in self.ring_widths_mm)
        object.__setattr__(self, "ring_widths_mm", widths)
        increasing = list(widths) == sorted(set(widths))
        if self.method == "rings" and (not widths or any(w <= 0 for w in widths) or not increasing):
            raise InputError("ring widths must be positive and increasing, e.g. 5,15 (mm)")
        if self.method == "kmeans" and not 1 <= int(self.clusters) <= 8:
            raise InputError("the number of intensity clusters must be between 1 and 8")

    @property
    def enabled(self) -> bool:
        return self.method != "none"

    def class_names(self) -> list[str]:
        if self.method == "rings":
            edges = (0.0,) + self.ring_widths_mm
            return [f"ring {_fmt(a)}-{_fmt(b)} mm" for a, b in zip(edges[:-1], edges[1:])]
        if self.method == "kmeans":
            return [f"intensity {i + 1} of {self.clusters}" for i in range(self.clusters)]
        return []

    def to_json(self) -> dict:
        raw = {"method": self.method}
        if self.method == "rings":
            raw["ring_widths_mm"] = list(self.ring_widths_mm)
        if self.method == "kmeans":
            raw["clusters"] = int(self.clusters)
        return raw

    @staticmethod
    def parse(text: Optional[str]) -> "ContextSpec":
        """'none', 'rings', 'rings:5,15', 'kmeans', 'kmeans:3' (the command line's --context)."""
        if not text or text.strip().lower() == "none":
            return ContextSpec()
        method, _, detail = text.strip().lower().partition(":")
        try:
            if method == "rings":
                return ContextSpec("rings", tuple(float(v) for v in detail.split(",")) if detail else (5.0, 15.0))
            if method == "kmeans":
                return ContextSpec("kmeans", clusters=int(detail) if detail else 2)
        except ValueError:
            raise InputError(f"cannot read the context choice '{text}'; write e.g. rings:5,15 or kmeans:2") from None
        raise InputError(f"context method '{method}' is unknown; choose none, rings[:w1,w2,...] or kmeans[:t]")


def _fmt(value: float) -> str:
    return f"{value:g}"


def add_context(labels: np.ndarray, image: np.ndarray, spacing_zyx: Sequence[float], n_targets: int,
                first_value: int, spec: ContextSpec) -> np.ndarray:
    """Paint the generated classes (values ``first_value``, ``first_value + 1``, ...) onto background voxels."""
    if not spec.enabled:
        return labels
    out = labels.copy()
    background = labels == 0
    if spec.method == "rings":
        target = (labels >= 1) & (labels <= n_targets)
        found = _distance_near(target, spacing_zyx, max(spec.ring_widths_mm))
        if found is not None:  # paint inside the targets' grown bounding box only
            box, distance = found
            box_out, box_background = out[box], background[box]
            for index, shell in enumerate(_shells(distance, spec.ring_widths_mm)):
                box_out[box_background & shell] = first_value + index
    else:
        for index, cluster in enumerate(intensity_clusters(image, background, spec.clusters, spec.seed)):
            out[cluster] = first_value + index
    return out


def _distance_near(target: np.ndarray, spacing_zyx: Sequence[float], reach_mm: float):
    """(box, distance in mm to the nearest target voxel) in the targets' bounding box grown by ``reach_mm``, so a
    large volume with a small lesion stays cheap; None without target voxels."""
    from scipy.ndimage import distance_transform_edt

    if not target.any():
        return None
    spacing = np.asarray(spacing_zyx, float)
    margin = np.ceil(reach_mm / spacing).astype(int) + 1
    where = np.argwhere(target)
    lo = np.maximum(where.min(axis=0) - margin, 0)
    hi = np.minimum(where.max(axis=0) + margin + 1, target.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    return box, distance_transform_edt(~target[box], sampling=spacing)


def ring_masks(target: np.ndarray, spacing_zyx: Sequence[float], widths_mm: Sequence[float]) -> list[np.ndarray]:
    """Shells around ``target`` by Euclidean distance in mm: (0, w1], (w1, w2], ..., as full-size masks."""
    rings = [np.zeros(target.shape, bool) for _ in widths_mm]
    found = _distance_near(target, spacing_zyx, max(widths_mm))
    if found is not None:
        box, distance = found
        for ring, shell in zip(rings, _shells(distance, widths_mm)):
            ring[box] = shell
    return rings


def _shells(distance: np.ndarray, widths_mm: Sequence[float]):
    """Masks of (0, w1], (w1, w2], ... of a distance map."""
    inner = 0.0
    for outer in widths_mm:
        yield (distance > inner) & (distance <= outer)
        inner = outer


def intensity_clusters(image: np.ndarray, background: np.ndarray, clusters: int, seed: int = 0,
                       samples: int = 200_000) -> list[np.ndarray]:
    """Background voxels inside the body split into ``clusters`` intensity classes, dark to bright.

    The body is what lies above Otsu's threshold of the image (air and the scanner's outside stay background).
    1-D k-means (SciPy's Lloyd, initialised at quantiles) on a random sample of the candidate voxels; every voxel goes
    to the nearest centre. Works on the image's own dtype (no full-size float copy)."""
    image = np.asarray(image)
    rng = np.random.default_rng(seed)
    flat = image.reshape(-1)
    probe = flat[rng.integers(0, flat.size, min(flat.size, 1_000_000))].astype(np.float64)
    probe = probe[np.isfinite(probe)]
    candidates = background & (image > otsu_threshold(probe))  # NaN compares False: never a candidate
    if not candidates.any():
        return [np.zeros(image.shape, bool) for _ in range(clusters)]
    flat_candidates = candidates.reshape(-1)
    picked = rng.integers(0, flat.size, 4 * samples)
    picked = picked[flat_candidates[picked]]
    if picked.size < min(1000, samples):  # candidates are rare: take them from the full list
        where = np.flatnonzero(flat_candidates)
        picked = where if where.size <= samples else rng.choice(where, samples, replace=False)
    centres = kmeans_1d(flat[picked].astype(np.float64), clusters)
    edges = (centres[:-1] + centres[1:]) / 2
    masks = []
    for index in range(clusters):
        mask = candidates.copy()
        if index > 0:
            mask &= image > edges[index - 1]
        if index < clusters - 1:
            mask &= image <= edges[index]
        masks.append(mask)
    return masks


def kmeans_1d(values: np.ndarray, k: int, iterations: int = 50) -> np.ndarray:
    """Sorted cluster centres of 1-D values: Lloyd's k-means by SciPy (``scipy.cluster.vq.kmeans2``, SciPy being a
    dependency already) started at the quantiles (k + 0.5) / k, so the result is deterministic. An empty cluster
    keeps its start centre."""
    import warnings

    from scipy.cluster.vq import kmeans2

    values = np.asarray(values, np.float64).reshape(-1, 1)
    start = np.quantile(values[:, 0], (np.arange(k) + 0.5) / k).reshape(-1, 1)
    with warnings.catch_warnings():  # SciPy warns about an empty cluster; it keeps its centre, as intended
        warnings.simplefilter("ignore")
        centres, _ = kmeans2(values, start, iter=iterations, minit="matrix", missing="warn")
    return np.sort(centres[:, 0])


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a set of values (maximum between-class variance of a ``bins``-bin histogram), computed by
    ITK's ``OtsuThresholdImageFilter`` through SimpleITK (bundled with 3D Slicer, so no extra dependency there).
    Values above the threshold are the foreground."""
    import SimpleITK as sitk

    values = np.asarray(values, np.float64).ravel()
    if values.size == 0 or values.min() == values.max():
        return float(values.min()) - 1.0 if values.size else 0.0
    otsu = sitk.OtsuThresholdImageFilter()
    otsu.SetNumberOfHistogramBins(bins)
    otsu.SetInsideValue(0)
    otsu.SetOutsideValue(1)
    otsu.Execute(sitk.GetImageFromArray(values.reshape(1, 1, -1)))
    return float(otsu.GetThreshold())
