"""The study report's statistics on hand-made per-case tables with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from backsplit.study.report import build_report, write_report
from backsplit.study.stats import case_detection, compare, froc_points, pooled_detection, verdict_line


def row(arm, case, dice, *, fold=0, seed=1, hd95=1.0, ref=1, det=1, fp=0, score=1.0, nsd=None):
    return {"arm": arm, "fold": str(fold), "seed": str(seed), "case_id": case, "target": "cyst", "dice": str(dice),
            "hd95": str(hd95), "nsd": str(dice if nsd is None else nsd), "reference_lesions": str(ref),
            "detected_lesions": str(det), "missed_lesions": str(ref - det), "false_positive_lesions": str(fp),
            "lesion_score_ml": str(score)}


BINARY = [0.5, 0.6, 0.7, 0.8, 0.9]


def test_constant_improvement_is_claimed_with_exact_numbers():
    rows = [row("binary", f"c{i}", d) for i, d in enumerate(BINARY)]
    rows += [row("backsplit", f"c{i}", d + 0.1) for i, d in enumerate(BINARY)]
    c = compare(rows, "backsplit", "binary", "cyst", "dice")
    assert c.n == 5 and c.difference == pytest.approx(0.1)
    assert (c.ci_low, c.ci_high) == (pytest.approx(0.1), pytest.approx(0.1))
    assert c.p_value == pytest.approx(0.0625)  # exact two-sided signed-rank p for 5 positive differences: 2/32
    assert c.verdict.startswith("better")
    assert "better on Dice (+0.100" in verdict_line([c])


def test_ties_give_no_difference():
    rows = [row(arm, f"c{i}", d) for arm in ("binary", "backsplit") for i, d in enumerate(BINARY)]
    c = compare(rows, "backsplit", "binary", "cyst", "dice")
    assert c.difference == 0 and (c.ci_low, c.ci_high) == (0, 0) and c.p_value == 1.0
    assert c.verdict.startswith("no difference")
    assert "no difference supported" in verdict_line([c])


def test_mixed_differences_match_scipy_and_are_not_claimed():
    diffs = np.array([0.3, -0.2, 0.1, -0.15, 0.05, 0.02, -0.04])
    base = np.linspace(0.3, 0.7, diffs.size)
    rows = [row("binary", f"c{i}", b) for i, b in enumerate(base)]
    rows += [row("backsplit", f"c{i}", b + d) for i, (b, d) in enumerate(zip(base, diffs))]
    c = compare(rows, "backsplit", "binary", "cyst", "dice")
    ci = stats.bootstrap((base + diffs, base), lambda x, y, axis=-1: np.mean(x - y, axis=axis), paired=True,
                         n_resamples=9999, rng=0).confidence_interval
    assert (c.ci_low, c.ci_high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert c.p_value == pytest.approx(stats.wilcoxon(base + diffs, base).pvalue)
    assert c.ci_low < 0 < c.ci_high and c.verdict.startswith("no difference")


def test_arm_missing_cases_and_empty_cases_are_counted_not_guessed():
    rows = [row("binary", f"c{i}", d) for i, d in enumerate(BINARY)]
    rows += [row("backsplit", f"c{i}", d) for i, d in enumerate(BINARY[:3])]          # c3, c4 missing
    rows.append(row("binary", "neg", 1.0, ref=0, det=0, fp=0, hd95=0.0))            # empty reference, empty prediction
    rows.append(row("backsplit", "neg", 0.0, ref=0, det=0, fp=2, hd95=math.inf))    # two false-positive lesions
    dice = compare(rows, "backsplit", "binary", "cyst", "dice")
    assert dice.n == 4 and dice.only_one_arm == 2 and dice.difference == pytest.approx(-0.25)
    hd = compare(rows, "backsplit", "binary", "cyst", "hd95")
    assert hd.n == 3 and hd.left_out == 1  # inf is left out and counted
    recall = compare(rows, "backsplit", "binary", "cyst", "lesion_recall")
    assert recall.n == 3 and recall.left_out == 1  # recall undefined without reference lesions
    f1 = compare(rows, "backsplit", "binary", "cyst", "lesion_f1")
    assert f1.n == 3 and f1.left_out == 1  # binary: no lesion either way -> F1 undefined
    fp = compare(rows, "backsplit", "binary", "cyst", "fp_lesions")
    assert fp.n == 4 and fp.difference == pytest.approx(0.5)
    pooled = pooled_detection(rows, "backsplit", "cyst")
    assert pooled == {"cases": 4, "case_runs": 4, "reference_lesions": 3, "detected": 3, "false_positive": 2,
                      "recall": 1.0, "fp_per_case": 0.5, "f1": pytest.approx(6 / 8)}
    one = compare(rows[:1] + [row("backsplit", "c0", 0.9)], "backsplit", "binary", "cyst", "dice")
    assert one.n == 1 and one.verdict.startswith("not testable")


def test_seeds_are_averaged_per_case_before_pairing():
    rows = [row("binary", "c0", 0.5, seed=1), row("binary", "c0", 0.7, seed=2), row("backsplit", "c0", 0.6),
            row("binary", "c1", 0.2), row("backsplit", "c1", 0.2)]
    c = compare(rows, "backsplit", "binary", "cyst", "dice")
    assert c.n == 2 and c.mean_reference == pytest.approx(0.4)


def test_case_decision_calibrates_on_the_other_folds_only():
    # fold 0: positives with scores 2, 4; negative 0.5 | fold 1: positives 3, 5; negatives 1, 6
    cases = [("a", 0, 2.0, 1), ("b", 0, 4.0, 1), ("c", 0, 0.5, 0), ("d", 1, 3.0, 1), ("e", 1, 5.0, 1),
             ("f", 1, 1.0, 0), ("g", 1, 6.0, 0)]
    rows = [row("binary", c, 0.5, fold=f, score=s, ref=r, det=r) for c, f, s, r in cases]
    d = case_detection(rows, "binary", "cyst", sensitivity=1.0)
    # sensitivity 1: the smallest positive score of the other fold -> fold 0 uses 3.0, fold 1 uses 2.0
    assert d["min_volume_ml"] == {0: 3.0, 1: 2.0}
    # fold 0 (>= 3): a missed, b found, c negative; fold 1 (>= 2): d, e found, f negative, g false positive
    assert (d["true_positive"], d["false_negative"], d["true_negative"], d["false_positive"]) == (3, 1, 2, 1)
    assert d["sensitivity"] == pytest.approx(0.75) and d["specificity"] == pytest.approx(2 / 3)
    from sklearn.metrics import roc_auc_score
    assert d["auroc"] == pytest.approx(roc_auc_score([1, 1, 0, 1, 1, 0, 0], [2, 4, 0.5, 3, 5, 1, 6]))
    only_positive = case_detection([r for r in rows if r["reference_lesions"] == "1"], "binary", "cyst")
    assert math.isnan(only_positive["auroc"]) and "need cases with and without" in only_positive["note"]


def test_froc_points():
    lesions = [{"arm": "a", "target": "cyst", "kind": "reference", "volume_ml": "1", "matched_ml": "0.5",
                "matched": ""},
               {"arm": "a", "target": "cyst", "kind": "reference", "volume_ml": "1", "matched_ml": "0", "matched": ""},
               {"arm": "a", "target": "cyst", "kind": "predicted", "volume_ml": "0.5", "matched_ml": "",
                "matched": "1"},
               {"arm": "a", "target": "cyst", "kind": "predicted", "volume_ml": "2", "matched_ml": "", "matched": "0"}]
    assert froc_points(lesions, "a", "cyst", 2, [0.0, 1.0, 3.0]) == [(0.0, 0.5, 0.5), (1.0, 0.0, 0.5), (3.0, 0.0, 0.0)]


def test_report_text_and_files(tmp_path):
    import csv

    rows = [row("binary", f"c{i}", d, score=d) for i, d in enumerate(BINARY)]
    rows += [row("backsplit", f"c{i}", d + 0.1) for i, d in enumerate(BINARY[:4])]
    text = build_report(rows, [], [], {"arms": [{"name": "binary"}, {"name": "backsplit"}]})
    assert "backsplit vs binary: better on Dice" in text and "| backsplit | Dice | 4 (1 in one arm only) |" in text
    results = tmp_path / "results"
    results.mkdir()
    with (results / "per_case.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    path = write_report(results, tmp_path / "report", note="1 unit failed")
    assert "Incomplete study" in path.read_text(encoding="utf-8")
    assert (tmp_path / "report" / "paired_differences.png").stat().st_size > 1000
    assert (tmp_path / "report" / "detection_curves.png").is_file()
