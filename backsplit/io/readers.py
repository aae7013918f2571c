"""Read cases from files: image channels (any format SimpleITK reads, or a DICOM series) plus either a Slicer
``.seg.nrrd`` (segment names, colours, layers), a DICOM SEG (``dicomseg``) or a labelmap with a name map (JSON, CSV or
Slicer colour table).

Case lists come from a CSV file (one row per case) or a folder (``<case>.seg.nrrd`` next to ``<case>.nii.gz``
or ``<case>_0000.nii.gz``, ``<case>_0001.nii.gz`` ...). Nothing is read until a case is loaded.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from backsplit.errors import InputError
from backsplit.io.cases import Case, unique_case_ids
from backsplit.io.dicom import is_dicom, is_dicom_seg, series_uid_of
from backsplit.io.dicomseg import seg_on_image
from backsplit.io.geometry import Geometry, format_values
from backsplit.io.imagefile import read_image, read_sitk
from backsplit.io.segnrrd import SegmentationContent, read_seg_nrrd

__all__ = ["read_image", "read_sitk", "read_seg_nrrd", "SegmentationContent", "read_name_map", "read_labelmap",
           "align_to_image", "FileCaseSource", "cases_from_csv", "cases_from_folder", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
DICOM_SEG_NAME = r"([._]seg)?\.(dcm|dicom)$"   # '<case>.dcm', '<case>_seg.dcm', '<case>.seg.dcm' in a case folder
LABEL_NAME_MAP_SUFFIXES = (".json", ".csv", ".tsv", ".txt", ".ctbl")


# The readers everyone uses (integrity check, ITK warnings, shear, singleton 4th axis) live in imagefile.py; the
# Slicer .seg.nrrd layouts in segnrrd.py. Re-exported here for existing callers.
_read_sitk = read_sitk


def read_name_map(path: Path, case_id: str = "") -> dict[int, str]:
    """Read a label value -> segment name map from JSON ({"1": "kidney"} or {"kidney": 1}), CSV/TSV
    ("value,name" rows) or a Slicer colour table ("value name r g b a" rows)."""
    if not path.is_file():
        raise InputError("the name map file does not exist; check the path", case=case_id or None, path=str(path))
    text = path.read_text(encoding="utf-8-sig")
    result: dict[int, str] = {}
    try:
        if path.suffix.lower() == ".json":
            raw = json.loads(text)
            if isinstance(raw, dict) and "labels" in raw and isinstance(raw["labels"], dict):
                raw = raw["labels"]  # a dataset.json
            for key, value in raw.items():
                if str(key).strip().lstrip("-").isdigit():
                    result[int(key)] = str(value)
                else:
                    result[int(value)] = str(key)
        elif path.suffix.lower() in (".csv", ".tsv"):
            delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
            for row in csv.reader(text.splitlines(), delimiter=delimiter):
                if not row or not row[0].strip() or row[0].strip().startswith("#"):
                    continue
                if not row[0].strip().isdigit():
                    continue  # header
                result[int(row[0])] = row[1].strip()
        else:  # Slicer colour table
            for line in text.splitlines():
                parts = line.split()
                if not parts or parts[0].startswith("#") or not parts[0].isdigit():
                    continue
                result[int(parts[0])] = parts[1]
    except (ValueError, IndexError, json.JSONDecodeError) as exc:
        raise InputError(f"the name map cannot be parsed ({exc}); write it as JSON {{\"1\": \"kidney\"}} or as "
                         "'value,name' lines", case=case_id or None, path=str(path)) from None
    result.pop(0, None)  # background
    if not result:
        raise InputError("the name map names no label value above 0", case=case_id or None, path=str(path))
    return result


def read_labelmap(path: Path, names: dict[int, str], case_id: str) -> SegmentationContent:
    array, geometry = read_image(path, case_id, "labelmap")
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise InputError("the labelmap holds non-integer values; save it as an integer label image",
                             case=case_id, path=str(path))
        array = array.astype(np.int64)
    present = set(np.unique(array).tolist()) - {0}
    unknown = sorted(present - set(names))
    if unknown:
        raise InputError(f"the labelmap holds values {unknown} that the name map does not name; add them to the "
                         "name map (or set them to 0)", case=case_id, path=str(path))
    return SegmentationContent(geometry, {name: array == value for value, name in names.items()})


def align_to_image(content: SegmentationContent, image_geometry: Geometry, case_id: str,
                   path: Path) -> dict[str, np.ndarray]:
    """Put the segmentation's masks on the image grid.

    Slicer crops ``.seg.nrrd`` files to the segments' extent, so a segmentation whose grid is a shifted sub-block
    (or super-block) of the image grid with the same spacing and direction is pasted in place. Directions count as
    the same when the difference moves no voxel by more than half the smallest spacing over the image extent
    (``geometry.DIRECTION_TOLERANCE_VOXELS``): nearest-neighbour resampling would then return the very same voxels.
    Any other mismatch (spacing, direction, an origin between voxels) is an error naming what differs. A file whose
    segments are all empty (or Slicer's 1x1x1 "no image data" file) needs no geometry: empty masks are returned.
    """
    if not content.has_geometry or not any(mask.any() for mask in content.masks.values()):
        # Nothing to place (e.g. Slicer's 1x1x1 file of an empty segmentation without reference geometry): every
        # segment is empty on the image grid, whatever the file's grid is.
        return {name: np.zeros(image_geometry.shape, bool) for name in content.masks}
    problems = image_geometry.differences(content.geometry, compare_shape=False)
    offset = image_geometry.origin_offset_in_voxels(content.geometry)
    rounded = np.round(offset)
    on_lattice = np.all(np.abs(offset - rounded) <= 0.01)
    problems = [p for p in problems if not (p.startswith("origin") and on_lattice)]
    if problems:
        raise InputError(f"the segmentation does not lie on the image grid: {'; '.join(problems)}. Resample the "
                         "segmentation to the image (in Slicer: export it with the image as reference geometry)",
                         case=case_id, path=str(path))
    shift = rounded.astype(int)[::-1]  # (k, j, i)
    if np.all(shift == 0) and tuple(content.geometry.shape) == tuple(image_geometry.shape):
        return content.masks
    aligned: dict[str, np.ndarray] = {}
    for name, mask in content.masks.items():
        out = np.zeros(image_geometry.shape, dtype=bool)
        src = tuple(slice(max(0, -s), min(m, n - s)) for s, m, n in zip(shift, mask.shape, image_geometry.shape))
        dst = tuple(slice(max(0, s), max(0, s) + (sl.stop - sl.start)) for s, sl in zip(shift, src))
        if any(sl.stop <= sl.start for sl in src):
            inside = 0
        else:
            out[dst] = mask[src]
            inside = int(out.sum())
        if inside != int(mask.sum()):
            raise InputError("part of the segment lies outside the image; crop the segment to the image or "
                             f"check that the right image is paired with this segmentation "
                             f"(offset {format_values(shift[::-1])} voxels)", case=case_id, segment=name,
                             path=str(path))
        aligned[name] = out
    return aligned


@dataclass
class FileCaseSource:
    """A case on disk: one file per channel, plus a segmentation (.seg.nrrd) or a labelmap with a name map."""
    case_id: str
    images: Sequence[Path]
    segmentation: Path
    name_map: Optional[dict[int, str]] = None  # required for a labelmap, ignored for .seg.nrrd

    @property
    def description(self) -> str:
        return f"case '{self.case_id}' ({self.segmentation})"

    def load(self) -> Case:
        if not self.images:
            raise InputError("the case has no image file; give at least one channel", case=self.case_id)
        channels, geometries = [], []
        for index, path in enumerate(self.images):
            array, geometry = read_image(Path(path), self.case_id, f"image (channel {index})")
            channels.append(array)
            geometries.append(geometry)
        seg_path = Path(self.segmentation)
        if is_seg_nrrd(seg_path):
            content = read_seg_nrrd(seg_path, self.case_id)
        elif is_dicom_seg(seg_path):  # names and geometry from the SEG (ITK's generic reader would stack its frames)
            content = seg_on_image(seg_path, geometries[0], self.case_id, series_uid_of(Path(self.images[0])))
        else:
            if not self.name_map:
                raise InputError("a labelmap needs a name map (label value -> segment name); give --names or a "
                                 "'names' column, or save a .seg.nrrd from Slicer", case=self.case_id,
                                 path=str(seg_path))
            content = read_labelmap(seg_path, self.name_map, self.case_id)
        # Channel geometry is checked by validation (it names both channels); align against channel 0.
        masks = align_to_image(content, geometries[0], self.case_id, seg_path)
        return Case(self.case_id, channels, geometries[0], masks, content.colors,
                    channel_geometries=geometries, description=self.description,
                    terminology=dict(content.terminology))


def is_seg_nrrd(path: Path) -> bool:
    return path.name.lower().endswith(".seg.nrrd")


def strip_suffix(name: str) -> str:
    """A file name without its image or segmentation suffix (``.seg.nrrd`` or one of ``IMAGE_SUFFIXES``, any
    letter case): 'case7.seg.nrrd' -> 'case7', 'ct_0000.nii.gz' -> 'ct_0000'; other names unchanged."""
    lower = name.lower()
    for suffix in (".seg.nrrd",) + IMAGE_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def cases_from_csv(path: Path, default_name_map: Optional[dict[int, str]] = None) -> list[FileCaseSource]:
    """Read a case list CSV with columns ``case_id``, ``image`` (channels separated by ';' or columns
    ``image_0000``, ``image_0001`` ...), ``segmentation`` and optional ``names`` (a name map file per case).
    Relative paths are relative to the CSV file."""
    path = Path(path)
    if not path.is_file():
        raise InputError("the case list does not exist; check the path", path=str(path))
    base = path.parent
    sources: list[FileCaseSource] = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        fields = [f.strip().lower() for f in (reader.fieldnames or [])]
        image_columns = sorted(f for f in fields if re.fullmatch(r"image(_\d+)?", f))
        if "segmentation" not in fields or not image_columns:
            raise InputError("the case list needs the columns 'case_id', 'image' and 'segmentation' "
                             f"(found: {', '.join(fields) or 'none'})", path=str(path))
        for line, raw in enumerate(reader, start=2):
            row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
            case_id = row.get("case_id") or strip_suffix(Path(row["segmentation"]).name)
            images: list[Path] = []
            for column in image_columns:
                images += [base / p.strip() for p in row.get(column, "").split(";") if p.strip()]
            if not row.get("segmentation"):
                raise InputError(f"line {line} has no segmentation", case=case_id, path=str(path))
            name_map = read_name_map(base / row["names"], case_id) if row.get("names") else default_name_map
            sources.append(FileCaseSource(case_id, images, base / row["segmentation"], name_map))
    if not sources:
        raise InputError("the case list has no cases; add one row per case", path=str(path))
    return sources


def cases_from_folder(folder: Path, default_name_map: Optional[dict[int, str]] = None) -> list[FileCaseSource]:
    """Find cases in a folder: every ``<case>.seg.nrrd`` (or, with a name map, ``<case>.label.nii.gz`` /
    ``<case>_seg.nii.gz``; or a DICOM SEG ``<case>.dcm`` / ``<case>_seg.dcm``) with its image ``<case>.nii.gz``
    (or .nrrd, .mha), channels ``<case>_0000.nii.gz`` ..., or a sub-folder ``<case>/`` holding its DICOM series.
    Case ids are unique: two files for one case are refused, naming both."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("the case folder does not exist; check the path", path=str(folder))
    sources = []
    files = sorted(p for p in folder.iterdir() if p.is_file())
    for seg in files:
        lower = seg.name.lower()
        if is_seg_nrrd(seg):
            case_id = seg.name[: -len(".seg.nrrd")]
        elif default_name_map and re.search(r"(\.label|_seg|_label)\.(nii\.gz|nii|nrrd|mha)$", lower):
            case_id = re.sub(r"(\.label|_seg|_label)\.(nii\.gz|nii|nrrd|mha)$", "", seg.name, flags=re.I)
        elif re.search(DICOM_SEG_NAME, lower) and is_dicom_seg(seg):
            case_id = re.sub(DICOM_SEG_NAME, "", seg.name, flags=re.I)
        else:
            continue
        plain = [p for p in files if p != seg and strip_suffix(p.name) == case_id and not is_seg_nrrd(p)
                 and p.name.lower().endswith(IMAGE_SUFFIXES)]
        if is_dicom(folder / case_id):  # the DICOM series in a sub-folder named after the case
            plain.append(folder / case_id)
        channels = sorted(p for p in files if re.fullmatch(re.escape(case_id) + r"_\d{4}", strip_suffix(p.name)))
        # one image per case: 'a.nii.gz' and 'a.nrrd' (or 'a.nii.gz' and 'a_0000.nii.gz') used to become 2 channels
        unique_case_ids([(case_id, p) for p in plain + channels[:1]], folder)
        unique_case_ids([(strip_suffix(p.name), p) for p in channels], folder)
        images = plain or channels
        if not images:
            raise InputError(f"no image found for the segmentation; name it '{case_id}.nii.gz' or "
                             f"'{case_id}_0000.nii.gz'", case=case_id, path=str(seg))
        sources.append(FileCaseSource(case_id, images, seg, default_name_map))
    unique_case_ids([(source.case_id, source.segmentation) for source in sources], folder)  # a.seg.nrrd, a_seg.nii
    labelmaps = [p.name for p in files if re.search(r"(\.label|_seg|_label)\.(nii\.gz|nii|nrrd|mha)$", p.name.lower())]
    if not sources and labelmaps and not default_name_map:
        raise InputError(f"no cases found: the folder holds labelmaps ('{labelmaps[0]}', ...) but no name map was "
                         "given; name their values with --names (JSON, CSV or Slicer .ctbl)", path=str(folder))
    if not sources:
        raise InputError("no cases found: the folder holds no '<case>.seg.nrrd' files (or labelmaps named "
                         "'<case>.label.nii.gz' with a name map, or DICOM SEG files '<case>.dcm')", path=str(folder))
    return sources
