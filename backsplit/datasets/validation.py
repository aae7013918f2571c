"""Check one loaded case against the export request and turn its segments into a label array.

Pure functions: no file is written here. Every error names the case (and segment or channel).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from backsplit.errors import InputError
from backsplit.io.cases import Case
from backsplit.io.geometry import SHEAR_ADVICE
from backsplit.labels.matching import match_segments, missing_message
from backsplit.labels.schema import LabelSchema

MISSING_ERROR = "error"
MISSING_ABSENT = "absent"


@dataclass
class CaseLabels:
    """The validated result for one case: its label array and what was noticed on the way."""
    labels: np.ndarray
    absent_classes: list[str] = field(default_factory=list)   # classes with no segment in this case
    empty_classes: list[str] = field(default_factory=list)    # classes whose segments are present but empty
    negative: bool = False                                     # no target voxel at all
    sources: dict[str, list[str]] = field(default_factory=dict)  # class -> segment names used


def check_channels(case: Case, expected_channels: int) -> None:
    if len(case.channels) != expected_channels:
        raise InputError(f"the case has {len(case.channels)} image channel(s) but the dataset expects "
                         f"{expected_channels}; give every case the same channels in the same order", case=case.case_id)
    for index, channel in enumerate(case.channels):
        if channel.ndim != 3:
            raise InputError(f"image channel {index} is {channel.ndim}D; BackSplit needs 3D images", case=case.case_id)
        if tuple(channel.shape) != tuple(case.geometry.shape):
            raise InputError(f"image channel {index} has size {channel.shape[::-1]} (x y z) but channel 0 has "
                             f"{tuple(case.geometry.shape)[::-1]}; resample the channels to one grid",
                             case=case.case_id)
        if np.issubdtype(channel.dtype, np.floating) and not np.isfinite(channel).all():
            bad = int(np.count_nonzero(~np.isfinite(channel)))
            raise InputError(f"image channel {index} holds {bad} NaN or infinite voxel(s); replace them (e.g. with "
                             "the minimum intensity) before export", case=case.case_id)
        if not (np.issubdtype(channel.dtype, np.number) or channel.dtype == bool):
            raise InputError(f"image channel {index} has non-numeric voxels ({channel.dtype})", case=case.case_id)
    shear = case.geometry.shear()
    if shear.significant:  # cases from a Slicer scene or memory; files are refused when read (imagefile)
        raise InputError(f"the image lies on a sheared grid: {shear.describe()}. {SHEAR_ADVICE}", case=case.case_id)
    for index, geometry in enumerate(case.channel_geometries or []):
        if index == 0:
            continue
        problems = case.channel_geometries[0].differences(geometry)
        if problems:
            raise InputError(f"image channel {index} is not on the grid of channel 0: {'; '.join(problems)}; "
                             "resample the channels to one grid", case=case.case_id)


def case_labels(case: Case, schema: LabelSchema, *, mapping: Mapping[str, str] | None = None,
                expected_channels: int = 1, allow_negative: bool = False,
                missing: str = MISSING_ERROR) -> CaseLabels:
    """Validate a case and merge its segments into BackSplit labels (earliest class wins an overlap)."""
    check_channels(case, expected_channels)
    for name, mask in case.segments.items():
        if tuple(mask.shape) != tuple(case.geometry.shape):
            raise InputError(f"the segment has size {mask.shape[::-1]} (x y z) but the image has "
                             f"{tuple(case.geometry.shape)[::-1]}; export the segmentation with the image as "
                             "reference geometry", case=case.case_id, segment=name)
    matched = match_segments(case.case_id, case.segments.keys(), schema, mapping)
    absent = [cls for cls, names in matched.items() if not names]
    missing_support = [cls for cls in absent if cls in {c.name for c in schema.supports}]
    missing_target = [cls for cls in absent if cls in {c.name for c in schema.targets}]
    if missing_support and missing != MISSING_ABSENT:
        raise InputError(f"{missing_message('support', missing_support[0], list(case.segments))}; add it, map "
                         "another name to it, or choose 'treat missing support segments as absent' "
                         "(export --missing-as-absent)",
                         case=case.case_id, segment=missing_support[0])
    if missing_target and not allow_negative:
        raise InputError(f"{missing_message('target', missing_target[0], list(case.segments))}; add it, map "
                         "another name to it, or mark the case as a negative case (no lesion) "
                         "(export --allow-negative)", case=case.case_id,
                         segment=missing_target[0])
    masks: dict[str, np.ndarray] = {}
    for cls, names in matched.items():
        if not names:
            continue
        mask = case.segments[names[0]].astype(bool, copy=len(names) > 1)
        for extra in names[1:]:
            mask |= case.segments[extra].astype(bool, copy=False)
        masks[cls] = mask
    labels = schema.merge(masks, case.geometry.shape)
    # Presence from the masks (np.any is far cheaper than counting labels on large volumes). A class whose mask
    # is entirely covered by earlier classes is not reported as empty; its voxels went to those classes.
    empty = [cls for cls, mask in masks.items() if not mask.any()]
    negative = not any(cls in masks and cls not in empty for cls in (c.name for c in schema.targets))
    if negative and not allow_negative:
        raise InputError(f"the case has no target voxel ({_are_empty([c.name for c in schema.targets])}); draw the "
                         "lesion, or mark the case as a negative case (no lesion; export --allow-negative) to keep it",
                         case=case.case_id)
    return CaseLabels(labels, absent, empty, negative, {cls: list(names) for cls, names in matched.items()})


def _are_empty(names: Sequence[str]) -> str:
    """'cyst is empty', 'cyst and tumor are empty', 'a, b and c are empty'."""
    quoted = [f"'{n}'" for n in names]
    if len(quoted) == 1:
        return f"{quoted[0]} is empty"
    return f"{', '.join(quoted[:-1])} and {quoted[-1]} are empty"


def check_case_ids(case_ids: Sequence[str]) -> None:
    """Case ids become file names: refuse ids that cannot be one."""
    for case_id in case_ids:
        if not case_id or not case_id.strip():
            raise InputError("a case has an empty id; give every case an id")
        if any(ch in case_id for ch in '/\\:*?"<>|') or case_id in (".", ".."):
            raise InputError("the case id cannot be used in a file name (it holds one of / \\ : * ? \" < > |); "
                             "rename the case", case=case_id)
