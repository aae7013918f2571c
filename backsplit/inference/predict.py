"""Predict one case from channel arrays and their geometry, and give the result back on the input's own grid.

nnU-Net works in array space with voxel spacing and no reorientation. A volume stored with another axis order or
flip than the training images is first permuted/flipped (losslessly, no resampling) to the training orientation
recorded in the manifest, predicted, and permuted back, so labels land on the input's exact grid (oblique included).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from backsplit.errors import InputError
from backsplit.inference.model import ModelInfo
from backsplit.io.geometry import Geometry


@dataclass
class Prediction:
    labels: np.ndarray                           # (z, y, x) uint8 on the input grid: 0, targets, supports
    geometry: Geometry
    n_targets: int
    target_probability: Optional[np.ndarray] = None   # (z, y, x) float32: P(any target class)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def lesion_only(self) -> np.ndarray:
        """Support classes folded into background (what a binary model would output; no extra inference)."""
        return fold_supports(self.labels, self.n_targets)


def fold_supports(labels: np.ndarray, n_targets: int) -> np.ndarray:
    folded = labels.copy()
    folded[folded > n_targets] = 0
    return folded


def check_input(info: ModelInfo, channels: Sequence[np.ndarray], geometry: Geometry, case: str) -> list[str]:
    """Refuse what cannot be predicted; return warnings for what looks unlike the training data."""
    expected = info.channel_names
    if len(channels) != len(expected):
        raise InputError(f"the model takes {len(expected)} channel(s) ({', '.join(expected)}) but {len(channels)} "
                         "were given; give one volume per channel, in that order", case=case)
    warnings = []
    for index, channel in enumerate(channels):
        if channel.ndim != 3 or min(channel.shape) < 1:
            raise InputError(f"channel {index} is not a 3D volume (shape {channel.shape})", case=case)
        if tuple(channel.shape) != tuple(geometry.shape):
            raise InputError(f"channel {index} has size {channel.shape[::-1]} but channel 0 has "
                             f"{tuple(geometry.shape)[::-1]}; resample the channels to one grid", case=case)
        finite = np.isfinite(channel) if np.issubdtype(channel.dtype, np.floating) else None
        if finite is not None and not finite.all():
            raise InputError(f"channel {index} holds NaN or infinite voxels; replace them before predicting", case=case)
        low, high = float(channel.min()), float(channel.max())
        if low == high:
            raise InputError(f"channel {index} ('{expected[index]}') is constant ({low:g}): there is nothing to "
                             "segment; check that the right volume is chosen", case=case)
        props = (info.manifest.get("intensity_properties") or {}).get(str(index))
        if props and expected[index].strip().upper() == "CT":
            warnings += _intensity_warnings(channel, props, expected[index], index)
    return warnings


def _intensity_warnings(channel: np.ndarray, props: dict, name: str, index: int) -> list[str]:
    sample = channel.ravel()[:: max(1, channel.size // 200_000)].astype(np.float64)
    p1, p99 = np.percentile(sample, [1, 99])
    lo, hi = float(props.get("percentile_00_5", props.get("min", p1))), float(props.get("percentile_99_5",
                                                                                       props.get("max", p99)))
    inside = float(np.mean((sample >= lo) & (sample <= hi)))
    if inside < 0.05 or (p1 >= 0 and lo < -50 and p99 > 4 * max(hi, 1)):
        return [f"channel {index} ('{name}') has intensities {p1:.0f} to {p99:.0f} (1st-99th percentile) while the "
                f"model was trained on {name} foreground intensities {lo:.0f} to {hi:.0f}: is this an image of another "
                "modality (e.g. MR)? The prediction is likely wrong."]
    return []


def _orientation_code(geometry: Geometry) -> str:
    import SimpleITK as sitk

    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(geometry.direction)


def predict_arrays(predictor, info: ModelInfo, channels: Sequence[np.ndarray], geometry: Geometry, *,
                   probabilities: bool = False, case: str = "input",
                   progress: Optional[Callable[[str], None]] = None) -> Prediction:
    """Run nnU-Net's predictor on one case; labels (and P(target)) come back on the input's grid."""
    import SimpleITK as sitk

    started = time.time()
    warnings = check_input(info, channels, geometry, case)
    images = [geometry.to_sitk(np.asarray(c)) for c in channels]
    source_code = _orientation_code(geometry)
    training_code = info.manifest.get("training_orientation")
    reorient = bool(training_code) and training_code != source_code
    if reorient:
        images = [sitk.DICOMOrient(image, training_code) for image in images]
    data = np.stack([sitk.GetArrayFromImage(image).astype(np.float32) for image in images])
    spacing_zyx = list(images[0].GetSpacing())[::-1]
    if progress:
        progress("running the network")
    result = predictor.predict_single_npy_array(data, {"spacing": spacing_zyx}, None, None, probabilities)
    labels, class_probabilities = (result if probabilities else (result, None))
    labels = np.asarray(labels).astype(np.uint8)
    target_probability = None
    if class_probabilities is not None:
        target_probability = np.asarray(class_probabilities[1:info.n_targets + 1]).sum(axis=0).astype(np.float32)
    if reorient:
        labels = _orient_back(labels, images[0], source_code)
        if target_probability is not None:
            target_probability = _orient_back(target_probability, images[0], source_code)
    if labels.shape != tuple(geometry.shape):
        raise RuntimeError(f"prediction shape {labels.shape} differs from the input {geometry.shape}")
    return Prediction(labels, geometry, info.n_targets, target_probability, warnings, time.time() - started)


def _orient_back(array: np.ndarray, oriented_reference, code: str) -> np.ndarray:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.CopyInformation(oriented_reference)
    return sitk.GetArrayFromImage(sitk.DICOMOrient(image, code))
