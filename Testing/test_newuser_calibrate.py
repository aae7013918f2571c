"""``backsplit calibrate`` as a new user runs it: validation cases that all hold a lesion (specificity undefined:
said in words, JSON null in the rule, not NaN), and the test images given instead of the reference labelmaps."""

import json

import numpy as np
import SimpleITK as sitk

from backsplit.cli import main


def _setup(tmp_path, reference_values):
    preds, refs = tmp_path / "pred", tmp_path / "refs"
    preds.mkdir()
    refs.mkdir()
    summaries = []
    for i, value in enumerate(reference_values):
        labels = np.zeros((4, 6, 6), np.int16)
        labels[1:3, 1:3, 1:3] = value
        sitk.WriteImage(sitk.GetImageFromArray(labels), str(refs / f"c{i}.nii.gz"))
        summaries.append({"case_id": f"c{i}", "threshold": 0.5, "lesion_score_ml": 1.0 + i})
    (preds / "summary.json").write_text(json.dumps(summaries), encoding="utf-8")
    dataset = tmp_path / "Dataset001_T"
    dataset.mkdir()
    (dataset / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "cyst": 1}, "channel_names":
                                                      {"0": "CT"}, "numTraining": 2, "file_ending": ".nii.gz"}))
    return preds, refs, dataset


def test_only_lesion_cases_give_an_undefined_specificity_in_words_and_null(tmp_path, capsys):
    preds, refs, dataset = _setup(tmp_path, [1, 1])
    out = tmp_path / "rule.json"
    assert main(["calibrate", str(preds), str(refs), "--labels", str(dataset), "--out", str(out)]) == 0
    assert "specificity undefined (no case without a lesion" in capsys.readouterr().out
    raw = out.read_text(encoding="utf-8")
    assert "NaN" not in raw and json.loads(raw)["calibration"]["specificity"] is None


def test_an_image_as_reference_is_refused(tmp_path, capsys):
    preds, refs, dataset = _setup(tmp_path, [1, -1000])  # c1 holds CT-like values
    assert main(["calibrate", str(preds), str(refs), "--labels", str(dataset)]) != 0
    assert "the reference is not a labelmap" in capsys.readouterr().err
