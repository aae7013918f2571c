"""Read a Slicer ``.seg.nrrd`` the way 3D Slicer reads it, whatever Slicer version wrote it.

The rules follow Slicer's own reader, ``vtkMRMLSegmentationStorageNode::ReadBinaryLabelmapRepresentation`` and
``ReadBinaryLabelmapRepresentation4DSpatial`` in ``Libs/MRML/Core/vtkMRMLSegmentationStorageNode.cxx`` (line
numbers at tag v5.10.0; the same code two lines lower at v5.12.3):

* segments are numbered by the ``Segment<i>_ID`` fields (line 646); a missing ``_Name`` makes the ID the name (952);
* ``Segment<i>_Layer`` gives the layer (the scalar component, NRRD kind ``list``); when it is missing the layer is the
  segment index ``i`` (648-657; Slicer 4.10 and earlier wrote one component per segment and no ``_Layer``);
* ``Segment<i>_LabelValue`` gives the voxel value (830-835); when it is missing the value stays vtkSegment's default
  1 (``Libs/vtkSegmentationCore/vtkSegment.cxx`` line 68 at both tags);
* a layer is clipped to the union of the ``_Extent`` boxes of its segments (file voxel indices i0 i1 j0 j1 k0 k1,
  841-880); a segment without ``_Extent`` leaves its layer unclipped;
* a 1 x 1 x 1 image means "no image data": every segment is empty and the file has no geometry (612-631; Slicer
  writes an empty segmentation without reference geometry that way);
* a ``Segmentation_Extent`` field marks the older "4D spatial" layout (583, read by ``...4DSpatial`` at 322-513): a
  4D image whose 4th axis holds one binary volume per segment, each clipped to its ``_Extent`` given relative to
  ``Segmentation_Extent`` (482-491).

A segment that reads as empty although its own layer's ``_Extent`` says it holds voxels, and (for layouts inferred
from missing fields) voxel values that no segment claims, are errors: the file is not what its header says, and an
empty mask would silently lose a lesion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from backsplit.errors import InputError
from backsplit.io.geometry import Geometry
from backsplit.io.imagefile import checked_geometry, read_sitk
from backsplit.labels.terminology import terminology_from_tags


@dataclass
class SegmentationContent:
    """What a segmentation file holds: named masks (z, y, x) on its own grid."""
    geometry: Geometry
    masks: dict[str, np.ndarray]
    colors: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    terminology: dict[str, str] = field(default_factory=dict)
    has_geometry: bool = True     # False for Slicer's 1x1x1 "no image data" file (every mask empty)


def _extent(text: Optional[str]) -> Optional[tuple[int, ...]]:
    """'i0 i1 j0 j1 k0 k1' -> ints; None when missing or unreadable (as Slicer: treated as 'no extent given')."""
    if text is None:
        return None
    try:
        values = tuple(int(float(v)) for v in text.split()[:6])
    except ValueError:
        return None
    return values if len(values) == 6 else None


def _is_empty_extent(extent: tuple[int, ...]) -> bool:
    return extent[0] > extent[1] or extent[2] > extent[3] or extent[4] > extent[5]


def _box(extents: list[Optional[tuple[int, ...]]], shape_zyx: tuple[int, ...], offset=(0, 0, 0)):
    """Array slices (k, j, i) of the union of extents shifted by -offset, clipped to the array; None = whole array
    (an extent is missing), () = empty."""
    if any(e is None for e in extents):
        return None
    valid = [e for e in extents if not _is_empty_extent(e)]
    if not valid:
        return ()
    lo = [min(e[2 * a] for e in valid) - offset[a] for a in range(3)]
    hi = [max(e[2 * a + 1] for e in valid) - offset[a] for a in range(3)]
    n_xyz = shape_zyx[::-1]
    slices = [slice(max(0, lo[a]), min(n_xyz[a], hi[a] + 1)) for a in range(3)]
    return tuple(slices[::-1])


def _clip(mask: np.ndarray, box) -> np.ndarray:
    if box is None:
        return mask
    clipped = np.zeros(mask.shape, bool)
    if box and all(s.stop > s.start for s in box):
        clipped[box] = mask[box]
    return clipped


def read_seg_nrrd(path: Path, case_id: str) -> SegmentationContent:
    """Read a Slicer ``.seg.nrrd`` (any layout Slicer reads) into named boolean masks (z, y, x)."""
    import SimpleITK as sitk

    image = read_sitk(path, "segmentation", case_id)
    keys = set(image.GetMetaDataKeys())

    def meta(index: int, name: str) -> Optional[str]:
        key = f"Segment{index}_{name}"
        return image.GetMetaData(key) if key in keys else None

    count = 0
    while meta(count, "ID") is not None or meta(count, "Name") is not None:
        count += 1
    if count == 0:
        raise InputError("the file has no segments (no Segment0_ID / Segment0_Name field), so it is not a Slicer "
                         "segmentation; save it from Slicer as .seg.nrrd, or give a labelmap with a name map",
                         case=case_id, path=str(path))
    legacy = "Segmentation_Extent" in keys
    array = sitk.GetArrayFromImage(image)
    if image.GetDimension() == 4:  # one volume per layer along a 4th axis (the 4D spatial layout)
        frames = [array[t] for t in range(array.shape[0])]
        direction = np.asarray(image.GetDirection(), float).reshape(4, 4)[:3, :3]
        geometry = Geometry.create(image.GetSpacing()[:3], image.GetOrigin()[:3], direction.ravel(), frames[0].shape)
    elif image.GetNumberOfComponentsPerPixel() > 1:
        frames = [array[..., c] for c in range(array.shape[-1])]
        geometry = Geometry.from_sitk(image)
    else:
        frames = [array]
        geometry = Geometry.from_sitk(image)
    shape = frames[0].shape
    no_data = shape == (1, 1, 1)  # Slicer: extent [0 0 0 0 0 0] means there is no image data
    if not no_data:
        geometry = checked_geometry(geometry, "segmentation", case_id, str(path))
    segments = []
    for index in range(count):
        name = meta(index, "Name")
        name = name if name is not None else meta(index, "ID")
        layer_text, value_text = meta(index, "Layer"), meta(index, "LabelValue")
        try:
            layer = int(layer_text) if (layer_text is not None and not legacy) else index
            value = int(value_text) if value_text is not None else 1
        except ValueError:
            raise InputError(f"segment {index} has an unreadable layer or label value ('{layer_text}', "
                             f"'{value_text}'); save the file again from Slicer", case=case_id, segment=name,
                             path=str(path)) from None
        segments.append((index, name, layer, value, _extent(meta(index, "Extent"))))
    inferred = any(meta(i, "Layer") is None or meta(i, "LabelValue") is None for i in range(count))
    common = (_extent(image.GetMetaData("Segmentation_Extent")) or (0,) * 6)[::2] if legacy else (0, 0, 0)
    masks: dict[str, np.ndarray] = {}
    for _index, name, layer, value, extent in segments:
        if layer < 0 or layer >= len(frames):
            raise InputError(f"segment '{name}' is on layer {layer} but the file has {len(frames)} layer(s); the "
                             "file is damaged, save it again from Slicer", case=case_id, path=str(path))
        if name in masks:
            raise InputError("two segments in the file have the same name; rename one in Slicer",
                             case=case_id, segment=name, path=str(path))
        if no_data:
            masks[name] = np.zeros(shape, bool)
            continue
        frame = frames[layer]
        same_layer = [s for s in segments if s[2] == layer]
        box = _box([extent] if legacy else [s[4] for s in same_layer], shape, common)
        masks[name] = _clip(frame != 0 if legacy else frame == value, box)
        own_extent_says_full = extent is not None and not _is_empty_extent(extent) and (legacy or len(same_layer) == 1)
        if own_extent_says_full and not masks[name].any():
            raise InputError(f"the segment reads as empty (layer {layer}, label value {value}) although the file "
                             f"says it covers voxels {' '.join(str(v) for v in extent)} (i0 i1 j0 j1 k0 k1); the "
                             "file's layout is not what its header says. Open it in Slicer and save it again "
                             "(Slicer 5)", case=case_id, segment=name, path=str(path))
    if inferred and not legacy and not no_data:
        _check_unclaimed(frames, segments, case_id, path)
    colors, terminology = {}, {}
    for index, name, *_ in segments:
        color = meta(index, "Color") or meta(index, "DefaultColor")
        if color:
            try:
                colors[name] = tuple(float(c) for c in color.split()[:3])
            except ValueError:
                pass
        tags = meta(index, "Tags")
        entry = terminology_from_tags(tags) if tags else None
        if entry:
            terminology[name] = entry
    return SegmentationContent(geometry, masks, colors, terminology, has_geometry=not no_data)


def _check_unclaimed(frames: list[np.ndarray], segments: list, case_id: str, path: Path) -> None:
    """With layers or label values inferred from missing fields: every non-zero voxel value of a layer must belong
    to a segment, or the layout was not understood (voxels would be lost without a word)."""
    for layer, frame in enumerate(frames):
        claimed = {s[3] for s in segments if s[2] == layer}
        if frame.dtype.itemsize == 1 and np.issubdtype(frame.dtype, np.integer):
            counts = np.bincount(frame.view(np.uint8).ravel(), minlength=256)
            present = {int(v) if frame.dtype == np.uint8 else int(np.int8(np.uint8(v)))
                       for v in np.flatnonzero(counts)}
        else:
            present = set(np.unique(frame).tolist())
        unclaimed = sorted(present - claimed - {0})
        if unclaimed:
            names = ", ".join(f"'{s[1]}' (value {s[3]})" for s in segments if s[2] == layer) or "none"
            raise InputError(f"layer {layer} holds voxel value(s) {unclaimed[:5]} that no segment claims (segments "
                             f"on this layer: {names}); the file's segment fields (Layer, LabelValue) do not "
                             "describe its voxels. Open it in Slicer and save it again (Slicer 5)", case=case_id,
                             path=str(path))
