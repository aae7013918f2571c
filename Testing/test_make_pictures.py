"""scripts/make_pictures.py's demo picture (issue 22) on a tiny hand-made demo folder: the case is chosen by the
reference (largest reference lesion), not by the prediction; the picture is written with the panel's summary line.
Real NIfTI files through SimpleITK; no nnU-Net run (the prediction folder is written by hand)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parent.parent


def script():
    spec = importlib.util.spec_from_file_location("make_pictures", ROOT / "scripts" / "make_pictures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(array: np.ndarray, path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.5, 1.5, 3.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def demo_folder(root: Path) -> Path:
    test = root / "nnUNet_raw" / "Dataset503_DemoKidneyCystTest"
    pred = root / "pictures" / "predictions"
    summaries = []
    for case, size in (("small", 2), ("large", 5)):
        labels = np.zeros((6, 32, 48), np.uint8)
        labels[:, 6:26, 8:40] = 3                                  # kidney (support structure)
        labels[3, 10:10 + size, 12:12 + size] = 1                  # cyst (target)
        write(np.full(labels.shape, 40, np.int16), test / "imagesTr" / f"{case}_0000.nii.gz")
        write(labels, test / "labelsTr" / f"{case}.nii.gz")
        predicted = labels.copy() if case == "small" else np.where(labels == 1, 3, labels).astype(np.uint8)
        write(predicted, pred / f"{case}.nii.gz")
        write((labels == 1).astype(np.float32) * 0.9, pred / f"{case}_lesion_probability.nii.gz")
        summaries.append({"case_id": case, "lesion_count": int(case == "small"), "lesion_volume_ml": 0.0,
                          "largest_lesion_ml": 0.0, "max_lesion_probability": 0.9, "lesion_present": case == "small"})
    (pred / "summary.json").write_text(json.dumps(summaries))
    table = {"0": {"name": "background", "role": "background", "color": [0, 0, 0]},
             "1": {"name": "cyst", "role": "target", "color": [0.25, 0.55, 0.95]},
             "2": {"name": "tumor", "role": "support", "color": [0.9, 0.8, 0.3]},
             "3": {"name": "kidney", "role": "support", "color": [0.85, 0.55, 0.45]}}
    (pred / "labels.json").write_text(json.dumps(table))
    model = root / "work" / "model"
    model.mkdir(parents=True)
    (model / "backsplit_model.json").write_text(json.dumps({"configuration": "2d", "epochs": 8,
                                                            "iterations_per_epoch": 100, "batch_size": 12,
                                                            "device": "cpu"}))
    return root


def test_demo_picture_chooses_the_case_by_the_reference(tmp_path, capsys):
    make_pictures = script()
    demo = demo_folder(tmp_path / "demo")
    case, volume = make_pictures.choose_case(demo / "nnUNet_raw" / "Dataset503_DemoKidneyCystTest" / "labelsTr", [1])
    assert case == "large" and volume == pytest.approx(25 * 1.5 * 1.5 * 3.0 / 1000)   # the missed one: chosen anyway
    assert make_pictures.find_model(demo) == demo / "work" / "model"
    out = make_pictures.render_demo(demo, demo / "work" / "model", demo / "pictures" / "predictions",
                                    tmp_path / "slicer-result.png")
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert "case large, slice 3, lesion Dice 0.00" in capsys.readouterr().out


def test_summary_line_is_the_panels():
    line = script().summary_line({"lesion_count": 3, "lesion_volume_ml": 1.2, "largest_lesion_ml": 0.8,
                                  "max_lesion_probability": 0.97, "lesion_present": True})
    assert line == "Lesions: 3, volume 1.20 ml, largest 0.80 ml, max probability 0.97: lesion PRESENT"
