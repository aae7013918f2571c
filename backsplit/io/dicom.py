"""DICOM image series (a folder, or any one file of the series): recognised, read as one 3D image, or refused.

ITK's generic reader "reads" DICOM without understanding it: one file of a series comes back as a one-slice volume,
a series folder is "a missing file", and a DICOM SEG comes back as a stack of its frames on the wrong grid. Every
reader in BackSplit (``io/imagefile.read_sitk`` / ``check_image_file``, hence export, dataset add, predict, supports,
evaluate, calibrate) asks ``is_dicom`` first and reads DICOM here:

* an image series is read with SimpleITK's ``ImageSeriesReader`` (GDCM, which also decodes JPEG, JPEG 2000 and
  JPEG-LS pixel data) from the files GDCM assigns to one SeriesInstanceUID (``GetGDCMSeriesFileNames``), sorted
  along the slice normal; the rescale slope/intercept is applied;
* refused, each with what to do: a folder with several series (listed), a single slice, slices with uneven gaps (a
  missing slice, mixed acquisitions), a gantry tilt (ITK would straighten it with only a warning), a DICOM SEG,
  RT Structure Set or other non-image object given as an image.

DICOM SEG segmentations are read by ``io/dicomseg.py`` (highdicom). Headers are read with pydicom (installed with
highdicom; 3D Slicer ships it too), imported only when a DICOM file is met.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from backsplit.errors import InputError

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"        # DICOM PS3.4 B.5: Segmentation Storage
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"  # RT Structure Set Storage
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
OTHER_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".raw", ".zraw", ".json", ".csv")
SPACING_RELATIVE_TOLERANCE = 0.01   # slice gaps may differ by 1 % (rounding in ImagePositionPatient)
TILT_TOLERANCE_DEGREES = 0.5        # angle between the slice stack and the slice normal
CONVERT_ADVICE = "or convert the series to .nii.gz/.nrrd first (dcm2niix, or 3D Slicer's DICOM module)"


def is_dicom_file(path: Path) -> bool:
    """True for a file with the DICOM Part 10 preamble ('DICM' at byte 128) or a .dcm/.dicom/.ima name; False for
    the image formats BackSplit reads otherwise (a NIfTI's bytes 128-131 are a float, never tested)."""
    path = Path(path)
    lower = path.name.lower()
    if lower.endswith(OTHER_IMAGE_SUFFIXES) or not path.is_file():
        return False
    if lower.endswith(DICOM_SUFFIXES):
        return True
    try:
        with open(path, "rb") as handle:
            head = handle.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def dicom_files_in(folder: Path, limit: int = 1_000_000) -> list[Path]:
    """The DICOM files directly in ``folder`` (not recursive), sorted by name; at most ``limit``."""
    found = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return []
    for entry in entries:
        if entry.is_file() and is_dicom_file(Path(entry.path)):
            found.append(Path(entry.path))
            if len(found) >= limit:
                break
    return found


def is_dicom(path: Path) -> bool:
    """A DICOM file, or a folder that directly holds DICOM files."""
    path = Path(path)
    if path.is_dir():
        return bool(dicom_files_in(path, limit=1))
    return is_dicom_file(path)


def dicom_header(path: Path) -> dict[str, str]:
    """Selected header fields of one DICOM file (no pixel data read): sop_class, modality, series (UID),
    description, frames (NumberOfFrames, '1' when absent). Raises InputError when the file is not readable DICOM."""
    try:
        import pydicom
    except ImportError:  # pragma: no cover - pydicom comes with highdicom, and with 3D Slicer
        raise InputError("reading DICOM needs the package pydicom, which is not installed; install it with "
                         f"'pip install highdicom' (it brings pydicom), {CONVERT_ADVICE}", path=str(path)) from None
    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=[
            "SOPClassUID", "Modality", "SeriesInstanceUID", "SeriesDescription", "NumberOfFrames"])
    except Exception as exc:  # noqa: BLE001 - pydicom raises many kinds for a damaged file
        raise InputError(f"the DICOM file cannot be read ({type(exc).__name__}: {exc}); copy it again from its "
                         "source", path=str(path)) from None
    return {"sop_class": str(getattr(ds, "SOPClassUID", "")), "modality": str(getattr(ds, "Modality", "")),
            "series": str(getattr(ds, "SeriesInstanceUID", "")),
            "description": str(getattr(ds, "SeriesDescription", "")),
            "frames": str(getattr(ds, "NumberOfFrames", "1") or "1")}


def is_dicom_seg(path: Path) -> bool:
    """A DICOM SEG file (Segmentation Storage SOP class)."""
    return Path(path).is_file() and is_dicom_file(path) and dicom_header(path)["sop_class"] == SEG_SOP_CLASS


def refuse_non_image(path: Path, header: dict, what: str, case_id: Optional[str]) -> None:
    """Refuse a DICOM SEG, RT Structure Set or other non-image object given where an image is read."""
    if header["sop_class"] == SEG_SOP_CLASS:
        raise InputError(f"this is a DICOM SEG (a segmentation), given as the {what}; give it as the case's "
                         "segmentation (segment names come from the SEG: no name map needed) and the image series "
                         "it was drawn on as the image", case=case_id, path=str(path))
    if header["sop_class"] == RTSTRUCT_SOP_CLASS or header["modality"] in ("RTSTRUCT", "SR", "PR", "KO", "REG"):
        if header["modality"] == "RTSTRUCT" or header["sop_class"] == RTSTRUCT_SOP_CLASS:
            raise InputError(f"the {what} is an RT Structure Set (contours), which BackSplit does not read; convert "
                             "the contours to a segmentation in 3D Slicer (SlicerRT: load the RTSTRUCT, export the "
                             "segments as .seg.nrrd) or with a converter such as rt-utils", case=case_id,
                             path=str(path))
        raise InputError(f"the {what} is a DICOM {header['modality']} object, not an image; give the image series",
                         case=case_id, path=str(path))


@dataclass
class SeriesChoice:
    """The files of one series (sorted by GDCM along the slice normal) and its SeriesInstanceUID."""
    folder: Path
    uid: str
    files: list[Path]


def choose_series(path: Path, what: str = "image", case_id: Optional[str] = None) -> SeriesChoice:
    """The series meant by ``path``: a folder with exactly one image series, or one file (then its whole series
    from the same folder). Raises InputError listing the series when the choice is ambiguous, or for a non-image
    object."""
    import SimpleITK as sitk

    path = Path(path)
    folder = path if path.is_dir() else path.parent
    if path.is_file():
        header = dicom_header(path)
        refuse_non_image(path, header, what, case_id)
        uid = header["series"]
    else:
        uids = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
        if not uids:
            first = dicom_files_in(folder, limit=1)
            if first:  # e.g. a folder holding only a SEG or an RTSTRUCT
                refuse_non_image(first[0], dicom_header(first[0]), what, case_id)
            raise InputError(f"the {what} folder holds no DICOM image series; give the folder of one series (or one "
                             f"of its files), {CONVERT_ADVICE}", case=case_id, path=str(folder))
        if len(uids) > 1:
            listed = []
            for uid in uids[:8]:
                files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
                info = dicom_header(Path(files[0]))
                listed.append(f"'{info['description'] or 'no description'}' ({info['modality']}, {len(files)} "
                              f"file(s), e.g. {Path(files[0]).name})")
            raise InputError(f"the {what} folder holds {len(uids)} DICOM series: {'; '.join(listed)}"
                             f"{' ...' if len(uids) > 8 else ''}; give one file of the series you mean (its whole "
                             "series is read) or put each series in its own folder", case=case_id, path=str(folder))
        uid = uids[0]
        first = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
        if first:
            refuse_non_image(Path(first[0]), dicom_header(Path(first[0])), what, case_id)
    files = [Path(f) for f in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)] if uid else []
    if not files:  # GDCM did not group it (no SeriesInstanceUID, or no image position)
        raise InputError(f"the {what} is a DICOM file that GDCM cannot place in an image series; give the folder of "
                         f"the series, {CONVERT_ADVICE}", case=case_id, path=str(path))
    return SeriesChoice(folder, uid, files)


def check_dicom_series(path: Path, what: str = "image", case_id: Optional[str] = None) -> SeriesChoice:
    """What ``read_dicom_series`` refuses that the headers tell (ambiguous folder, non-image object, a single
    slice), before the voxels are read. Returns the chosen series."""
    choice = choose_series(path, what, case_id)
    if len(choice.files) == 1 and int(dicom_header(choice.files[0])["frames"] or 1) <= 1:
        raise InputError(f"the {what} is a single DICOM slice (its series has no other file in '{choice.folder}'); "
                         "give the folder holding the whole series, or one of its files with the others beside it",
                         case=case_id, path=str(path))
    return choice


def read_dicom_series(path: Path, what: str = "image", case_id: Optional[str] = None):
    """Read a DICOM image series as a 3D SimpleITK image (LPS geometry; rescale slope/intercept applied by GDCM).

    ``path``: a folder holding one series, or any file of the series. Raises InputError for what
    ``check_dicom_series`` refuses, and for slices with uneven spacing (a missing slice) or a gantry tilt (slices
    not stacked along their normal)."""
    import SimpleITK as sitk

    choice = check_dicom_series(path, what, case_id)
    if len(choice.files) == 1:
        image = sitk.ReadImage(str(choice.files[0]))  # an enhanced multi-frame file: GDCM reads the volume
    else:
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames([str(f) for f in choice.files])
        reader.MetaDataDictionaryArrayUpdateOn()
        try:
            image = reader.Execute()
        except RuntimeError as exc:
            last = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown reason"
            raise InputError(f"the {what} DICOM series cannot be read ({last}); {CONVERT_ADVICE}", case=case_id,
                             path=str(path)) from None
        _check_slice_positions(reader, image, what, case_id, path)
    if image.GetDimension() == 2:
        raise InputError(f"the {what} is a single DICOM slice; BackSplit needs a 3D series", case=case_id,
                         path=str(path))
    return image


def _positions(reader, count: int) -> np.ndarray:
    """ImagePositionPatient (0020,0032) of each slice, (count, 3) mm; NaN where a slice has none."""
    positions = []
    for index in range(count):
        text = reader.GetMetaData(index, "0020|0032") if reader.HasMetaDataKey(index, "0020|0032") else ""
        try:
            positions.append([float(v) for v in text.replace(" ", "").split("\\")[:3]] if text else [np.nan] * 3)
        except ValueError:
            positions.append([np.nan] * 3)
    return np.asarray(positions, float)


def _check_slice_positions(reader, image, what: str, case_id: Optional[str], path: Path) -> None:
    """Uneven slice gaps and tilted stacks: ITK reads both with a warning only and puts voxels in the wrong place."""
    count = image.GetDepth()
    positions = _positions(reader, count)
    if not np.all(np.isfinite(positions)):
        raise InputError(f"some slices of the {what} have no ImagePositionPatient; the series cannot be placed in "
                         f"space; {CONVERT_ADVICE}", case=case_id, path=str(path))
    gaps = np.linalg.norm(np.diff(positions, axis=0), axis=1)
    if gaps.size and gaps.min() <= 0:
        raise InputError(f"the {what} series has two slices at the same position (duplicate slices or several "
                         "phases in one series); give one phase per folder", case=case_id, path=str(path))
    if gaps.size and (gaps.max() - gaps.min()) > SPACING_RELATIVE_TOLERANCE * gaps.mean():
        where = int(np.argmax(np.abs(gaps - np.median(gaps))))
        raise InputError(f"the {what} series has uneven slice spacing ({gaps.min():.3g} to {gaps.max():.3g} mm, "
                         f"largest change after slice {where + 1} of {count}): a slice is missing or the series "
                         "mixes acquisitions; complete the series or resample it (3D Slicer: load, resample, save "
                         "as .nrrd)", case=case_id, path=str(path))
    normal = np.asarray(image.GetDirection(), float).reshape(3, 3)[:, 2]
    stack = positions[-1] - positions[0]
    if np.linalg.norm(stack) > 0:
        cosine = abs(float(np.dot(stack / np.linalg.norm(stack), normal)))
        angle = float(np.degrees(np.arccos(min(1.0, cosine))))
        if angle > TILT_TOLERANCE_DEGREES:
            raise InputError(f"the {what} series is tilted: its slices are stacked {angle:.1f} degrees off their "
                             "normal (gantry tilt); ITK would straighten it and misplace the voxels. Resample it to "
                             "an orthogonal grid first (3D Slicer corrects gantry tilt when loading; then save as "
                             ".nrrd)", case=case_id, path=str(path))


def series_uid_of(path: Path) -> Optional[str]:
    """SeriesInstanceUID of a DICOM file, or of the first DICOM file in a folder; None for other files."""
    path = Path(path)
    if path.is_dir():
        files = dicom_files_in(path, limit=1)
        return dicom_header(files[0])["series"] if files else None
    return dicom_header(path)["series"] if is_dicom_file(path) else None
