"""Image grid geometry in the convention of SimpleITK and nnU-Net files.

Arrays are indexed (k, j, i) = (z, y, x), as ``SimpleITK.GetArrayFromImage`` and ``slicer.util.arrayFromVolume``
return them. ``spacing`` and ``origin`` are (x, y, z); ``direction`` is the row-major 3x3 matrix whose columns are
the i, j, k axes in **LPS** physical space (what SimpleITK and NIfTI/NRRD readers report).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

# Default tolerances when comparing two grids.
SPACING_TOLERANCE = 1e-3      # relative
DIRECTION_TOLERANCE = 1e-4    # absolute, per matrix entry
ORIGIN_TOLERANCE = 1e-2       # in voxels (fraction of the spacing)


@dataclass(frozen=True)
class Geometry:
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]  # 9 values, row-major, LPS
    shape: tuple[int, int, int]   # array shape (z, y, x)

    @staticmethod
    def create(spacing: Sequence[float], origin: Sequence[float], direction: Sequence[float] | None,
               shape: Sequence[int]) -> "Geometry":
        if direction is None:
            direction = np.eye(3).ravel()
        return Geometry(tuple(float(s) for s in spacing), tuple(float(o) for o in origin),
                        tuple(float(d) for d in np.asarray(direction, dtype=float).ravel()),
                        tuple(int(n) for n in shape))

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    def ijk_to_lps(self) -> np.ndarray:
        """4x4 matrix mapping (i, j, k, 1) to LPS millimetres."""
        m = np.eye(4)
        m[:3, :3] = self.direction_matrix @ np.diag(self.spacing)
        m[:3, 3] = self.origin
        return m

    def ijk_to_ras(self) -> np.ndarray:
        """4x4 matrix mapping (i, j, k, 1) to RAS millimetres (Slicer's convention)."""
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ self.ijk_to_lps()

    @staticmethod
    def from_ijk_to_ras(matrix: np.ndarray, shape: Sequence[int]) -> "Geometry":
        """Inverse of ``ijk_to_ras``: build a geometry from Slicer's IJKToRAS matrix and an array shape (z, y, x)."""
        lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ np.asarray(matrix, dtype=float)
        axes = lps[:3, :3]
        spacing = np.linalg.norm(axes, axis=0)
        direction = axes / spacing
        return Geometry.create(spacing, lps[:3, 3], direction.ravel(), shape)

    def voxel_volume_ml(self) -> float:
        return float(np.prod(self.spacing)) / 1000.0

    def differences(self, other: "Geometry", *, compare_shape: bool = True) -> list[str]:
        """Human-readable list of what differs beyond tolerance (empty when the grids match)."""
        problems = []
        a, b = np.asarray(self.spacing), np.asarray(other.spacing)
        if np.any(np.abs(a - b) > SPACING_TOLERANCE * np.maximum(np.abs(a), np.abs(b))):
            problems.append(f"spacing differs ({_fmt(self.spacing)} vs {_fmt(other.spacing)} mm)")
        if np.any(np.abs(self.direction_matrix - other.direction_matrix) > DIRECTION_TOLERANCE):
            problems.append(f"direction differs ({_fmt(self.direction)} vs {_fmt(other.direction)})")
        offset_vox = self.origin_offset_in_voxels(other)
        if np.any(np.abs(offset_vox) > ORIGIN_TOLERANCE):
            problems.append(f"origin differs ({_fmt(self.origin)} vs {_fmt(other.origin)} mm)")
        if compare_shape and tuple(self.shape) != tuple(other.shape):
            problems.append(f"size differs ({_fmt(self.shape[::-1])} vs {_fmt(other.shape[::-1])} voxels, x y z)")
        return problems

    def origin_offset_in_voxels(self, other: "Geometry") -> np.ndarray:
        """Position of ``other``'s origin in this grid's (i, j, k) voxel coordinates."""
        delta = np.asarray(other.origin) - np.asarray(self.origin)
        return np.linalg.solve(self.direction_matrix @ np.diag(self.spacing), delta)

    # SimpleITK conversion (imported lazily so that the module stays light)
    @staticmethod
    def from_sitk(image) -> "Geometry":
        size = image.GetSize()
        if len(size) != 3:
            raise ValueError(f"expected a 3D image, got {len(size)}D")
        return Geometry.create(image.GetSpacing(), image.GetOrigin(), image.GetDirection(), size[::-1])

    def apply_to_sitk(self, image) -> None:
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)

    def to_sitk(self, array: np.ndarray):
        import SimpleITK as sitk

        if tuple(array.shape) != tuple(self.shape):
            raise ValueError(f"array shape {array.shape} does not match geometry shape {self.shape}")
        image = sitk.GetImageFromArray(np.ascontiguousarray(array))
        self.apply_to_sitk(image)
        return image


def _fmt(values: Sequence[float]) -> str:
    return " ".join(f"{v:g}" for v in values)
