"""The shipped demo cases (synthetic CT from KiTS23 label maps) as volumes and segmentations in the scene."""

from __future__ import annotations

import numpy as np
import slicer

from pathlib import Path

from backsplit.demo import demo_case, demo_label_files, write_demo_case_files


def load_demo_cases(count: int = 3, first: int = 0) -> list:
    """Add ``count`` demo cases; returns [(volume node, segmentation node), ...]."""
    loaded = []
    for path in demo_label_files()[first:first + count]:
        case = demo_case(path)
        volume = slicer.util.addVolumeFromArray(np.ascontiguousarray(case.channels[0]), case.geometry.ijk_to_ras(),
                                                name=case.case_id)
        segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{case.case_id} segmentation")
        segmentation.CreateDefaultDisplayNodes()
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        for name, mask in case.segments.items():
            segment_id = segmentation.GetSegmentation().AddEmptySegment(name, name, list(case.colors.get(name, (1, 1, 0))))
            slicer.util.updateSegmentBinaryLabelmapFromArray(mask.astype(np.uint8), segmentation, segment_id, volume)
        loaded.append((volume, segmentation))
    return loaded


def demo_sample_files(folder: Path, count: int = 2) -> list:
    """Demo case files for Slicer's Sample Data module, written once (SimpleITK only: one-layer segmentations)."""
    folder = Path(folder)
    names = [p.name[: -len(".nii.gz")] for p in demo_label_files()[:count]]
    expected = [(folder / f"{n}.nii.gz", folder / f"{n}.seg.nrrd") for n in names]
    if not all(image.is_file() and seg.is_file() for image, seg in expected):
        write_demo_case_files(folder, count, whole_organ=False)
    return expected
