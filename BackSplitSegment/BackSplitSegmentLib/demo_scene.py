"""The shipped demo cases (synthetic CT from KiTS23 label maps) as volumes and segmentations in the scene."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np
import slicer

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


SAMPLE_CATEGORY = "BackSplit"
DEMO_SAMPLE_COUNT = 2


def sample_case_ids(count: int = DEMO_SAMPLE_COUNT) -> list[str]:
    return [p.name[: -len(".nii.gz")] for p in demo_label_files()[:count]]


def sample_data_sources(folder: Path, load: Callable[[object], object], icon: Optional[str] = None,
                        count: int = DEMO_SAMPLE_COUNT) -> list[dict]:
    """Keyword arguments for ``SampleDataLogic.registerCustomSampleDataSource``, one demo case each.

    Registering costs nothing: the files are written into ``folder`` (Slicer's cache) only when the user first asks
    for a sample; then ``load(source)`` (SampleData's ``downloadFromSource``) copies them into the cache and loads
    the CT as a volume and the ``.seg.nrrd`` as a segmentation."""
    folder = Path(folder)

    def download(source, folder=folder, count=count, load=load):
        demo_sample_files(folder, count)
        return load(source)

    sources = []
    for case_id in sample_case_ids(count):
        image, segmentation = folder / f"{case_id}.nii.gz", folder / f"{case_id}.seg.nrrd"
        sources.append(dict(
            category=SAMPLE_CATEGORY, sampleName=f"BackSplit demo {case_id}", thumbnailFileName=icon,
            uris=[image.as_uri(), segmentation.as_uri()],
            fileNames=[f"BackSplit_{image.name}", f"BackSplit_{segmentation.name}"],
            nodeNames=[case_id, f"{case_id} segmentation"], loadFileType=["VolumeFile", "SegmentationFile"],  # accepted by old and new releases
            customDownloader=download))
    return sources
