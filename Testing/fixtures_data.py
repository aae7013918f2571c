"""Small synthetic cases built in the tests (no downloads, nothing from outside the repo)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backsplit.io.cases import Case, InMemoryCaseSource
from backsplit.io.geometry import Geometry


def make_case(case_id: str = "case1", shape=(12, 16, 20), spacing=(1.0, 1.5, 2.0), origin=(0.0, 0.0, 0.0),
              direction=None, lesion=True, seed: int = 0, channels: int = 1) -> Case:
    """A box 'organ' with a small 'lesion' inside, and a 'vessel' that overlaps the organ."""
    rng = np.random.default_rng(seed)
    geometry = Geometry.create(spacing, origin, direction, shape)
    organ = np.zeros(shape, bool)
    organ[2:10, 3:13, 4:16] = True
    lesion_mask = np.zeros(shape, bool)
    if lesion:
        lesion_mask[4:7, 5:8, 6:9] = True
    vessel = np.zeros(shape, bool)
    vessel[:, 8:10, 10:12] = True
    images = [(rng.normal(40, 10, shape) + 100 * organ - 80 * lesion_mask + 10 * c).astype(np.int16)
              for c in range(channels)]
    return Case(case_id, images, geometry, {"Organ": organ, "Lesion": lesion_mask, "Vessel": vessel},
                description=f"test case {case_id}")


@pytest.fixture
def cases():
    return [InMemoryCaseSource(make_case(f"case{i}", seed=i)) for i in range(3)]


def write_case_files(folder: Path, case: Case, *, seg_name: str | None = None, as_labelmap: bool = False) -> tuple:
    """Write a case as <id>.nii.gz (+ channels) and either <id>.seg.nrrd or a labelmap + name map."""
    import SimpleITK as sitk

    from backsplit.io.segfile import write_seg_nrrd

    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for index, channel in enumerate(case.channels):
        path = folder / (f"{case.case_id}.nii.gz" if len(case.channels) == 1 else f"{case.case_id}_{index:04d}.nii.gz")
        sitk.WriteImage(case.geometry.to_sitk(channel), str(path))
        images.append(path)
    if as_labelmap:
        labels = np.zeros(case.geometry.shape, np.uint8)
        names = {}
        for value, (name, mask) in enumerate(case.segments.items(), start=1):
            labels[mask] = value
            names[value] = name
        seg = folder / (seg_name or f"{case.case_id}.label.nii.gz")
        sitk.WriteImage(case.geometry.to_sitk(labels), str(seg))
        return images, seg, names
    seg = folder / (seg_name or f"{case.case_id}.seg.nrrd")
    write_seg_nrrd(seg, case.geometry, case.segments)
    return images, seg, None


@pytest.fixture
def read_only():
    """(writable, freeze): ``writable(folder)`` makes a folder, ``freeze(folder)`` makes it read-only for real: a
    tmpfs remounted read-only when running as root (root ignores file modes; skipped where mounting is not
    allowed), else chmod 0555. Undone after the test."""
    import os
    import subprocess

    root = getattr(os, "geteuid", lambda: 1)() == 0

    made = []

    def writable(folder):
        folder.mkdir(parents=True)
        if root:
            try:
                failed = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)],
                                        capture_output=True).returncode
            except OSError:
                failed = True
            if failed:
                pytest.skip("running as root without the right to mount a tmpfs: a read-only folder cannot be made")
        made.append(folder)
        return folder

    def freeze(folder):
        if root:
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        else:
            folder.chmod(0o555)
    yield writable, freeze
    for folder in made:
        if root:
            subprocess.run(["umount", "-l", str(folder)])
        else:
            folder.chmod(0o755)
