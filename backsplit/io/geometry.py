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
ORIGIN_TOLERANCE = 1e-2       # in voxels (fraction of the spacing)
# Directions (and the orthogonality of one grid's axes) are compared by the displacement they cause: the largest
# distance in mm by which any corner of the image moves when one direction matrix is replaced by the other, over
# the image's extent. Accepted up to half the smallest voxel spacing: below that, nearest-neighbour resampling onto
# the other grid returns the very same voxels, so the arrays are used as they are.
DIRECTION_TOLERANCE_VOXELS = 0.5


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
            problems.append(f"spacing differs ({format_values(self.spacing)} vs {format_values(other.spacing)} mm)")
        moved = self.displacement_mm(other.direction_matrix)
        if moved > self.direction_tolerance_mm():
            problems.append(f"direction differs ({format_values(self.direction)} vs {format_values(other.direction)}: "
                            f"{angle_between_degrees(self.direction_matrix, other.direction_matrix):.3g} degrees, "
                            f"moving the image's far corner by {moved:.3g} mm, more than the "
                            f"{self.direction_tolerance_mm():.3g} mm allowed)")
        offset_vox = self.origin_offset_in_voxels(other)
        if np.any(np.abs(offset_vox) > ORIGIN_TOLERANCE):
            problems.append(f"origin differs ({format_values(self.origin)} vs {format_values(other.origin)} mm)")
        if compare_shape and tuple(self.shape) != tuple(other.shape):
            problems.append(f"size differs ({format_values(self.shape[::-1])} vs {format_values(other.shape[::-1])} "
                            "voxels, x y z)")
        return problems

    def direction_tolerance_mm(self) -> float:
        """Largest accepted displacement (mm) over the image extent: half the smallest voxel spacing."""
        return DIRECTION_TOLERANCE_VOXELS * float(min(self.spacing))

    def displacement_mm(self, direction: np.ndarray) -> float:
        """Largest distance (mm) that any corner of this image moves, relative to its origin, when its direction
        matrix (3x3, columns = i, j, k axes) is replaced by ``direction``."""
        extent = (np.asarray(self.shape[::-1], float) - 1) * np.asarray(self.spacing)
        corners = np.array([[x, y, z] for x in (0, extent[0]) for y in (0, extent[1]) for z in (0, extent[2])])
        delta = (self.direction_matrix - np.asarray(direction, float).reshape(3, 3)) @ corners.T
        return float(np.linalg.norm(delta, axis=0).max())

    def nearest_orthonormal(self) -> np.ndarray:
        """The orthonormal direction matrix closest to this one (polar decomposition, Frobenius norm)."""
        u, _, vt = np.linalg.svd(self.direction_matrix)
        return u @ vt

    def shear(self) -> "Shear":
        """How far the grid's axes are from perpendicular (gantry-tilted CT gives a sheared grid)."""
        matrix = self.direction_matrix
        worst, pair = 0.0, ("i", "j")
        names = ("i", "j", "k")
        for a in range(3):
            for b in range(a + 1, 3):
                cos = np.dot(matrix[:, a], matrix[:, b]) / np.linalg.norm(matrix[:, a]) / np.linalg.norm(matrix[:, b])
                deviation = abs(90.0 - np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
                if deviation > worst:
                    worst, pair = deviation, (names[a], names[b])
        moved = self.displacement_mm(self.nearest_orthonormal())
        return Shear(worst, pair, moved, moved > self.direction_tolerance_mm())

    def orthonormalised(self) -> "Geometry":
        """The same grid with the nearest orthonormal direction (for directions off by rounding only)."""
        return Geometry.create(self.spacing, self.origin, self.nearest_orthonormal().ravel(), self.shape)

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


@dataclass(frozen=True)
class Shear:
    """Non-orthogonality of a grid: the largest deviation from 90 degrees between two axes, which axes, and how far
    (mm) the far corner lies from where an orthogonal grid would put it."""
    degrees: float
    axes: tuple[str, str]
    displacement_mm: float
    significant: bool        # beyond the direction tolerance (half the smallest voxel spacing)

    def describe(self) -> str:
        return (f"its axes are not perpendicular: the {self.axes[0]} and {self.axes[1]} axes meet at "
                f"{90 - self.degrees:.2f} degrees instead of 90 (a tilt of {self.degrees:.2f} degrees, as from a "
                f"tilted CT gantry), which moves the far corner {self.displacement_mm:.1f} mm from where an "
                "orthogonal grid puts it")


SHEAR_ADVICE = ("BackSplit and nnU-Net store images as NIfTI, which cannot hold a sheared grid: writing it would "
                "silently straighten it and move the image and its labels. Resample it onto an orthogonal grid "
                "first: in 3D Slicer with Crop Volume (tick 'Interpolated cropping', isotropic spacing) or "
                "Resample Scalar Volume, applied to the image and with the segmentation exported on the resampled "
                "image; or harden Slicer's acquisition-geometry regularisation transform when loading the DICOM "
                "series")


def angle_between_degrees(a: np.ndarray, b: np.ndarray) -> float:
    """Rotation angle (degrees) that takes direction matrix ``a`` to ``b`` (both 3x3, orthonormal)."""
    r = np.asarray(a, float).reshape(3, 3).T @ np.asarray(b, float).reshape(3, 3)
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1.0, 1.0))))


def format_values(values: Sequence[float]) -> str:
    """Numbers for a message, space separated in the shortest form (``%g``): (0.8, 0.8, 2.5) -> '0.8 0.8 2.5'."""
    return " ".join(f"{v:g}" for v in values)
