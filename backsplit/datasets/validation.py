"""Check one loaded case against the export request and turn its segments into a label array.

Pure functions: no file is written here. Every error names the case (and segment or channel). Facts about the whole
set of cases (a target or support class that no case has a segment for) are checked by ``classes_absent_everywhere``:
before the first case is read when the segment names can be read from headers (``known_segment_names``), and again
over what the cases held once every case is read, before anything is moved into place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np

from backsplit.errors import InputError
from backsplit.io.cases import Case
from backsplit.io.geometry import SHEAR_ADVICE
from backsplit.labels.matching import did_you_mean, match_segments, missing_message, near_miss
from backsplit.labels.schema import LabelSchema, name_key

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


# The longest file name a dataset case gives, beyond its id: '<id>_0000.nii.tmp.nii' (the writer's temporary file
# for '<id>_0000.nii.gz').
DATASET_NAME_EXTRA = len("_0000.nii.tmp.nii")


def name_limit(folder: Optional[Path] = None) -> int:
    """The longest file name (bytes) the file system of ``folder`` (or of its nearest existing parent) allows:
    ``os.pathconf(..., "PC_NAME_MAX")``, 255 where it cannot be asked (Windows; most file systems' limit)."""
    import os

    path = Path(folder).resolve() if folder is not None else None
    while path is not None and not path.exists() and path != path.parent:
        path = path.parent
    try:
        return int(os.pathconf(str(path), "PC_NAME_MAX")) if path is not None else 255
    except (AttributeError, OSError, ValueError):
        return 255


def check_id_length(case_id: str, extra_bytes: int, example: str, folder: Optional[Path] = None) -> None:
    """Refuse a case id whose longest file name (``len(id as UTF-8) + extra_bytes``, e.g. ``example`` =
    '<id>_0000.nii.gz') is over the file system's name limit (``name_limit``), instead of an OSError mid-write.
    Raises InputError naming the id (shortened), both lengths and the longest id allowed."""
    size = len(case_id.encode("utf-8"))
    limit = name_limit(folder)
    if size + extra_bytes > limit:
        shown = case_id[:24] + "..." if len(case_id) > 27 else case_id
        raise InputError(f"the case id is {size} bytes long, so the files written for it ('{shown}{example}' and "
                         f"its temporary copy) need names of up to {size + extra_bytes} bytes, over the {limit}-byte "
                         f"limit of file names; shorten the id to at most {limit - extra_bytes} bytes (UTF-8)",
                         case=shown)


def check_case_ids(case_ids: Sequence[str], folder: Optional[Path] = None) -> None:
    """Case ids become file names: refuse ids that cannot be one (empty, reserved characters, too long for a file
    name in ``folder``)."""
    for case_id in case_ids:
        if not case_id or not case_id.strip():
            raise InputError("a case has an empty id; give every case an id")
        if any(ch in case_id for ch in '/\\:*?"<>|') or case_id in (".", ".."):
            raise InputError("the case id cannot be used in a file name (it holds one of / \\ : * ? \" < > |); "
                             "rename the case", case=case_id)
        check_id_length(case_id, DATASET_NAME_EXTRA, "_0000.nii.gz", folder)


def known_segment_names(source) -> Optional[list[str]]:
    """The segment names of a case source without reading its voxels, or None when they cannot be known cheaply:
    a source's own ``segment_names()``, an in-memory case's segments, a labelmap's name map, a ``.seg.nrrd``'s
    header (``Segment<i>_Name``, else ``_ID``, as Slicer reads it). A header that cannot be read gives None (the
    case's own load then reports it)."""
    if callable(getattr(source, "segment_names", None)):
        return list(source.segment_names())
    case = getattr(source, "case", None)
    if case is not None and isinstance(getattr(case, "segments", None), dict):
        return list(case.segments)
    segmentation = getattr(source, "segmentation", None)
    if segmentation is None:
        return None
    from backsplit.io.dicom import is_dicom_seg  # a DICOM SEG names its segments itself (SegmentSequence)

    if is_dicom_seg(Path(segmentation)):
        from backsplit.io.dicomseg import seg_segment_names

        return seg_segment_names(Path(segmentation))
    if not str(segmentation).lower().endswith(".seg.nrrd"):
        names = getattr(source, "name_map", None)
        return [str(n) for n in names.values()] if names else None
    import SimpleITK as sitk

    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(Path(segmentation)))
        reader.ReadImageInformation()
        keys = set(reader.GetMetaDataKeys())
    except RuntimeError:
        return None
    names, index = [], 0
    while f"Segment{index}_ID" in keys or f"Segment{index}_Name" in keys:
        key = f"Segment{index}_Name" if f"Segment{index}_Name" in keys else f"Segment{index}_ID"
        names.append(reader.GetMetaData(key))
        index += 1
    return names


def classes_absent_everywhere(schema: LabelSchema, names_per_case: Mapping[str, Iterable[str]],
                              mapping: Mapping[str, str] | None = None,
                              present_elsewhere: Mapping[str, int] | None = None) -> None:
    """Refuse a target or support class that no case has a segment for (a typo in the class name, or a name map
    that misses): --allow-negative / --missing-as-absent would otherwise write a dataset without a lesion voxel, or
    an empty class while the real voxels fold into background.

    ``names_per_case``: case id -> its segment names; ``mapping``: segment alias -> class (as ``match_segments``);
    ``present_elsewhere``: class -> number of cases outside ``names_per_case`` that have it (``dataset add``: the
    dataset's cases). Raises InputError for the first such class, with the closest segment name the cases do have
    ("did you mean 'cyst' (in 3 of 3 cases)?") before any code-point explanation."""
    alias = {name_key(k): name_key(v) for k, v in (mapping or {}).items()}
    class_keys = {name_key(c.name) for c in schema.classes}
    counts: dict[str, int] = {}
    spelled: dict[str, str] = {}
    for names in names_per_case.values():
        for key in {alias.get(name_key(n), name_key(n)) for n in names}:
            counts[key] = counts.get(key, 0) + 1
        for name in names:
            spelled.setdefault(name_key(name), name)
    total = len(names_per_case)
    roles = [(c.name, "target") for c in schema.targets] + [(c.name, "support") for c in schema.supports]
    for cls, role in roles:
        if counts.get(name_key(cls)) or (present_elsewhere or {}).get(cls):
            continue
        unused = [name for key, name in spelled.items() if key not in class_keys and key not in alias]
        close = did_you_mean(cls, unused)
        option = "--targets" if role == "target" else "--supports"
        if close:
            cases_with = sum(1 for names in names_per_case.values() if name_key(close) in map(name_key, names))
            hint = f"; did you mean '{close}' (in {cases_with} of {total} cases)?"
            looks = near_miss(cls, [close])
            if looks:
                hint += f" ({looks})"
            hint += f" Give {option} with that name, or map it: --map '{close}={cls}'"
        else:
            listed = ", ".join(f"'{n}'" for n in sorted(spelled.values())[:12]) or "no segments"
            hint = f"; the cases have: {listed}"
        option_note = ("--allow-negative" if role == "target" else "--missing-as-absent")
        raise InputError(f"the {role} segment is missing in every case ('{cls}' is in none of the {total} "
                         f"case(s)){hint}. {option_note} cannot help: it keeps cases without the class, and no case "
                         "has it", segment=cls, case=next(iter(names_per_case)) if total == 1 else None)
