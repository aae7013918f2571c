"""The shipped demo cases (synthetic CT from KiTS23 label maps) as volumes and segmentations in the scene."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import slicer

from backsplit.demo.cases import demo_case, demo_label_files
from backsplit.runtime.childprocess import ChildProcess, child_environment, python_executable


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
            color = list(case.colors.get(name, (1, 1, 0)))
            segment_id = segmentation.GetSegmentation().AddEmptySegment(name, name, color)
            slicer.util.updateSegmentBinaryLabelmapFromArray(mask.astype(np.uint8), segmentation, segment_id, volume)
        loaded.append((volume, segmentation))
    return loaded


def demo_sample_files(folder: Path, count: int = 2) -> list:
    """Demo case files for Slicer's Sample Data module, written once (SimpleITK only: one-layer segmentations).
    Files are written aside and moved into ``folder``, so a reader never sees half a file."""
    folder = Path(folder)
    names = [p.name[: -len(".nii.gz")] for p in demo_label_files()[:count]]
    expected = [(folder / f"{n}.nii.gz", folder / f"{n}.seg.nrrd") for n in names]
    if not all(image.is_file() and seg.is_file() for image, seg in expected):
        exec(STAGED_WRITE, {"__name__": "backsplit_samples", "FOLDER": str(folder), "COUNT": count})
    return expected


# Runs in this process (demo_sample_files) or in a child Python started at Slicer's start-up (prepare_sample_files).
STAGED_WRITE = """
import os, tempfile
from pathlib import Path
from backsplit.demo.cases import write_demo_case_files
folder = Path(FOLDER)
folder.mkdir(parents=True, exist_ok=True)
staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
try:
    for files in write_demo_case_files(staging, COUNT, whole_organ=False):
        for path in files:
            os.replace(path, folder / path.name)
finally:
    import shutil
    shutil.rmtree(staging, ignore_errors=True)
"""


def prepare_sample_files(folder: Path, count: int = None, python: Optional[str] = None):
    """Start a child Python that writes the sample files (a few seconds) unless they exist; returns it or None.
    The application does not wait for it."""
    count = count or DEMO_SAMPLE_COUNT
    folder = Path(folder)
    names = [p.name[: -len(".nii.gz")] for p in demo_label_files()[:count]]
    if all((folder / f"{n}.nii.gz").is_file() and (folder / f"{n}.seg.nrrd").is_file() for n in names):
        return None
    code = f"FOLDER = {str(folder)!r}\nCOUNT = {int(count)}\n" + STAGED_WRITE
    return ChildProcess([python or python_executable(), "-c", code], child_environment()).start()


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
            # loadFileType: accepted by old and new releases
            nodeNames=[case_id, f"{case_id} segmentation"], loadFileType=["VolumeFile", "SegmentationFile"],
            customDownloader=download))
    return sources


def register_sample_data(icon: Optional[str] = None) -> None:
    """Register the demo cases with Slicer's Sample Data module and start making their files in the background
    (so that a script's ``SampleDataLogic().downloadSample(...)`` finds them); never breaks start-up."""
    try:
        import SampleData
    except ImportError:
        return
    folder = Path(slicer.mrmlScene.GetCacheManager().GetRemoteCacheDirectory()) / "BackSplit"
    try:
        sources = sample_data_sources(folder, lambda source: SampleData.SampleDataLogic().downloadFromSource(source),
                                      icon)
        for source in sources:
            SampleData.SampleDataLogic.registerCustomSampleDataSource(**source)
        prepare_sample_files(folder)
    except Exception as exc:  # sample data is optional
        logging.warning(f"BackSplit demo sample data not available: {exc}")
