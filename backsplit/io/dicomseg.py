"""DICOM SEG segmentations, read with highdicom and placed on the image grid without resampling.

ITK's generic reader reads a SEG as a stack of its frames with the first frame's position (measured: 3016 wrong
voxels against a 108-voxel tumour, exit 0), so a SEG is never given to it: ``io/readers`` and ``supports/sources``
ask ``is_dicom_seg`` and read it here.

* Read with highdicom (``highdicom.seg.segread`` and ``Segmentation.get_volume``; the library of the NCI Imaging
  Data Commons): segment names are the SEG's SegmentLabel (two segments with one label are refused), colours its
  RecommendedDisplayCIELabValue, geometry its plane positions and orientation. BINARY and LABELMAP SEGs are read as
  they are; a FRACTIONAL one (probabilities) is refused rather than thresholded silently.
* Placed on the image grid with ``highdicom.Volume.match_geometry``: frames are permuted, flipped and pasted, never
  resampled; a SEG that would need resampling, or reaches outside the image, is refused naming the segment. A
  single-plane SEG takes its slice spacing from the image. A SEG drawn on another series than a DICOM image is
  refused. The image may also be a NIfTI/NRRD converted from the series.
* Why highdicom and not dcmqi (which 3D Slicer's QuantitativeReporting uses): dcmqi is 50 MB of executables run as
  a subprocess writing NRRD files to a temporary folder; highdicom reads the same standard in-process (pure Python
  over pydicom) and maintains the SEG geometry code we would otherwise write. It is imported only when a SEG is
  met; where it is missing (inside 3D Slicer) the message says how to install it or how to convert the SEG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from backsplit.errors import InputError
from backsplit.io.geometry import Geometry
from backsplit.io.segnrrd import SegmentationContent

MISSING_ADVICE = ("reading a DICOM SEG needs the package highdicom, which is not installed: install it "
                  "(pip install highdicom; inside 3D Slicer: slicer.util.pip_install('highdicom')), or load the SEG "
                  "with 3D Slicer's DICOM module (QuantitativeReporting) and save it as .seg.nrrd")


def _highdicom(path: Path, case_id: Optional[str]):
    try:
        import highdicom
    except ImportError:
        raise InputError(MISSING_ADVICE, case=case_id, path=str(path)) from None
    return highdicom


def read_dicom_seg(path: Path, case_id: Optional[str] = None) -> tuple[SegmentationContent, list[str], bool]:
    """A DICOM SEG's segments on its own grid: (content with masks (z, y, x) and colours, the SeriesInstanceUIDs it
    references, whether it has a single plane (then its slice spacing is unknown)). Raises InputError for an
    unreadable, FRACTIONAL or non-3D SEG and for two segments with one label."""
    hd = _highdicom(path, case_id)
    path = Path(path)
    try:
        seg = hd.seg.segread(str(path))
    except Exception as exc:  # noqa: BLE001 - pydicom/highdicom raise many kinds for a damaged file
        raise InputError(f"the DICOM SEG cannot be read ({type(exc).__name__}: {exc}); export it again",
                         case=case_id, path=str(path)) from None
    kind = str(getattr(seg.segmentation_type, "value", seg.segmentation_type))
    if kind == "FRACTIONAL":
        raise InputError("the DICOM SEG is FRACTIONAL (a probability or occupancy per voxel), not a binary "
                         "segmentation; export a BINARY or LABELMAP SEG, or threshold it yourself and save it as "
                         ".seg.nrrd", case=case_id, path=str(path))
    numbers = list(seg.segment_numbers)
    names: dict[int, str] = {}
    for number in numbers:
        label = str(seg.get_segment_description(number).segment_label)
        if label in names.values():
            raise InputError("two segments of the DICOM SEG have this label; rename one", case=case_id,
                             segment=label, path=str(path))
        names[number] = label
    try:
        volume = seg.get_volume(combine_segments=False, dtype=np.uint8, allow_missing_positions=True)
    except (ValueError, RuntimeError) as exc:
        raise InputError(f"the DICOM SEG's frames do not form a regular 3D grid ({exc}); BackSplit reads SEGs of 3D "
                         "image series", case=case_id, path=str(path)) from None
    if volume is None:
        raise InputError("the DICOM SEG holds no frame", case=case_id, path=str(path))
    array = np.asarray(volume.array)  # (slices, rows, columns, segments) for combine_segments=False
    if array.ndim == 3:
        array = array[..., None]
    masks = {names[number]: array[..., index] > 0 for index, number in enumerate(numbers)}
    # highdicom's affine maps (slice, row, column) indices to LPS mm; ITK's (x, y, z) = (column, row, slice)
    affine = np.asarray(volume.affine, float)
    axes = affine[:3, :3][:, ::-1]
    spacing = np.linalg.norm(axes, axis=0)
    spacing[spacing == 0] = 1.0
    geometry = Geometry.create(spacing, affine[:3, 3], (axes / spacing).ravel(), array.shape[:3])
    colors = {}
    for number in numbers:
        lab = getattr(seg.get_segment_description(number), "RecommendedDisplayCIELabValue", None)
        if lab is not None:
            try:
                colors[names[number]] = tuple(float(c) for c in hd.color.CIELabColor.from_dicom_value(lab).rgb)
            except Exception:  # noqa: BLE001 - a colour is a nicety; never fail a read for it
                pass
    referenced = [str(item.SeriesInstanceUID) for item in getattr(seg, "ReferencedSeriesSequence", []) or []]
    return SegmentationContent(geometry, masks, colors), referenced, array.shape[0] == 1


def seg_on_image(path: Path, image: Geometry, case_id: Optional[str] = None,
                 image_series_uid: Optional[str] = None) -> SegmentationContent:
    """The SEG's segments as boolean masks (z, y, x) on the grid ``image`` (the series the SEG was drawn on, or a
    NIfTI/NRRD converted from it): frames permuted, flipped and pasted, never resampled. Raises InputError when the
    SEG needs resampling, reaches outside the image (naming the segment and the voxels outside), or, with
    ``image_series_uid`` (a DICOM image), references another series."""
    hd = _highdicom(path, case_id)
    content, referenced, single_plane = read_dicom_seg(path, case_id)
    if image_series_uid and referenced and image_series_uid not in referenced:
        raise InputError(f"the DICOM SEG was drawn on another series (SeriesInstanceUID {referenced[0]}) than the "
                         f"image ({image_series_uid}); pair it with the series it references", case=case_id,
                         path=str(path))
    reference_affine = np.eye(4)
    reference_affine[:3, :3] = (image.direction_matrix @ np.diag(image.spacing))[:, ::-1]
    reference_affine[:3, 3] = image.origin
    reference = hd.VolumeGeometry(reference_affine, tuple(image.shape), coordinate_system="PATIENT")
    spacing = np.asarray(content.geometry.spacing, float)
    if single_plane:
        spacing[2] = image.spacing[2]
    affine = np.eye(4)
    affine[:3, :3] = (content.geometry.direction_matrix @ np.diag(spacing))[:, ::-1]  # (slice, row, column)
    affine[:3, 3] = content.geometry.origin
    masks: dict[str, np.ndarray] = {}
    for name, mask in content.masks.items():
        volume = hd.Volume(mask.astype(np.uint8), affine, coordinate_system="PATIENT")
        try:
            matched = volume.match_geometry(reference)
        except (RuntimeError, ValueError):
            raise InputError("the DICOM SEG does not lie on the image grid (it would need resampling: other "
                             "spacing, orientation or an origin between voxels); pair the SEG with the series it "
                             "was drawn on", case=case_id, segment=name, path=str(path)) from None
        out = np.asarray(matched.array) > 0
        if int(out.sum()) != int(mask.sum()):
            raise InputError(f"part of the segment ({int(mask.sum()) - int(out.sum())} voxel(s)) lies outside the "
                             "image; check that the right image is paired with this SEG", case=case_id,
                             segment=name, path=str(path))
        masks[name] = out
    return SegmentationContent(image, masks, content.colors)


def seg_segment_names(path: Path) -> Optional[list[str]]:
    """The SegmentLabel of each segment of a DICOM SEG, from its header (pydicom; no frames read), or None when the
    header cannot be read (reading the case then says why)."""
    try:
        import pydicom

        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        return [str(item.SegmentLabel) for item in ds.SegmentSequence]
    except Exception:  # noqa: BLE001 - a header read for an early check only; the full read reports the cause
        return None
