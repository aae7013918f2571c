"""Tiny DICOM test data made in the test (no downloads): a CT series written by SimpleITK and a DICOM SEG made from
it by highdicom. A test helper, not the engine."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np


def write_ct_series(folder: Path, array: np.ndarray, spacing=(0.8, 0.7, 2.5), origin=(-20.0, -15.0, 40.0),
                    direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), series_uid: str | None = None,
                    description: str = "test CT") -> list[Path]:
    """Write ``array`` (z, y, x) int16 as one DICOM file per slice (CT Image Storage), spacing (x, y, z) mm, LPS
    origin and direction as ITK has them. Follows SimpleITK's "Dicom Series From Array" example: the per-slice
    tags ImagePositionPatient / InstanceNumber and the shared orientation tags are set explicitly, because the
    writer does not derive them from a 3D image's geometry."""
    import SimpleITK as sitk

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(array.astype(np.int16))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    now_date, now_time = time.strftime("%Y%m%d"), time.strftime("%H%M%S")
    uid_root = "1.2.826.0.1.3680043.2.1125"
    series_uid = series_uid or f"{uid_root}.1.{int(time.time() * 1e3)}.{np.random.randint(1 << 30)}"
    study_uid = f"{uid_root}.2.{int(time.time())}"
    d = direction
    shared = [("0008|0031", now_time), ("0008|0021", now_date), ("0008|0008", "DERIVED\\SECONDARY"),
              ("0020|000d", study_uid), ("0020|000e", series_uid), ("0020|0052", f"{uid_root}.3"),
              ("0020|0037", "\\".join(str(v) for v in (d[0], d[3], d[6], d[1], d[4], d[7]))),
              ("0008|103e", description), ("0008|0060", "CT"), ("0010|0020", "PAT1"), ("0010|0010", "Test^Patient"),
              ("0028|1052", "0"), ("0028|1053", "1"), ("0028|1054", "HU")]
    paths = []
    for k in range(image.GetDepth()):
        slice_ = image[:, :, k]
        for tag, value in shared:
            slice_.SetMetaData(tag, value)
        slice_.SetMetaData("0008|0012", now_date)
        slice_.SetMetaData("0008|0013", now_time)
        slice_.SetMetaData("0008|0016", "1.2.840.10008.5.1.4.1.1.2")          # CT Image Storage
        slice_.SetMetaData("0008|0018", f"{series_uid}.{k + 1}")
        slice_.SetMetaData("0020|0032", "\\".join(str(v) for v in image.TransformIndexToPhysicalPoint((0, 0, k))))
        slice_.SetMetaData("0020|0013", str(k + 1))
        slice_.SetMetaData("0018|0050", str(spacing[2]))
        path = folder / f"slice{k:04d}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(slice_)
        paths.append(path)
    return paths


def write_seg(path: Path, series_files: Sequence[Path], masks: dict[str, np.ndarray],
              omit_empty_frames: bool = True) -> Path:
    """A binary DICOM SEG (highdicom) over the series: ``masks`` name -> (z, y, x) bool on the series grid, in the
    slice order of ``series_files`` sorted along the slice normal (as ImageSeriesReader sorts them)."""
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    sources = [pydicom.dcmread(str(p)) for p in series_files]
    sources.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))  # axial test data: z increases with k
    descriptions = []
    for number, name in enumerate(masks, start=1):
        descriptions.append(hd.seg.SegmentDescription(
            segment_number=number, segment_label=name,
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Neoplasm,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL))
    stacked = np.stack([np.asarray(m, bool) for m in masks.values()], axis=-1).astype(np.uint8)  # (z, y, x, s)
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=stacked, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=100,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="BackSplit tests",
        manufacturer_model_name="tests", software_versions="0", device_serial_number="0",
        omit_empty_frames=omit_empty_frames)
    seg.save_as(str(path))
    return Path(path)
