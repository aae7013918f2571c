"""What a case must satisfy to join an existing dataset (pure functions; every refusal says what and how to fix).

- **Geometry policy**: nnU-Net reads voxel arrays as stored (it does not reorient), so every case of a dataset must
  store its axes in the same orientation (e.g. ``LPS``); and its spacing must lie within ``SPACING_FACTOR`` of the
  dataset's median spacing per axis (nnU-Net resamples to one target spacing; a case far outside is almost always
  the wrong image). Channels: the same number as the dataset's ``channel_names``.
- **Segment names**: every segment of a case must map to a class of the dataset (by name, ignoring case, or through
  the rename map), be a generated context class (regenerated, so its drawn version is not used), or be left out
  explicitly. An unknown name is refused with a suggested rename, never dropped silently.
- **Case ids**: an id that exists already is refused, or (``rename``) given the next free ``<id>_<n>``.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional, Sequence

import numpy as np

from backsplit.errors import InputError
from backsplit.io.geometry import Geometry
from backsplit.labels.matching import normalise
from backsplit.labels.schema import LabelSchema

SPACING_FACTOR = 3.0
ON_EXISTING_REFUSE = "refuse"
ON_EXISTING_RENAME = "rename"


def orientation_code(direction: Sequence[float]) -> str:
    """Three letters naming the physical direction of the i, j, k axes (LPS convention, as SimpleITK's
    DICOMOrientImageFilter.GetOrientationFromDirectionCosines: identity -> 'LPS'); ``direction`` row-major 3x3."""
    matrix = np.asarray(direction, float).reshape(3, 3)
    letters = (("L", "R"), ("P", "A"), ("S", "I"))
    code = ""
    for column in range(3):
        axis = int(np.argmax(np.abs(matrix[:, column])))
        code += letters[axis][0 if matrix[axis, column] > 0 else 1]
    return code


@dataclass(frozen=True)
class GeometryPolicy:
    orientation: str                       # e.g. 'LPS'
    median_spacing: tuple[float, float, float]   # (x, y, z) in mm
    spacing_factor: float = SPACING_FACTOR

    def check(self, geometry: Geometry, case_id: str) -> None:
        """Raise InputError when the case's orientation or spacing does not fit the dataset."""
        code = orientation_code(geometry.direction)
        if code != self.orientation:
            raise InputError(f"the image axes are stored in orientation {code} but the dataset's cases are "
                             f"{self.orientation}; nnU-Net does not reorient training images: reorient the volume "
                             f"to {self.orientation} (e.g. SimpleITK DICOMOrient, or Slicer's Orient Scalar Volume) "
                             "and add it again", case=case_id)
        for axis, (have, median) in enumerate(zip(geometry.spacing, self.median_spacing)):
            if median > 0 and not median / self.spacing_factor <= have <= median * self.spacing_factor:
                raise InputError(f"the voxel spacing along {'xyz'[axis]} is {have:g} mm but the dataset's cases have "
                                 f"about {median:g} mm (allowed: {median / self.spacing_factor:.3g} to "
                                 f"{median * self.spacing_factor:.3g} mm); is this the right image? Resample it "
                                 "closer to the dataset's spacing", case=case_id)

    def to_json(self) -> dict:
        return {"orientation": self.orientation, "median_spacing_mm": list(self.median_spacing),
                "spacing_factor": self.spacing_factor}

    @staticmethod
    def from_geometries(geometries: Iterable[Geometry]) -> Optional["GeometryPolicy"]:
        """The policy of a dataset from its cases' image geometries: most common orientation, median spacing."""
        items = list(geometries)
        if not items:
            return None
        codes = [orientation_code(g.direction) for g in items]
        orientation = max(set(codes), key=codes.count)
        spacing = tuple(float(v) for v in np.median(np.array([g.spacing for g in items]), axis=0))
        return GeometryPolicy(orientation, spacing)  # type: ignore[arg-type]


def header_geometry(path) -> Geometry:
    """An image file's geometry from its header only (no voxels read), by the one header reader every command uses
    (``io/imagefile.header_geometry``: also a DICOM series, a singleton 4th axis; InputError naming the file)."""
    from backsplit.io.imagefile import header_geometry as read_header_geometry

    return read_header_geometry(path, None)


class UnknownSegmentsError(InputError):
    """Segments whose names are not classes of the dataset; ``suggestions`` maps each to the closest class name
    (or None), ready to be offered as a rename map."""

    def __init__(self, case_id: str, unknown: list[str], classes: list[str], suggestions: dict[str, Optional[str]]):
        offers = [f'"{name}={cls}"' for name, cls in suggestions.items() if cls]
        offer = f"add the rename {', '.join(offers)} (--map)" if offers else "add a rename NAME=CLASS (--map)"
        super().__init__(f"the segment(s) {', '.join(repr(n) for n in unknown)} are not classes of the dataset "
                         f"({', '.join(classes)}); {offer}, or leave them out explicitly (--ignore-segment); "
                         "nothing is dropped silently", case=case_id)
        self.unknown = unknown
        self.suggestions = suggestions


def sort_segments(case_id: str, segment_names: Iterable[str], schema: LabelSchema, mapping: Mapping[str, str],
                  generated: Sequence[str] = (), ignore: Sequence[str] = ()) -> list[str]:
    """Check that every segment is accounted for. Returns the segments not used (generated classes, which export
    regenerates, and the explicitly ignored ones); raises UnknownSegmentsError for the rest."""
    classes = {normalise(c.name) for c in schema.classes}
    aliases = {normalise(k) for k in mapping}
    generated_keys = {normalise(n) for n in generated}
    ignored = {normalise(n) for n in ignore}
    unused, unknown = [], []
    for name in segment_names:
        key = normalise(name)
        if key in classes or key in aliases:
            continue
        if key in generated_keys or key in ignored:
            unused.append(name)
        else:
            unknown.append(name)
    if unknown:
        names = schema.names
        lowered = {n.casefold(): n for n in names}
        suggestions = {}
        for name in unknown:
            close = difflib.get_close_matches(name.casefold(), list(lowered), n=1, cutoff=0.3)
            suggestions[name] = lowered[close[0]] if close else None
        raise UnknownSegmentsError(case_id, unknown, names, suggestions)
    return unused


def assign_case_ids(requested: Sequence[str], existing: Iterable[str], on_existing: str) -> dict[str, str]:
    """Final id of each new case. ``refuse``: an id already in the dataset (case-insensitively, as file systems may
    be) is an error; ``rename``: it becomes ``<id>_<n>`` with the smallest free n >= 2. Returns requested -> final."""
    if on_existing not in (ON_EXISTING_REFUSE, ON_EXISTING_RENAME):
        raise ValueError(f"on_existing must be '{ON_EXISTING_REFUSE}' or '{ON_EXISTING_RENAME}'")
    used = {c.casefold() for c in existing}
    final: dict[str, str] = {}
    for case_id in requested:
        if case_id.casefold() in used:
            if on_existing == ON_EXISTING_REFUSE:
                raise InputError("a case with this id is already in the dataset; give the new case another id, or "
                                 "let BackSplit give it a new one (--rename-existing); the existing case is never "
                                 "replaced", case=case_id)
            n = 2
            while f"{case_id}_{n}".casefold() in used:
                n += 1
            final[case_id] = f"{case_id}_{n}"
        else:
            final[case_id] = case_id
        used.add(final[case_id].casefold())
    return final
