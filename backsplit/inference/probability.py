"""Lesion probability maps stored compactly: uint8 NIfTI, stored value = round(255 * P), with the NIfTI scaling
``scl_slope = 1/255``, ``scl_inter = 0`` in the header, so every NIfTI reader (ITK/SimpleITK/3D Slicer, nibabel)
gives back P as floating point directly. Precision: |P_read - P| <= 0.5/255 (~0.002). The header's ``descrip``
says ``BackSplit P(lesion) uint8: P = value/255``.

Why uint8 and not float16: NIfTI-1 has no float16 data type that ITK (and so Slicer) reads, and the scaled uint8
compresses several times better than a float (smooth maps have few distinct byte values). Measured sizes are in
the README (``benchmarks/bench_estimate.py``).
"""

from __future__ import annotations

import gzip
import os
import struct
import tempfile
from pathlib import Path

import numpy as np

SCALE = 255
PRECISION = 0.5 / SCALE            # largest difference between the stored and the computed probability
DESCRIPTION = b"BackSplit P(lesion) uint8: P = value/255"
_SCL_OFFSET, _DESCRIP_OFFSET, _DESCRIP_LENGTH = 112, 148, 80   # NIfTI-1 header fields (nifti1.h)


def encode(probability: np.ndarray) -> np.ndarray:
    """P in [0, 1] (any float array) -> uint8 round(255 P); values outside [0, 1] are clipped."""
    return np.rint(np.clip(np.asarray(probability, np.float32), 0.0, 1.0) * SCALE).astype(np.uint8)


def decode(stored: np.ndarray) -> np.ndarray:
    """uint8 stored values -> float32 P (what a NIfTI reader does with the header's scaling)."""
    return stored.astype(np.float32) / SCALE


def write_probability_map(probability: np.ndarray, geometry, path: Path, compress_level: int = 6) -> Path:
    """Write P (z, y, x) on ``geometry`` as a scaled uint8 ``.nii.gz`` (written aside, then moved into place)."""
    import SimpleITK as sitk

    path = Path(path)
    handle, plain = tempfile.mkstemp(suffix=".nii", dir=path.parent, prefix=f".{path.stem}.")
    os.close(handle)
    try:
        sitk.WriteImage(geometry.to_sitk(encode(probability)), plain, False)
        header = bytearray(Path(plain).read_bytes())
        if struct.unpack_from("<i", header, 0)[0] != 348:
            raise RuntimeError("SimpleITK did not write a little-endian NIfTI-1 header")
        struct.pack_into("<ff", header, _SCL_OFFSET, 1.0 / SCALE, 0.0)
        header[_DESCRIP_OFFSET:_DESCRIP_OFFSET + _DESCRIP_LENGTH] = DESCRIPTION.ljust(_DESCRIP_LENGTH, b"\0")
        partial = path.with_name(f".{path.name}.partial")
        with gzip.open(partial, "wb", compresslevel=compress_level) as out:
            out.write(bytes(header))
        os.replace(partial, path)
    finally:
        Path(plain).unlink(missing_ok=True)
    return path


def read_probability_map(path: Path) -> np.ndarray:
    """P as float32 (z, y, x); works for these uint8 maps and for older float32 maps alike."""
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.float32)
