"""A per-case error in a multi-case predict (issue 21 item 15): the other cases are predicted and summarised, the
failure is reported and listed, the exit code is 1; never labelmaps without a summary. Uses the tiny CPU model."""

import csv
import gzip
import json
import shutil

import numpy as np
import SimpleITK as sitk

from backsplit.cli import main


def test_predict_continues_after_a_bad_case(tiny_model_dir, tiny_dataset, tmp_path, capsys):
    images = sorted((tiny_dataset.dataset_dir / "imagesTr").glob("*_0000.nii.gz"))[:3]
    inputs = tmp_path / "in"
    inputs.mkdir()
    for path in images:
        shutil.copy(path, inputs / path.name)
    bad = inputs / images[1].name  # the second case: float voxels with a NaN, seen only when its voxels are read
    image = sitk.ReadImage(str(bad))
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    array[0, 0, 0] = np.nan
    nan_image = sitk.GetImageFromArray(array)
    nan_image.CopyInformation(image)
    sitk.WriteImage(nan_image, str(tmp_path / "nan.nii"))
    with open(tmp_path / "nan.nii", "rb") as src, gzip.open(bad, "wb") as dst:  # ITK's .nii.gz write keeps NaN too
        shutil.copyfileobj(src, dst)
    out = tmp_path / "out"
    code = main(["predict", str(tiny_model_dir), str(inputs), "--out", str(out), "--no-mirroring", "--device", "cpu",
                 "--quiet"])
    captured = capsys.readouterr()
    bad_id = images[1].name[: -len("_0000.nii.gz")]
    good_ids = [p.name[: -len("_0000.nii.gz")] for p in (images[0], images[2])]
    assert code == 1, captured.err
    assert f"1 of 3 case(s) failed: case '{bad_id}'" in captured.err and "NaN" in captured.err
    with open(out / "summary.csv", newline="") as handle:
        assert [row["case_id"] for row in csv.DictReader(handle)] == good_ids
    assert all((out / f"{case}.nii.gz").is_file() for case in good_ids) and not (out / f"{bad_id}.nii.gz").exists()
    failed = json.loads((out / "failed_cases.json").read_text(encoding="utf-8"))
    assert [f["case"] for f in failed] == [bad_id]
    assert (out / "prediction_run.json").is_file()
