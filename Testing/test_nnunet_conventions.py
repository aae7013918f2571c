"""nnU-Net researchers' habits, end to end on the CPU (issue 21, "at home for nnU-Net researchers"): nnU-Net's folder
variables and dataset ids (``train -d 501``), existing preprocessing reused, a ResEnc plans preset, predict with a fold
set / checkpoint / step size / without mirroring, a plain nnU-Net model folder predicted and fine-tuned from, an nnU-Net
model zip (``nnUNetv2_export_model_to_zip`` layout) imported, the lesion-matching criterion, the trainer lookup of
nnU-Net's own tools.

One tiny training (2d, 1 epoch of 2 iterations, fold 0 of 5 cases, final validation on by default) shared by the
module; a second tiny training (fold all, no validation) plans the ResEncM preset. Real nnU-Net (its own zip exporter
and trainer lookup included), real files; nothing mocked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_nnunet import export_tiny

from backsplit.cli import main

TRAIN = ["--epochs", "1", "--iterations-per-epoch", "2", "--val-iterations", "1", "--device", "cpu",
         "--seed", "1", "--save-every", "1"]


@pytest.fixture(scope="module")
def nnunet_home(tmp_path_factory):
    """nnU-Net's three folder variables set (as in a researcher's shell), the tiny dataset exported as id 501 into
    $nnUNet_raw, and one training started by id without --work-dir: (folders, the model folder)."""
    root = tmp_path_factory.mktemp("nnunet home")
    folders = {name: root / name for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    with pytest.MonkeyPatch.context() as mp:
        for name, folder in folders.items():
            folder.mkdir()
            mp.setenv(name, str(folder))
        export_tiny(folders["nnUNet_raw"], dataset_id=501)
        assert main(["train", "-d", "501", "--fold", "0", *TRAIN]) == 0   # final validation on by default
        yield folders, folders["nnUNet_results"] / "Dataset501_Tiny" / "BackSplitTrainer__nnUNetPlans__2d"


def test_train_by_dataset_id_uses_the_users_nnunet_folders(nnunet_home):
    folders, model = nnunet_home
    assert (model / "backsplit_model.json").is_file() and (model / "fold_0" / "checkpoint_final.pth").is_file()
    data = folders["nnUNet_preprocessed"] / "Dataset501_Tiny" / "nnUNetPlans_2d"
    assert len(list(data.glob("*.pkl"))) == 5
    assert (folders["nnUNet_results"] / "jobs").is_dir()       # the job's options and log beside the results


def test_dataset_id_errors_name_the_variable(tmp_path, monkeypatch):
    from backsplit.errors import InputError
    from backsplit.training.environment import resolve_dataset

    monkeypatch.delenv("nnUNet_raw", raising=False)
    with pytest.raises(InputError, match="nnUNet_raw is not set"):
        resolve_dataset("501")
    monkeypatch.setenv("nnUNet_raw", str(tmp_path))
    with pytest.raises(InputError, match="no folder Dataset501_"):
        resolve_dataset("501")
    (tmp_path / "Dataset501_A").mkdir()
    assert resolve_dataset("501") == tmp_path / "Dataset501_A"
    assert resolve_dataset("Dataset501_A") == tmp_path / "Dataset501_A"
    (tmp_path / "Dataset501_B").mkdir()
    with pytest.raises(InputError, match="names 2 folders"):
        resolve_dataset("501")


def test_existing_nnunet_preprocessing_is_reused_not_overwritten(nnunet_home, monkeypatch):
    """Preprocessing without BackSplit's markers (as ``nnUNetv2_plan_and_preprocess`` leaves it) is reused as it
    is; preprocessing of other data is refused, never overwritten."""
    from fixtures_nnunet import tiny_options

    from backsplit.datasets.folder import load_dataset_folder
    from backsplit.errors import InputError
    from backsplit.training.prepare import prepare

    folders, _ = nnunet_home
    for name, folder in folders.items():
        monkeypatch.setenv(name, str(folder))
    pre = folders["nnUNet_preprocessed"] / "Dataset501_Tiny"
    for marker in pre.glob("backsplit_prepar*.json"):
        marker.unlink()
    files = sorted((pre / "nnUNetPlans_2d").iterdir())
    mtimes = [p.stat().st_mtime_ns for p in files]
    dataset = load_dataset_folder(folders["nnUNet_raw"] / "Dataset501_Tiny")
    options = tiny_options(dataset.folder, folders["nnUNet_results"])
    plans = prepare(dataset, options, None)
    assert plans["plans_name"] == "nnUNetPlans"
    assert [p.stat().st_mtime_ns for p in sorted((pre / "nnUNetPlans_2d").iterdir())] == mtimes
    theirs = json.loads((pre / "dataset.json").read_text(encoding="utf-8"))
    other = dict(theirs, labels={"background": 0, "Something": 1})
    (pre / "dataset.json").write_text(json.dumps(other))
    try:
        with pytest.raises(InputError, match="does not overwrite"):
            prepare(dataset, options, None)
    finally:
        (pre / "dataset.json").write_text(json.dumps(theirs))


def test_predict_with_fold_set_checkpoint_step_size_and_no_mirroring(nnunet_home, tmp_path, capsys):
    _, model = nnunet_home
    raw = model.parents[2] / "nnUNet_raw" / "Dataset501_Tiny" / "imagesTr" / "tiny0_0000.nii.gz"
    out = tmp_path / "out"
    code = main(["predict", str(model), str(raw), "--out", str(out), "--device", "cpu", "--folds", "0",
                 "--checkpoint", "best", "--step-size", "1", "--disable-tta", "--quiet"])
    assert code == 0 and (out / "tiny0.nii.gz").is_file()
    with pytest.raises(SystemExit):
        main(["predict", str(model), str(raw), "--out", str(out), "--step-size", "0"])
    assert "0 < S <= 1" in capsys.readouterr().err
    assert main(["predict", str(model), str(raw), "--out", str(tmp_path / "o2"), "--folds", "3"]) == 1
    assert "has fold(s) 0" in capsys.readouterr().err


def test_plain_nnunet_model_folder_predicts_with_a_warning(nnunet_home, tmp_path, capsys):
    _, model = nnunet_home
    plain = tmp_path / "nnUNetTrainer__nnUNetPlans__2d"
    shutil.copytree(model, plain, ignore=shutil.ignore_patterns("backsplit_model.json"))
    raw = model.parents[2] / "nnUNet_raw" / "Dataset501_Tiny" / "imagesTr" / "tiny1_0000.nii.gz"
    out = tmp_path / "out"
    assert main(["predict", str(plain), str(raw), "--out", str(out), "--device", "cpu", "--disable-tta",
                 "--quiet"]) == 0
    assert "derived from nnU-Net's files" in capsys.readouterr().err
    labels = json.loads((out / "labels.json").read_text(encoding="utf-8"))
    assert [v["name"] for k, v in sorted(labels.items()) if k != "0"] == ["Lesion", "Vessel", "Organ"]


def test_lesion_match_criterion_changes_what_counts_as_detected():
    """Two reference lesions; one prediction covers lesion A fully plus much more (IoU 0.2 with A), one prediction
    touches lesion B in one voxel. Any overlap: both detected, no false positive; IoU > 0.5: both missed, both
    predictions false positives; Dice > 0.3 (= IoU > 0.18): A detected, B missed."""
    import numpy as np

    from backsplit.errors import InputError
    from backsplit.evaluation.metrics import lesion_counts

    reference = np.zeros((10, 20, 20), bool)
    prediction = np.zeros_like(reference)
    reference[2:4, 2:4, 2:4] = True          # A: 8 voxels
    prediction[2:4, 2:4, 2:12] = True        # 40 voxels, covers A: IoU 8/40 = 0.2, Dice 16/48 = 0.33
    reference[6:9, 14:17, 14:17] = True      # B: 27 voxels
    prediction[8, 16:19, 16:19] = True       # 9 voxels, 1 shared with B: IoU 1/35
    assert lesion_counts(reference, prediction) == (2, 2, 0, 0)
    assert lesion_counts(reference, prediction, "iou:0.5") == (2, 0, 2, 2)
    assert lesion_counts(reference, prediction, "dice:0.3") == (2, 1, 1, 1)
    for bad in ("iou", "iou:1.5", "centroid"):
        with pytest.raises(InputError, match="lesion match"):
            lesion_counts(reference, prediction, bad)


def test_final_validation_runs_by_default_and_nnunets_zip_imports(nnunet_home, tmp_path, monkeypatch, capsys):
    """The fold's validation/summary.json is there (what nnUNetv2_find_best_configuration reads), so nnU-Net's own
    exporter (``nnUNetv2_export_model_to_zip``) packs the model; ``backsplit model import`` takes that zip."""
    from nnunetv2.model_sharing.model_export import export_pretrained_model

    folders, model = nnunet_home
    assert json.loads((model / "fold_0" / "validation" / "summary.json").read_text(encoding="utf-8"))["foreground_mean"]
    assert json.loads((model / "backsplit_model.json").read_text(encoding="utf-8"))["final_validation_s"] >= 0
    for name, folder in folders.items():
        monkeypatch.setenv(name, str(folder))
    zip_path = tmp_path / "Dataset501_Tiny.zip"
    export_pretrained_model(501, str(zip_path), configurations=("2d",), trainer="BackSplitTrainer", folds=(0,))
    models = tmp_path / "models"
    assert main(["model", "import", str(zip_path), "--models-dir", str(models)]) == 0
    out = capsys.readouterr().out
    assert "imported 'Dataset501_Tiny__2d'" in out and "untrusted" in out
    imported = models / "Dataset501_Tiny__2d"
    manifest = json.loads((imported / "backsplit_model.json").read_text(encoding="utf-8"))
    assert manifest["derived"] and manifest["folds"] == ["0"] and manifest["trainer"] == "BackSplitTrainer"
    raw = folders["nnUNet_raw"] / "Dataset501_Tiny" / "imagesTr" / "tiny2_0000.nii.gz"
    assert main(["predict", str(imported), str(raw), "--out", str(tmp_path / "p"), "--device", "cpu", "--quiet",
                 "--disable-tta"]) == 1   # untrusted until confirmed
    assert main(["predict", str(imported), str(raw), "--out", str(tmp_path / "p"), "--device", "cpu", "--quiet",
                 "--disable-tta", "--trust-model"]) == 0
    assert (tmp_path / "p" / "tiny2.nii.gz").is_file()


def test_fine_tuning_accepts_a_plain_nnunet_model_folder(nnunet_home, tmp_path, monkeypatch, capsys):
    from backsplit.datasets.folder import load_dataset_folder
    from backsplit.training.fold import check_pretrained

    folders, model = nnunet_home
    for name, folder in folders.items():
        monkeypatch.setenv(name, str(folder))
    plain = tmp_path / "nnUNetTrainer__nnUNetPlans__2d"
    shutil.copytree(model, plain, ignore=shutil.ignore_patterns("backsplit_model.json"))
    plans, checkpoint = check_pretrained(plain, load_dataset_folder(folders["nnUNet_raw"] / "Dataset501_Tiny"), "2d")
    assert checkpoint == plain / "fold_0" / "checkpoint_final.pth" and "2d" in plans["configurations"]
    assert "plain nnU-Net model folder" in capsys.readouterr().out


def test_resenc_preset_is_planned_trained_and_predicts(nnunet_home, tmp_path, monkeypatch):
    from backsplit.inference.model import load_predictor, read_model_info

    folders, _ = nnunet_home
    for name, folder in folders.items():
        monkeypatch.setenv(name, str(folder))
    default_data = folders["nnUNet_preprocessed"] / "Dataset501_Tiny" / "nnUNetPlans_2d"
    before = {p.name: p.stat().st_mtime_ns for p in default_data.iterdir()}
    assert main(["train", "501", "--plans", "ResEncM", "--fold", "all", "--no-final-validation", *TRAIN]) == 0
    model = folders["nnUNet_results"] / "Dataset501_Tiny" / "BackSplitTrainer__nnUNetResEncUNetMPlans__2d"
    plans = json.loads((model / "plans.json").read_text(encoding="utf-8"))
    assert plans["plans_name"] == "nnUNetResEncUNetMPlans"
    assert plans["configurations"]["2d"]["architecture"]["network_class_name"].endswith("ResidualEncoderUNet")
    manifest = json.loads((model / "backsplit_model.json").read_text(encoding="utf-8"))
    assert manifest["plans_name"] == "nnUNetResEncUNetMPlans"
    assert {p.name: p.stat().st_mtime_ns for p in default_data.iterdir()} == before   # the default's data untouched
    predictor = load_predictor(read_model_info(model), "cpu", use_mirroring=False, tile_step_size=1.0)
    assert type(predictor.network).__name__ == "ResidualEncoderUNet"


def test_nnunet_tools_find_backsplit_trainer(tmp_path):
    """nnU-Net's own lookup by name (``nnUNetv2_predict -tr``, ``nnUNetv2_find_best_configuration``) imports every
    trainer module, Primus's (timm -> torchvision) among them, then searches nnUNet_extTrainer: BackSplit's folder."""
    from backsplit.training.environment import nnunet_ext_folder

    env = dict(os.environ, nnUNet_extTrainer=str(nnunet_ext_folder()), nnUNet_raw=str(tmp_path),
               nnUNet_preprocessed=str(tmp_path), nnUNet_results=str(tmp_path))
    code = ("from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as find\n"
            "print('FOUND', find('BackSplitTrainer').__module__)")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "FOUND backsplit.training.trainer" in result.stdout


def test_torch_pairing_check_names_the_torchvision_to_install(monkeypatch):
    import importlib.metadata

    from backsplit.training.environment import torch_pairing_problem

    installed = {"torch": "2.13.0+cpu", "torchvision": "0.29.1"}
    monkeypatch.setattr(importlib.metadata, "version", lambda name: installed[name])
    problem = torch_pairing_problem()
    assert problem and "torch 2.13.0+cpu and torchvision 0.29.1 are not a matching pair" in problem
    assert "torchvision==0.28.*" in problem
    installed["torchvision"] = "0.28.0+cpu"
    assert torch_pairing_problem() is None


def test_psutil_is_a_runtime_dependency():
    """Cancel ends a child's process tree with psutil (runtime/childprocess.py): it must not be a test-only extra."""
    tomllib = pytest.importorskip("tomllib")   # Python 3.11+
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    assert any(d.replace(" ", "").startswith("psutil") for d in project["dependencies"])
