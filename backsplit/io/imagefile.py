"""Read one image file with SimpleITK, faithfully or not at all.

Every reader in BackSplit (export, prediction, evaluation, organ-model runs) goes through ``read_sitk`` /
``read_image``, so the same checks hold everywhere:

* compressed data is verified end to end (``compressed.verified_readable``: CRC-32 and length of gzip, Adler-32
  of zlib), because ITK reads damaged files without complaint. A ``.nii.gz`` or gzip NRRD is decompressed once, in
  the streamed pass that checks it, into a temporary uncompressed copy that ITK then reads: one decompression, not
  two, and never the whole compressed or decompressed data in memory twice;
* ITK's raw warnings are caught and said in plain words (``itkmessages``);
* NaN and +-inf in a NIfTI are counted in the raw data (``niftiraw``: ITK 5.4 reads them as 0) and refused;
* a sheared grid (axes not perpendicular, e.g. gantry-tilted CT) is refused with the tilt and how to fix it:
  NIfTI, which the datasets are written in, cannot hold one and ITK would straighten it silently. A NIfTI whose
  sform is sheared is refused too (ITK would silently fall back to the orthogonal qform, or fail with "orthonormal
  direction cosines"). Directions off from orthonormal by rounding only (less than half the smallest voxel over the
  image extent) are snapped to the nearest orthonormal matrix;
* a DICOM image series (a folder, or one file of the series) is read as one 3D image by ``dicom``, or refused with
  the reason (several series, a single slice, a missing slice, gantry tilt, a DICOM SEG given as an image);
* a singleton 4th axis (X x Y x Z x 1, as some converters write .nrrd/.mha) is read as the 3D image it is, in every
  format alike.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Optional

import numpy as np

from backsplit.errors import InputError
from backsplit.io.compressed import verified_readable
from backsplit.io.dicom import check_dicom_series, is_dicom, read_dicom_series
from backsplit.io.geometry import SHEAR_ADVICE, Geometry
from backsplit.io.itkmessages import capture_itk_messages, warn_translated
from backsplit.io.niftiraw import nonfinite_voxels


def read_sitk(path: Path, what: str, case_id: Optional[str]):
    """Read ``path`` with SimpleITK after the integrity and NIfTI orientation checks. Raises InputError naming the
    file when it is missing, damaged, truncated, not an image, or sheared."""
    import SimpleITK as sitk

    path = Path(path)
    if is_dicom(path):  # a series folder or one file of it: never ITK's generic reader (one slice, or SEG frames)
        with capture_itk_messages() as captured:
            image = read_dicom_series(path, what, case_id)
        warn_translated(captured, str(path), what, case_id)
        return image
    check_exists(path, what, case_id)
    check_nifti_orientation(path, what, case_id)
    with verified_readable(path, what, case_id) as readable, capture_itk_messages() as captured:
        try:
            image = sitk.ReadImage(str(readable))
        except RuntimeError as exc:  # ITK's text names the file it read: the temporary copy, so put back ours
            image, error = None, str(exc).replace(str(readable), str(path))
        nonfinite = nonfinite_voxels(readable) if image is not None else 0  # ITK reads NaN/inf in NIfTI as 0
    if nonfinite:
        raise InputError(f"the {what} holds {nonfinite} NaN or infinite voxel(s) (ITK would read them as 0); "
                         "replace them (e.g. with the minimum intensity) and try again", case=case_id, path=str(path))
    if image is None:
        text = error.strip()
        last = text.splitlines()[-1] if text else "unknown reason"
        if "orthonormal direction cosines" in text:  # a non-orthonormal NIfTI is not a truncated file
            raise InputError(f"the {what} file's orientation is not orthonormal: neither its NIfTI qform nor its "
                             "sform describes a grid with perpendicular axes (sheared or damaged header), so ITK "
                             f"cannot place it (ITK: \"{last.strip()}\"). {SHEAR_ADVICE}", case=case_id,
                             path=str(path)) from None
        raise InputError(f"the {what} file cannot be read (truncated or not an image: {last}); re-export or "
                         "replace it", case=case_id, path=str(path)) from None
    warn_translated(captured, str(path), what, case_id)
    return image


def check_exists(path: Path, what: str, case_id: Optional[str]) -> None:
    """Refuse a missing file, or a folder that holds no DICOM series (the only folder BackSplit reads as an image)."""
    if path.is_dir():
        raise InputError(f"the {what} is a folder without DICOM files; give an image file (.nii.gz, .nrrd, .mha) "
                         "or the folder of one DICOM series", case=case_id, path=str(path))
    if not path.is_file():
        raise InputError(f"the {what} file does not exist; check the path", case=case_id, path=str(path))


def squeeze_singleton_4d(image):
    """An X x Y x Z x 1 image as the 3D image it is (array (z, y, x) and geometry); other images unchanged
    (returns None for them)."""
    import SimpleITK as sitk

    if image.GetDimension() != 4 or image.GetSize()[3] != 1:
        return None
    array = sitk.GetArrayFromImage(image)[0]
    direction = np.asarray(image.GetDirection(), float).reshape(4, 4)[:3, :3]
    return array, Geometry.create(image.GetSpacing()[:3], image.GetOrigin()[:3], direction.ravel(), array.shape)


def checked_geometry(geometry: Geometry, what: str, case_id: Optional[str], path: Optional[str]) -> Geometry:
    """Refuse a sheared grid (with the tilt and what to do); snap rounding-level non-orthogonality."""
    shear = geometry.shear()
    if shear.significant:
        raise InputError(f"the {what} lies on a sheared grid: {shear.describe()}. {SHEAR_ADVICE}",
                         case=case_id, path=path)
    if np.abs(geometry.direction_matrix - geometry.nearest_orthonormal()).max() > 1e-6:
        return geometry.orthonormalised()
    return geometry


def read_image(path: Path, case_id: str, what: str = "image") -> tuple[np.ndarray, Geometry]:
    """Read a 3D scalar image as a (z, y, x) array and its geometry (spacing, origin in mm; LPS direction)."""
    import SimpleITK as sitk

    image = read_sitk(path, what, case_id)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"the {what} has {image.GetNumberOfComponentsPerPixel()} components per voxel; "
                         "BackSplit needs one scalar image per channel (split colour or vector images)",
                         case=case_id, path=str(path))
    squeezed = squeeze_singleton_4d(image)
    if squeezed is not None:
        array, geometry = squeezed
    elif image.GetDimension() != 3:
        size = " x ".join(str(n) for n in image.GetSize())
        raise InputError(f"the {what} is {image.GetDimension()}D ({size} voxels); BackSplit needs 3D images "
                         "(split 4D series into one file per channel, stack 2D slices into a volume)",
                         case=case_id, path=str(path))
    else:
        array, geometry = sitk.GetArrayFromImage(image), Geometry.from_sitk(image)
    return array, checked_geometry(geometry, what, case_id, str(path))


def check_image_file(path: Path, case_id: Optional[str], what: str = "image") -> None:
    """What ``read_image`` refuses that the header tells, before the voxels are read: a missing or unreadable file,
    a sheared grid, more than 3 axes; for a DICOM series: several series, a single slice, a non-image object. For
    refusing bad inputs before a long step (loading a model) starts; the integrity of the compressed data is checked
    when the voxels are read (one decompression, not two)."""
    path = Path(path)
    if is_dicom(path):
        check_dicom_series(path, what, case_id)
        return
    header_geometry(path, case_id, what)


def header_geometry(path: Path, case_id: Optional[str], what: str = "image") -> Geometry:
    """The grid of an image (spacing, origin in mm; LPS direction; shape (z, y, x)) from its header, with the
    checks of ``check_image_file``. A DICOM series has no single header: it is read (``read_image``'s checks)."""
    import SimpleITK as sitk

    path = Path(path)
    if is_dicom(path):
        return read_image(path, case_id, what)[1]
    check_exists(path, what, case_id)
    check_nifti_orientation(path, what, case_id)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    with capture_itk_messages() as captured:
        try:
            reader.ReadImageInformation()
        except RuntimeError as exc:
            error = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reason"
        else:
            error = None
    if error is not None:
        raise InputError(f"the {what} file cannot be read (not an image: {error}); re-export or replace it",
                         case=case_id, path=str(path))
    warn_translated(captured, str(path), what, case_id)
    size = reader.GetSize()
    if len(size) == 4 and size[3] == 1:
        size = size[:3]
    elif len(size) != 3:
        raise InputError(f"the {what} is {len(size)}D ({' x '.join(str(n) for n in size)} voxels); BackSplit needs "
                         "3D images", case=case_id, path=str(path))
    direction = np.asarray(reader.GetDirection(), float).reshape(len(reader.GetSize()), -1)[:3, :3]
    geometry = Geometry.create(reader.GetSpacing()[:3], reader.GetOrigin()[:3], direction.ravel(), size[::-1])
    return checked_geometry(geometry, what, case_id, str(path))


# ---- NIfTI sform/qform -------------------------------------------------------------------------------------------

def nifti_sform(path: Path) -> Optional[tuple[np.ndarray, tuple[int, int, int], int]]:
    """(4x4 sform in RAS, size (x, y, z), qform_code) of a NIfTI-1/-2 file whose sform_code > 0, else None.
    Reads the 540-byte header only (decompressing just that much of a .nii.gz). Offsets from the NIfTI-1 and
    NIfTI-2 header definitions (nifti1.h, nifti2.h)."""
    lower = Path(path).name.lower()
    if not lower.endswith((".nii", ".nii.gz")):
        return None
    try:
        opener = gzip.open if lower.endswith(".gz") else open
        with opener(path, "rb") as handle:
            header = handle.read(540)
    except (OSError, EOFError, zlib.error):  # damaged: the integrity check says so, naming the file
        return None
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            qform, sform = struct.unpack(endian + "2h", header[252:256])
            rows = struct.unpack(endian + "12f", header[280:328])
            break
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            dims = struct.unpack(endian + "8q", header[16:80])
            qform, sform = struct.unpack(endian + "2i", header[344:352])
            rows = struct.unpack(endian + "12d", header[400:496])
            break
    else:
        return None
    if sform <= 0:
        return None
    matrix = np.eye(4)
    matrix[:3, :] = np.asarray(rows, float).reshape(3, 4)
    size = tuple(max(1, int(d)) for d in dims[1:4])
    return matrix, size, int(qform)


def check_nifti_orientation(path: Path, what: str, case_id: Optional[str]) -> None:
    """Refuse a NIfTI whose sform describes a sheared grid: ITK would silently use the qform instead (placing the
    image elsewhere) or fail. Says by how much and what to do."""
    found = nifti_sform(path)
    if found is None:
        return
    matrix, size, qform_code = found
    axes = matrix[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    if np.any(spacing <= 0) or not np.all(np.isfinite(axes)):
        return  # ITK reports an unusable sform itself
    geometry = Geometry.create(spacing, matrix[:3, 3], (axes / spacing).ravel(), size[::-1])
    shear = geometry.shear()
    if shear.significant:
        fallback = ("ITK (and 3D Slicer) would silently use the header's other, orthogonal orientation (qform) "
                    "instead" if qform_code > 0 else "ITK cannot read it ('only supports orthonormal direction "
                    "cosines')")
        raise InputError(f"the {what}'s NIfTI header (sform) describes a sheared grid: {shear.describe()}; "
                         f"{fallback}. {SHEAR_ADVICE}", case=case_id, path=str(path))
