"""What BackSplit wrote before the engine was regrouped still loads: a dataset, a model folder and a study plan.

``Testing/data/legacy-805fbf2/`` was written by BackSplit at commit 805fbf2 (the last commit before the regrouping)
with ``backsplit.export.export_dataset`` (6 synthetic cases of 8x24x24 voxels, target Lesion, supports Vessel and
Organ, plus the binary baseline dataset), a 2d training of 1 epoch x 2 iterations on the CPU (only the optimiser
state was dropped from the checkpoint, to keep the fixture small), and
``backsplit study DATASET --arms binary,backsplit,drop:Vessel --folds 3 --seeds 1 -c 2d --epochs 1
--iterations-per-epoch 2 --device cpu --plan-only`` (its unit lines are ``study_plan_only.txt``).
"""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

LEGACY = Path(__file__).resolve().parent / "data" / "legacy-805fbf2"


@pytest.fixture
def legacy(tmp_path):
    """A copy of the legacy folders (tests never write into the repository)."""
    shutil.copytree(LEGACY, tmp_path / "legacy")
    return tmp_path / "legacy"


def test_legacy_dataset_opens_as_a_dataset_folder(legacy):
    from backsplit.datasets.folder import load_dataset_folder

    dataset = load_dataset_folder(legacy / "raw" / "Dataset021_Legacy")
    assert dataset.variant == "backsplit" and dataset.dataset_id == 21
    assert dataset.case_ids == [f"old{i}" for i in range(6)]
    assert dataset.twin_folder is not None and dataset.twin_folder.name == "Dataset022_LegacyBinary"
    assert len(dataset.channel_names) == 1
    # the recorded SHA-256 of every case file is the content identity (nothing re-hashed). A git checkout gives every
    # file the checkout's time, so dataset.json is made the newest file first, as the export leaves it.
    import hashlib
    import os
    import time

    newest = time.time() + 1
    os.utime(dataset.folder / "dataset.json", (newest, newest))
    image = dataset.image_path("old0", 0)
    assert dataset.recorded_hash(image) == hashlib.sha256(image.read_bytes()).hexdigest()
    twin = load_dataset_folder(dataset.twin_folder)
    assert twin.variant == "binary" and twin.case_ids == dataset.case_ids


def test_legacy_model_folder_predicts(legacy, tmp_path):
    """The old model folder is read and run by today's prediction (labels on the input grid, names from the
    manifest)."""
    import SimpleITK as sitk

    from backsplit.inference.model import read_model_info

    model = legacy / "model"
    info = read_model_info(model)
    assert [c.name for c in info.schema.targets] == ["Lesion"]
    image = legacy / "raw" / "Dataset021_Legacy" / "imagesTr" / "old0_0000.nii.gz"
    out = tmp_path / "pred"
    command = [sys.executable, "-m", "backsplit", "predict", str(model), str(image), "--out", str(out), "--device",
               "cpu", "--trust-model"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    labelmaps = [p for p in out.glob("*.nii.gz") if "probability" not in p.name]
    assert labelmaps, sorted(p.name for p in out.iterdir())
    predicted = sitk.ReadImage(str(labelmaps[0]))
    reference = sitk.ReadImage(str(image))
    assert predicted.GetSize() == reference.GetSize()
    assert np.allclose(predicted.GetSpacing(), reference.GetSpacing())


def test_legacy_study_plan_keeps_its_unit_hashes(legacy, tmp_path):
    """A study planned by the old code resumes: today's plan of the same dataset and settings has the same units
    and content hashes."""
    result = subprocess.run([sys.executable, "-m", "backsplit", "study", str(legacy / "raw" / "Dataset021_Legacy"),
                             "--out", str(tmp_path / "study"), "--arms", "binary,backsplit,drop:Vessel", "--folds", "3",
                             "--seeds", "1", "-c", "2d", "--epochs", "1", "--iterations-per-epoch", "2", "--device",
                             "cpu", "--plan-only"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    from backsplit.training.schedule import default_differs_from_paper

    units = [line for line in result.stdout.splitlines() if line.startswith("wave")]
    legacy_units = (LEGACY / "study_plan_only.txt").read_text(encoding="utf-8").splitlines()
    if not default_differs_from_paper():
        assert units == legacy_units
        return
    # the default recipe changed (docs/results/2026-12-07-cpu2-dynamics.md): the arms that train with it get new
    # training hashes (never reuse a paper-recipe model); the binary baseline and every preparation keep theirs
    same = [u for u in legacy_units if u.split()[2].startswith(("prepare", "binary"))]
    assert same and all(u in units for u in same)
    changed = [u for u in legacy_units if u not in same]
    assert changed and not any(u in units for u in changed)
    assert [u.split()[2] for u in units] == [u.split()[2] for u in legacy_units]
