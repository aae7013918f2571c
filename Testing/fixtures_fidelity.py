"""Input files built byte by byte for the fidelity tests: NRRD headers as old Slicer versions wrote them, sheared
grids, damaged gzip streams. Nothing is copied from elsewhere."""

from __future__ import annotations

import gzip
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np


def write_nrrd(path: Path, array: np.ndarray, directions: Sequence[str], origin: Sequence[float], kinds: str,
               fields: Optional[dict] = None, encoding: str = "gzip") -> Path:
    """Write ``array`` (C order, last axis fastest: (z, y, x) or (z, y, x, components)) as a NRRD with the given
    'space directions' entries (one per NRRD axis, fastest first, e.g. 'none' for a list axis), 'kinds', and
    ``key:=value`` fields, as Slicer's NRRD writer lays them out."""
    types = {np.dtype(np.uint8): "uint8", np.dtype(np.int16): "int16", np.dtype(np.float32): "float"}
    lines = ["NRRD0004", f"type: {types[array.dtype]}", f"dimension: {array.ndim}",
             "space: left-posterior-superior", "sizes: " + " ".join(str(n) for n in array.shape[::-1]),
             "space directions: " + " ".join(directions), f"kinds: {kinds}", "endian: little",
             f"encoding: {encoding}", "space origin: (" + ",".join(f"{o:g}" for o in origin) + ")"]
    for key, value in (fields or {}).items():
        lines.append(f"{key}:={value}")
    data = np.ascontiguousarray(array).tobytes()
    if encoding == "gzip":
        data = gzip.compress(data, 1)
    Path(path).write_bytes(("\n".join(lines) + "\n\n").encode("latin-1") + data)
    return Path(path)


def unit_directions(spacing=(1.0, 1.0, 1.0)) -> list[str]:
    return [f"({spacing[0]:g},0,0)", f"(0,{spacing[1]:g},0)", f"(0,0,{spacing[2]:g})"]


def sheared_directions(spacing=(0.8, 0.8, 2.5), degrees: float = 15.0) -> list[str]:
    """Columns i=(1,0,0), j=(0,1,0), k=(0, sin a, cos a) times the spacing: a gantry-tilted CT grid."""
    s, c = math.sin(math.radians(degrees)), math.cos(math.radians(degrees))
    return [f"({spacing[0]:g},0,0)", f"(0,{spacing[1]:g},0)", f"(0,{spacing[2] * s:.17g},{spacing[2] * c:.17g})"]


def segment_fields(names: Sequence[str], extents: Sequence[str], layers=None, values=None,
                   colors=None) -> dict:
    """Segment<i>_ID/_Name/_Color/_Extent/_Tags (+ _Layer/_LabelValue when given), as Slicer writes them."""
    fields = {}
    for index, (name, extent) in enumerate(zip(names, extents)):
        fields[f"Segment{index}_ID"] = f"Segment_{index + 1}"
        fields[f"Segment{index}_Name"] = name
        fields[f"Segment{index}_Color"] = " ".join(f"{c:g}" for c in (colors or {}).get(name, (0.5, 0.5, 0.5)))
        fields[f"Segment{index}_Extent"] = extent
        fields[f"Segment{index}_Tags"] = "|"
        if layers is not None:
            fields[f"Segment{index}_Layer"] = str(layers[index])
        if values is not None:
            fields[f"Segment{index}_LabelValue"] = str(values[index])
    return fields


def extent_of(mask: np.ndarray) -> str:
    """'i0 i1 j0 j1 k0 k1' of a (z, y, x) mask's voxels ('0 -1 0 -1 0 -1' when empty)."""
    if not mask.any():
        return "0 -1 0 -1 0 -1"
    where = np.argwhere(mask)
    lo, hi = where.min(axis=0)[::-1], where.max(axis=0)[::-1]
    return " ".join(f"{a} {b}" for a, b in zip(lo, hi))


def damage_middle(path: Path, count: int = 64, seed: int = 0) -> None:
    """Overwrite ``count`` bytes in the middle of a file's compressed data with random bytes (the gzip trailer stays
    as it was); for a NRRD the data starts after the header's empty line."""
    data = bytearray(Path(path).read_bytes())
    rng = np.random.default_rng(seed)
    start = data.find(b"\n\n") + 2 if data[:4] == b"NRRD" else 0
    middle = start + (len(data) - start) // 2
    data[middle:middle + count] = rng.integers(0, 256, count, dtype=np.uint8).tobytes()
    Path(path).write_bytes(bytes(data))
