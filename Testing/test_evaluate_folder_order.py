"""Issue 21 item 4: ``evaluate`` and ``calibrate`` take the predictions first, ``nnUNetv2_evaluate_folder`` the
references first. Folders given the other way round (a prediction run's files in the references folder, none in the
predictions folder) are refused with the command in the right order; named --predictions/--references work in any
order beside the positional form. Real labelmaps written with SimpleITK."""

import json

import numpy as np
import SimpleITK as sitk

from backsplit.cli import main


def _write(folder, case, array):
    folder.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array), str(folder / f"{case}.nii.gz"))


def _folders(tmp_path):
    """A 'backsplit predict' output folder (labels.json, prediction_run.json, summary.json) with one missed lesion
    and one false positive, a labelsTr-like reference folder, and the dataset whose labels both use."""
    ref_a, ref_b = np.zeros((6, 8, 8), np.uint8), np.zeros((6, 8, 8), np.uint8)
    ref_a[1:3, 1:3, 1:3] = 1
    ref_b[3:5, 4:6, 4:6] = 1
    pred_a = ref_a.copy()
    pred_a[4:6, 5:7, 5:7] = 1                     # a false positive beside the hit
    pred_b = np.zeros_like(ref_b)                  # the lesion is missed
    preds, refs = tmp_path / "pred", tmp_path / "labelsTr"
    for case, ref, pred in (("a", ref_a, pred_a), ("b", ref_b, pred_b)):
        _write(refs, case, ref)
        _write(preds, case, pred)
    (preds / "labels.json").write_text(json.dumps({"background": 0, "cyst": 1}))
    (preds / "prediction_run.json").write_text("{}")
    (preds / "summary.json").write_text(json.dumps([{"case_id": c, "threshold": 0.5, "lesion_score_ml": v}
                                                    for c, v in (("a", 0.1), ("b", 0.0))]))
    dataset = tmp_path / "Dataset001_T"
    dataset.mkdir()
    (dataset / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "cyst": 1}, "channel_names":
                                                      {"0": "CT"}, "numTraining": 2, "file_ending": ".nii.gz"}))
    return preds, refs, dataset


def test_evaluate_swapped_folders_refused(tmp_path, capsys):
    # today: exit 0 with precision and recall, missed and false-positive lesions traded
    preds, refs, dataset = _folders(tmp_path)
    code = main(["evaluate", str(refs), str(preds), "--model", str(dataset), "--out", str(tmp_path / "e.csv")])
    err = capsys.readouterr().err
    assert code == 1 and "the folders look swapped" in err and "nnUNetv2_evaluate_folder" in err
    assert f"--predictions '{preds}' --references '{refs}'" in err
    assert not (tmp_path / "e.csv").exists()
    code = main(["calibrate", str(refs), str(preds), "--labels", str(dataset)])
    assert code == 1 and "the folders look swapped" in capsys.readouterr().err


def test_named_folders_in_any_order_match_the_positional_form(tmp_path, capsys):
    preds, refs, dataset = _folders(tmp_path)
    common = ["--model", str(dataset)]
    assert main(["evaluate", str(preds), str(refs), *common, "--out", str(tmp_path / "pos.csv")]) == 0
    assert main(["evaluate", "--references", str(refs), "--predictions", str(preds), *common,
                 "--out", str(tmp_path / "named.csv")]) == 0
    assert main(["evaluate", str(preds), "--references", str(refs), *common, "--out", str(tmp_path / "mix.csv")]) == 0
    positional = (tmp_path / "pos.csv").read_text(encoding="utf-8")
    named = (tmp_path / "named.csv").read_text(encoding="utf-8")
    mixed = (tmp_path / "mix.csv").read_text(encoding="utf-8")
    assert named == positional == mixed
    capsys.readouterr()
    assert main(["evaluate", str(preds), str(refs), "--references", str(refs), *common,
                 "--out", str(tmp_path / "x.csv")]) == 1
    assert "one folder too many" in capsys.readouterr().err
    assert main(["calibrate", "--references", str(refs), "--predictions", str(preds), "--labels", str(dataset)]) == 0
