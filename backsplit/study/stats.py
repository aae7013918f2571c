"""Statistics of a study, pure over per-case rows (dicts as read from ``results/per_case.csv``).

Per case and metric the value is the mean over seeds. Arms are compared with the binary arm on the cases both
have (paired): Wilcoxon signed-rank test (SciPy, zero differences dropped: Wilcoxon's original method) and a
bootstrap 95 % confidence interval of the mean paired difference (``scipy.stats.bootstrap``, paired, BCa; when all
differences are equal the interval is that value). A difference is claimed only when the interval excludes 0.

Case-level decision (seed paper 003): the score of a case is its predicted lesion volume above the probability
threshold (``lesion_score_ml``); AUROC by scikit-learn. Sensitivity and specificity use the minimum volume that
``backsplit.evaluation.summary.calibrate_min_volume`` picks (the rule of ``backsplit calibrate``) on the out-of-fold
scores of
the *other* folds only, applied to each fold's held-out cases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

import numpy as np

# metric -> (label, higher is better)
METRICS = {
    "dice": ("Dice", True),
    "hd95": ("HD95 (mm)", False),
    "nsd": ("NSD", True),
    "lesion_recall": ("lesion-wise recall", True),
    "fp_lesions": ("FP lesions per case", False),
    "lesion_f1": ("lesion-wise F1", True),
}


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def case_metric(row: dict, metric: str) -> float:
    """One case's value of ``metric``; NaN when undefined (lesion recall without reference lesions, lesion F1 when
    there is neither a reference nor a predicted lesion). HD95 may be inf (one mask empty)."""
    if metric in ("dice", "hd95", "nsd"):
        return _float(row.get(metric))
    reference, detected = _float(row.get("reference_lesions")), _float(row.get("detected_lesions"))
    missed, false_positive = _float(row.get("missed_lesions")), _float(row.get("false_positive_lesions"))
    if metric == "lesion_recall":
        return detected / reference if reference > 0 else math.nan
    if metric == "fp_lesions":
        return false_positive
    if metric == "lesion_f1":
        denominator = 2 * detected + missed + false_positive
        return 2 * detected / denominator if denominator > 0 else math.nan
    raise KeyError(f"unknown metric '{metric}'")


def per_case(rows: Iterable[dict], arm: str, target: str, metric: str) -> dict[str, float]:
    """case_id -> mean over seeds of ``metric`` for ``arm`` and ``target`` (inf kept: any inf seed gives inf)."""
    values: dict[str, list[float]] = {}
    for row in rows:
        if row.get("arm") == arm and row.get("target") == target:
            values.setdefault(row["case_id"], []).append(case_metric(row, metric))
    return {case: float(np.mean(v)) for case, v in values.items()}


@dataclass
class Comparison:
    arm: str
    reference: str
    metric: str
    n: int                       # cases paired and finite in both arms
    left_out: int                # cases in both arms but NaN/inf in one
    only_one_arm: int            # cases present in only one of the two arms
    mean_arm: float
    mean_reference: float
    difference: float            # mean of (arm - reference) over the n cases
    ci_low: float
    ci_high: float
    p_value: float
    verdict: str


def paired_values(arm: dict[str, float], reference: dict[str, float]) -> tuple[list[str], np.ndarray, np.ndarray, int,
                                                                                  int]:
    """Cases in both arms with finite values in both: (cases, arm values, reference values, left out, only one)."""
    common = sorted(set(arm) & set(reference))
    only_one = len(set(arm) ^ set(reference))
    keep = [c for c in common if math.isfinite(arm[c]) and math.isfinite(reference[c])]
    return (keep, np.array([arm[c] for c in keep], float), np.array([reference[c] for c in keep], float),
            len(common) - len(keep), only_one)


def bootstrap_ci(a: np.ndarray, b: np.ndarray, seed: int = 0, resamples: int = 9999) -> tuple[float, float]:
    """Paired bootstrap 95 % CI of mean(a - b) (SciPy, BCa); equal differences give (d, d); < 2 pairs give NaN."""
    from scipy import stats  # SciPy's bootstrap: resampling and BCa correction, not hand-written

    if a.size < 2:
        return math.nan, math.nan
    differences = a - b
    if np.allclose(differences, differences[0]):
        return float(differences[0]), float(differences[0])
    result = stats.bootstrap((a, b), lambda x, y, axis=-1: np.mean(x - y, axis=axis), paired=True,
                             confidence_level=0.95, n_resamples=resamples, method="BCa", rng=seed)
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):   # BCa undefined: fall back to the percentile interval
        result = stats.bootstrap((a, b), lambda x, y, axis=-1: np.mean(x - y, axis=axis), paired=True,
                                 confidence_level=0.95, n_resamples=resamples, method="percentile", rng=seed)
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    return low, high


def wilcoxon_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of the paired differences (SciPy); 1.0 when all differences are 0,
    NaN with fewer than 2 pairs."""
    from scipy import stats

    if a.size < 2:
        return math.nan
    if np.all(a - b == 0):
        return 1.0
    return float(stats.wilcoxon(a, b, zero_method="wilcox").pvalue)


def verdict(metric: str, n: int, ci_low: float, ci_high: float) -> str:
    """Words for one comparison that claim a difference only when the 95 % CI excludes 0."""
    label, higher_better = METRICS[metric]
    if n < 2 or not (math.isfinite(ci_low) and math.isfinite(ci_high)):
        return "not testable (fewer than 2 paired cases)"
    if ci_low > 0 or ci_high < 0:
        higher = ci_low > 0
        better = higher == higher_better
        return f"{'better' if better else 'worse'} ({'higher' if higher else 'lower'} {label}; 95 % CI excludes 0)"
    return "no difference shown (95 % CI includes 0)"


def compare(rows: Sequence[dict], arm: str, reference: str, target: str, metric: str, seed: int = 0) -> Comparison:
    a_all, r_all = per_case(rows, arm, target, metric), per_case(rows, reference, target, metric)
    cases, a, r, left_out, only_one = paired_values(a_all, r_all)
    low, high = bootstrap_ci(a, r, seed)
    def mean(x):
        return float(np.mean(x)) if x.size else math.nan
    return Comparison(arm, reference, metric, len(cases), left_out, only_one, mean(a), mean(r), mean(a - r), low, high,
                      wilcoxon_p(a, r), verdict(metric, len(cases), low, high))


def verdict_line(comparisons: Sequence[Comparison]) -> str:
    """One line per arm: the metrics whose CI excludes 0, or that none does."""
    if not comparisons:
        return "no comparison"
    arm, reference = comparisons[0].arm, comparisons[0].reference
    shown = [c for c in comparisons if c.verdict.startswith(("better", "worse"))]
    testable = [c for c in comparisons if not c.verdict.startswith("not testable")]
    n = max((c.n for c in comparisons), default=0)
    if not testable:
        return f"{arm} vs {reference}: not testable (too few paired cases)"
    if not shown:
        return (f"{arm} vs {reference}: no difference supported by the data (every 95 % CI includes 0; up to {n} "
                "paired cases)")
    parts = [f"{c.verdict.split(' ')[0]} on {METRICS[c.metric][0]} ({c.difference:+.3f}, CI {c.ci_low:+.3f} to "
             f"{c.ci_high:+.3f}, n={c.n})" for c in shown]
    rest = len(testable) - len(shown)
    caution = " (fewer than 10 paired cases: bootstrap intervals are approximate)" if n < 10 else ""
    others = f"; no difference shown on the other {rest}" if rest else ""
    return f"{arm} vs {reference}: " + "; ".join(parts) + others + caution


# ---- lesion detection, pooled ---------------------------------------------------------------------------------

def pooled_detection(rows: Sequence[dict], arm: str, target: str) -> dict:
    """Lesion-wise totals over cases (each case once per seed): recall, FP lesions per case, F1, cases."""
    selected = [r for r in rows if r.get("arm") == arm and r.get("target") == target]
    reference = sum(_float(r["reference_lesions"]) for r in selected)
    detected = sum(_float(r["detected_lesions"]) for r in selected)
    missed = sum(_float(r["missed_lesions"]) for r in selected)
    false_positive = sum(_float(r["false_positive_lesions"]) for r in selected)
    cases = len({r["case_id"] for r in selected})
    runs = len(selected)
    return {"cases": cases, "case_runs": runs, "reference_lesions": int(reference), "detected": int(detected),
            "false_positive": int(false_positive),
            "recall": detected / reference if reference else math.nan,
            "fp_per_case": false_positive / runs if runs else math.nan,
            "f1": 2 * detected / (2 * detected + missed + false_positive) if (detected + missed + false_positive)
            else math.nan}


# ---- case-level decision --------------------------------------------------------------------------------------

def case_scores(rows: Sequence[dict], arm: str, target: str) -> dict[str, tuple[float, bool, int]]:
    """case_id -> (mean lesion score over seeds in ml, lesion present in the reference, fold)."""
    scores: dict[str, list] = {}
    for row in rows:
        if row.get("arm") == arm and row.get("target") == target:
            entry = scores.setdefault(row["case_id"], [[], _float(row["reference_lesions"]) > 0, int(row["fold"])])
            entry[0].append(_float(row.get("lesion_score_ml")))
    return {case: (float(np.nanmean(v[0])) if np.isfinite(v[0]).any() else math.nan, v[1], v[2])
            for case, v in scores.items()}


def case_detection(rows: Sequence[dict], arm: str, target: str, sensitivity: float = 0.95) -> dict:
    """AUROC of the case score, and sensitivity / specificity with per-fold minimum volumes calibrated on the
    other folds' cases. Undefined values are NaN with the reason in ``note``."""
    from sklearn.metrics import roc_auc_score  # scikit-learn's ROC AUC (ties handled as in the Mann-Whitney U)

    from backsplit.evaluation.summary import DecisionRule, calibrate_min_volume

    scores = {c: v for c, v in case_scores(rows, arm, target).items() if math.isfinite(v[0])}
    positives = sum(1 for v in scores.values() if v[1])
    negatives = len(scores) - positives
    result = {"cases": len(scores), "positive": positives, "negative": negatives, "auroc": math.nan,
              "sensitivity": math.nan, "specificity": math.nan, "min_volume_ml": {}, "note": ""}
    if positives and negatives:
        result["auroc"] = float(roc_auc_score([v[1] for v in scores.values()], [v[0] for v in scores.values()]))
    else:
        result["note"] = "AUROC and specificity need cases with and without a lesion"
    tp = fn = tn = fp = 0
    for fold in sorted({v[2] for v in scores.values()}):
        training = [(s, p) for s, p, f in scores.values() if f != fold]
        if not any(p for _, p in training):
            result["note"] = (result["note"] + "; " if result["note"] else "") + \
                f"fold {fold}: no lesion case in the other folds to calibrate on"
            continue
        min_volume = calibrate_min_volume([s for s, _ in training], [p for _, p in training], sensitivity)
        result["min_volume_ml"][fold] = min_volume
        rule = DecisionRule(min_volume_ml=min_volume)
        for score, positive, f in scores.values():
            if f != fold:
                continue
            called = rule.present(score)
            tp += called and positive
            fn += (not called) and positive
            tn += (not called) and (not positive)
            fp += called and (not positive)
    result.update({"true_positive": tp, "false_negative": fn, "true_negative": tn, "false_positive": fp,
                   "sensitivity": tp / (tp + fn) if tp + fn else math.nan,
                   "specificity": tn / (tn + fp) if tn + fp else math.nan})
    return result


def froc_points(lesion_rows: Sequence[dict], arm: str, target: str, n_case_runs: int,
                volumes_ml: Optional[Sequence[float]] = None) -> list[tuple[float, float, float]]:
    """(minimum predicted lesion volume, lesion recall, FP lesions per case) as the minimum volume a predicted
    lesion must have grows: a detection (FROC-style) curve from the per-lesion tables."""
    selected = [r for r in lesion_rows if r.get("arm") == arm and r.get("target") == target]
    matched = np.array([_float(r["matched_ml"]) for r in selected if r["kind"] == "reference"])
    false_positive = np.array([_float(r["volume_ml"]) for r in selected
                               if r["kind"] == "predicted" and str(r["matched"]) in ("0", "0.0")])
    if volumes_ml is None:
        candidates = np.concatenate([matched[matched > 0], false_positive, [0.0]])
        volumes_ml = sorted(set(np.round(candidates, 6).tolist()))
    points = []
    for v in volumes_ml:
        recall = float(np.mean((matched > 0) & (matched >= v))) if matched.size else math.nan
        points.append((float(v), recall, float(np.sum(false_positive >= v)) / max(n_case_runs, 1)))
    return points
