"""Pair each segmentation in the scene with the volume it belongs to ("Add all loaded").

A segmentation drawn in Slicer keeps a link to its reference volume. One loaded from a ``.seg.nrrd`` file (drag and
drop, Sample Data, the extension's own demo samples) has none: neither the segmentation storage node nor the
segmentation reader sets it (docs/SLICER_COMPATIBILITY.md). Such a segmentation is paired, in this order, with
1. its reference volume (``reference``);
2. the volume whose voxel grid its labelmap lies on (same axes and spacing, voxel corners on the volume's lattice,
   extent inside the volume) (``geometry``; several such volumes: the one with the matching name);
3. the volume with the matching name ("CT 1" and "CT 1 segmentation" or "CT 1.seg") (``name``).
"""

from __future__ import annotations

import re
from typing import Optional, Sequence

import numpy as np

REFERENCE, GEOMETRY, NAME = "reference", "geometry", "name"
PAIRING_TEXT = {REFERENCE: "reference volume", GEOMETRY: "same voxel grid", NAME: "matching name"}


def name_key(name: str) -> str:
    """A name without case, separators and segmentation suffixes: 'CT_1.seg' and 'ct 1 Segmentation' -> 'ct1'."""
    text = (name or "").strip().casefold()
    text = re.sub(r"(\.seg)?(\.nrrd|\.nii(\.gz)?)$", "", text)
    text = re.sub(r"[\s_\-.]*(segmentation|segment|seg|labels?|mask)$", "", text)
    return re.sub(r"[\s_\-.]+", "", text)


def lies_on_grid(labelmap_ijk_to_ras, labelmap_extent: Sequence[int], volume_ijk_to_ras,
                 volume_dims: Sequence[int], tolerance: float = 1e-3) -> bool:
    """Whether a labelmap (4x4 IJK-to-RAS matrix, VTK extent (i0, i1, j0, j1, k0, k1)) lies on a volume's voxel grid
    (4x4 IJK-to-RAS, dimensions (i, j, k)): same axis directions and spacing (relative tolerance), its first voxel on
    the volume's lattice (within ``tolerance`` voxels * 10) and its extent inside the volume's."""
    label = np.asarray(labelmap_ijk_to_ras, float)
    volume = np.asarray(volume_ijk_to_ras, float)
    scale = max(float(np.abs(volume[:3, :3]).max()), 1e-9)
    if not np.allclose(label[:3, :3], volume[:3, :3], atol=tolerance * scale):
        return False
    extent = [int(v) for v in labelmap_extent]
    first = np.array([extent[0], extent[2], extent[4], 1.0])
    corner = (np.linalg.inv(volume) @ (label @ first))[:3]
    if not np.allclose(corner, np.round(corner), atol=10 * tolerance):
        return False
    if extent[1] < extent[0] or extent[3] < extent[2] or extent[5] < extent[4]:
        return True                                         # empty labelmap: the lattice is all one can check
    size = np.array([extent[1] - extent[0], extent[3] - extent[2], extent[5] - extent[4]])
    start = np.round(corner)
    return bool((start >= 0).all() and (start + size <= np.asarray(volume_dims) - 1).all())


def choose_volume(segmentation_name: str, reference, on_grid: Sequence, all_volumes: Sequence,
                  name_of=lambda node: node.GetName()) -> tuple[Optional[object], Optional[str]]:
    """(volume, pairing) for one segmentation; (None, None) when nothing fits. ``on_grid``: the volumes whose grid
    its labelmap lies on; ``all_volumes``: every candidate volume (for the name rule)."""
    if reference is not None:
        return reference, REFERENCE
    key = name_key(segmentation_name)
    if len(on_grid) == 1:
        return on_grid[0], GEOMETRY
    if on_grid:
        named = [v for v in on_grid if name_key(name_of(v)) == key]
        return (named[0], GEOMETRY) if named else (None, None)
    named = [v for v in all_volumes if name_key(name_of(v)) == key]
    return (named[0], NAME) if len(named) == 1 else (None, None)


def pairing_summary(pairings: Sequence[str], skipped: Sequence[str] = ()) -> str:
    """'Added 3 case(s): 1 by reference volume, 2 by same voxel grid.' (+ the segmentations left out)."""
    counts = {p: list(pairings).count(p) for p in (REFERENCE, GEOMETRY, NAME) if p in pairings}
    text = f"Added {len(pairings)} case(s)"
    if counts:
        text += ": " + ", ".join(f"{n} by {PAIRING_TEXT[p]}" for p, n in counts.items())
    text += "."
    if skipped:
        text += (f" No volume found for: {', '.join(skipped)} (choose its volume above and press Add case).")
    return text
