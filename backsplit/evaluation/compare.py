"""Compare two models (e.g. binary vs BackSplit) on the same cases: a text table and a PNG picture."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from backsplit.evaluation.evaluate import CONVENTION_NOTE, EvaluationRow, aggregate, fmt, left_out_reason, reasons_text

TABLE_METRICS = ("dice", "hd95", "nsd", "precision", "recall")


def paired(rows_a: Sequence[EvaluationRow], rows_b: Sequence[EvaluationRow], target: str, metric: str) -> dict:
    """The cases on which both models have a finite ``metric`` for ``target`` and their values, and the cases left
    out with the reason: only one model has the case, or the metric is undefined for one of them."""
    a = {r.case_id: r.metrics for r in rows_a if r.target == target}
    b = {r.case_id: r.metrics for r in rows_b if r.target == target}
    cases, reasons = [], {}

    def leave(reason: str) -> None:
        reasons[reason] = reasons.get(reason, 0) + 1

    for case in list(a) + [c for c in b if c not in a]:
        if case not in b or case not in a:
            leave("only in the first evaluation" if case in a else "only in the second evaluation")
            continue
        va, vb = a[case][metric], b[case][metric]
        if math.isfinite(va) and math.isfinite(vb):
            cases.append(case)
        else:
            sides = [(which, m) for which, m, v in (("first", a[case], va), ("second", b[case], vb))
                     if not math.isfinite(v)]
            which = "both" if len(sides) == 2 else sides[0][0]
            leave(f"{left_out_reason(metric, sides[0][1])} ({which})")
    return {"cases": cases, "a": [a[c][metric] for c in cases], "b": [b[c][metric] for c in cases],
            "left_out": reasons, "all": len(set(a) | set(b))}


def comparison_table(rows_a: Sequence[EvaluationRow], rows_b: Sequence[EvaluationRow], names: Sequence[str]) -> str:
    """Both models on the same cases: for each metric the means over the cases where both have a value (paired, so
    no mean is set against a mean over other cases), the paired difference, the cases covered and those left out
    with the reason; lesion counts; per-case Dice."""
    summary = [aggregate(rows_a), aggregate(rows_b)]
    lines = []
    for target in dict.fromkeys(list(summary[0]) + list(summary[1])):
        cases_a = {r.case_id for r in rows_a if r.target == target}
        cases_b = {r.case_id for r in rows_b if r.target == target}
        lines.append(f"target: {target}  ({names[0]}: {len(cases_a)} cases, {names[1]}: {len(cases_b)} cases, "
                     f"in both: {len(cases_a & cases_b)})")
        if cases_a != cases_b:
            lines.append(f"  the evaluations cover different cases: only {names[0]}: "
                         f"{', '.join(sorted(cases_a - cases_b)) or 'none'}; only {names[1]}: "
                         f"{', '.join(sorted(cases_b - cases_a)) or 'none'}; means below use the common cases only")
        lines.append(f"  {'metric':24s}" + "".join(f"{n:>16s}" for n in names) + f"{'difference':>12s}  cases")
        for metric in TABLE_METRICS:
            pair = paired(rows_a, rows_b, target, metric)
            n = len(pair["cases"])
            mean_a = float(np.mean(pair["a"])) if n else math.nan
            mean_b = float(np.mean(pair["b"])) if n else math.nan
            left = reasons_text(pair["left_out"]) if pair["left_out"] else ""
            unit = " (mm)" if metric == "hd95" else ""
            lines.append(f"  {metric + unit:24s}{fmt(mean_a):>16s}{fmt(mean_b):>16s}{fmt(mean_b - mean_a):>12s}  "
                         f"{n}/{pair['all']}" + (f" ({sum(pair['left_out'].values())} left out: {left})"
                                                  if left else ""))
        for metric in ("detected_lesions", "missed_lesions", "false_positive_lesions"):
            lines.append(f"  {metric.replace('_', ' '):24s}" +
                         "".join(f"{s.get(target, {}).get(metric, '-'):>16}" for s in summary))
        lines.append(f"  {'reference lesions':24s}" +
                     "".join(f"{s.get(target, {}).get('reference_lesions', '-'):>16}" for s in summary))
        lines.append("  Dice per case:")
        by_case = [{r.case_id: r.metrics['dice'] for r in rows if r.target == target} for rows in (rows_a, rows_b)]
        for case in dict.fromkeys(list(by_case[0]) + list(by_case[1])):
            lines.append(f"    {case:22s}" + "".join(f"{fmt(d.get(case, float('nan'))):>16s}" for d in by_case))
    lines.append("Means are over the cases where both models have a value (paired); difference = second - first. "
                 f"Conventions: {CONVENTION_NOTE}.")
    return "\n".join(lines)


def comparison_picture(rows_a: Sequence[EvaluationRow], rows_b: Sequence[EvaluationRow], names: Sequence[str],
                       out_png: Path, slice_view: Optional[dict] = None) -> Path:
    """Write the comparison figure (``backsplit.evaluation.compare_figure.comparison_figure``: per-case Dice as
    pairs, the paired mean difference with its bootstrap CI, lesion counts; with ``slice_view`` the reference and
    both predictions on one slice with every class drawn, and one legend) as a PNG; returns its path."""
    import matplotlib.pyplot as plt

    from backsplit.evaluation.compare_figure import comparison_figure

    fig = comparison_figure(rows_a, rows_b, names, slice_view)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)
    return out_png


def slice_view_for_case(case_id: str, image_path: Path, reference_path: Path, prediction_a: Path, prediction_b: Path,
                        target_value: int, reference_value: Optional[int] = None) -> dict:
    """What the picture's slice panels need, every array (z, y, x) re-oriented to LPS (``slices.read_lps``): the
    image, its spacing (x, y, z) mm, the full labelmaps ``labels_reference|a|b`` and their class tables
    ``table_reference|a|b`` (each predictions folder's labels.json; without one, ``target_value`` alone is drawn
    as the target), plus the boolean target masks ``reference`` / ``prediction_a`` / ``prediction_b``. Raises
    InputError (naming the case and file) for a missing or unreadable file."""
    from backsplit.evaluation.slices import read_label_table, read_lps

    image, spacing = read_lps(image_path, case_id)
    view = {"image": image, "spacing": spacing, "title": f"case {case_id}"}
    reference_value = reference_value or target_value
    target_only = {str(target_value): {"name": "lesion", "role": "target", "color": [0.95, 0.2, 0.15]}}
    for key, path, what in (("reference", reference_path, "reference"), ("a", prediction_a, "prediction"),
                            ("b", prediction_b, "prediction")):
        labels, _ = read_lps(path, case_id, what)
        view[f"labels_{key}"] = labels
        if key != "reference":
            view[f"table_{key}"] = read_label_table(Path(path).parent) or target_only
        mask_value = reference_value if key == "reference" else target_value
        view["reference" if key == "reference" else f"prediction_{key}"] = labels == mask_value
    # The reference is drawn with model B's classes when it numbers the target like B (a reference dataset exported
    # with the same targets and support structures); otherwise only its target.
    same_numbering = reference_value == target_value and view["table_b"].get(str(target_value), {}).get("role") \
        == "target"
    view["table_reference"] = view["table_b"] if same_numbering else {str(reference_value): target_only[
        str(target_value)]}
    return view
