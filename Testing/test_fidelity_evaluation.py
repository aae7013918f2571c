"""Honest numbers: every printed mean says how many cases it covers and which were left out and why; a model that
misses a lesion never gets the better HD95 for it; compare ranks nothing over different case sets."""

import json
import math

import numpy as np
import SimpleITK as sitk

from backsplit.cli import main
from backsplit.evaluation.compare import comparison_picture, comparison_table
from backsplit.evaluation.evaluate import aggregate, evaluate_folders, read_evaluation
from backsplit.labels.schema import LabelSchema

SHAPE = (16, 24, 24)


def blob(z, y, x, size=4):
    mask = np.zeros(SHAPE, np.uint8)
    mask[z:z + size, y:y + size, x:x + size] = 1
    return mask


def write(folder, name, array):
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing((1.0, 1.0, 2.0))
    sitk.WriteImage(image, str(folder / f"{name}.nii.gz"))


def four_cases(tmp_path):
    """hit, miss, true negative, false positive. Model A predicts nothing in the missed case; model B finds that
    lesion 2 voxels off."""
    empty = np.zeros(SHAPE, np.uint8)
    refs = {"hit": blob(4, 4, 4), "miss": blob(8, 12, 12), "negative": empty, "false_positive": empty}
    a = {"hit": blob(4, 4, 5), "miss": empty, "negative": empty, "false_positive": blob(2, 18, 18, 2)}
    b = dict(a, miss=blob(8, 12, 14))
    for folder, content in (("refs", refs), ("a", a), ("b", b)):
        for case, array in content.items():
            write(tmp_path / folder, case, array)
    model = tmp_path / "dataset"
    model.mkdir()
    (model / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "lesion": 1}}))
    return model


def test_evaluate_summary_states_coverage_and_penalises_the_miss(tmp_path, capsys):
    """Fault 4: the printed summary said HD95 0.8 mm for the model that missed, 2.1 mm for the one that found it."""
    model = four_cases(tmp_path)
    printed = {}
    for name in ("a", "b"):
        assert main(["evaluate", str(tmp_path / name), str(tmp_path / "refs"), "--model", str(model),
                     "--out", str(tmp_path / f"{name}.csv")]) == 0
        printed[name] = capsys.readouterr().out
    summary_a = aggregate(read_evaluation(tmp_path / "a.csv"))["lesion"]
    summary_b = aggregate(read_evaluation(tmp_path / "b.csv"))["lesion"]
    assert summary_a["hd95"]["n"] == summary_b["hd95"]["n"] == 4           # no case left out of HD95
    assert summary_a["hd95"]["mean"] > summary_b["hd95"]["mean"]            # the miss costs the worst value
    diagonal = math.sqrt(16 ** 2 * 4 + 24 ** 2 * 2)
    miss = [r for r in read_evaluation(tmp_path / "a.csv") if r.case_id == "miss"][0]
    assert miss.metrics["hd95"] == np.float64(diagonal) or abs(miss.metrics["hd95"] - diagonal) < 1e-6
    text = printed["a"]
    assert "lesion: Dice" in text                                       # the first line names the target
    assert "cases: 4 (2 with an empty reference, 2 with an empty prediction, 1 both empty)" in text
    assert "HD95" in text and "mean over 4/4 cases, 3 scored by the empty-mask convention" in text
    assert "precision" in text and "2/4 cases; 2 left out: nothing predicted" in text
    assert "recall" in text and "2/4 cases; 2 left out: reference empty" in text
    assert "BraTS 2023" in text and "Metrics Reloaded" in text


def test_compare_uses_paired_cases_and_says_when_sets_differ(tmp_path):
    four_cases(tmp_path)
    schema = LabelSchema.create(["lesion"])
    rows_a = evaluate_folders(tmp_path / "a", tmp_path / "refs", schema)
    rows_b = evaluate_folders(tmp_path / "b", tmp_path / "refs", schema)
    table = comparison_table(rows_a, rows_b, ["A", "B"])
    hd95 = next(line for line in table.splitlines() if line.strip().startswith("hd95"))
    assert hd95.rstrip().endswith("4/4")
    precision = next(line for line in table.splitlines() if line.strip().startswith("precision"))
    assert "2/4 (2 left out: 1 nothing predicted (first), 1 nothing predicted (both))" in precision
    fewer = [r for r in rows_b if r.case_id != "miss"]                 # B evaluated on fewer cases
    table = comparison_table(rows_a, fewer, ["A", "B"])
    assert "the evaluations cover different cases: only A: miss; only B: none" in table
    dice = next(line for line in table.splitlines() if line.strip().startswith("dice"))
    assert "3/4 (1 left out: only in the first evaluation)" in dice
    png = comparison_picture(rows_a, fewer, ["A", "B"], tmp_path / "c.png")
    assert png.is_file() and png.stat().st_size > 1000
