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
    """Metrics per case (Dice, NSD) for both models; with ``slice_view`` ({image, reference, prediction_a,
    prediction_b} arrays (z, y, x) and a title) also the slice with the largest reference lesion."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = list(dict.fromkeys(r.target for r in rows_a))
    panels = 2 + (3 if slice_view else 0)
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 4.2))
    colors = ("#7f8c9a", "#d9534f")
    cases = list(dict.fromkeys(r.case_id for rows in (rows_a, rows_b) for r in rows if r.target == targets[0]))
    for ax, metric in zip(axes[:2], ("dice", "nsd")):
        for index, (rows, name) in enumerate(zip((rows_a, rows_b), names)):
            by_case = {r.case_id: r.metrics[metric] for r in rows if r.target == targets[0]}
            present = [c for c in cases if c in by_case]  # each bar at its own case: sets may differ
            x = np.array([cases.index(c) for c in present], float) + (index - 0.5) * 0.35
            ax.bar(x, [by_case[c] for c in present], width=0.35, color=colors[index], label=name)
        ax.set_xticks(range(len(cases)))
        ax.set_xticklabels(cases, rotation=60, ha="right", fontsize=7)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{metric.upper()} per case ({targets[0]})")
        ax.legend(fontsize=8)
    if slice_view:
        reference = slice_view["reference"]
        z = int(np.argmax(reference.reshape(reference.shape[0], -1).sum(axis=1)))
        image = slice_view["image"][z]
        low, high = np.percentile(image, [1, 99])
        for ax, key, title in zip(axes[2:], ("reference", "prediction_a", "prediction_b"),
                                  ("reference", names[0], names[1])):
            ax.imshow(image, cmap="gray", vmin=low, vmax=high)
            mask = slice_view[key][z]
            if mask.any():
                ax.contour(mask.astype(float), levels=[0.5], colors=["#ffcc00" if key == "reference" else "#ff3333"])
            ax.set_title(f"{title} (slice {z})")
            ax.axis("off")
    pair = paired(rows_a, rows_b, targets[0], "dice")
    counts = (f"{len(pair['cases'])} case(s) evaluated for both; "
              f"{sum(pair['left_out'].values())} left out" if pair["left_out"] else
              f"{len(pair['cases'])} case(s), the same for both models")
    title = slice_view.get("title", "") if slice_view else f"{names[0]} vs {names[1]}"
    fig.suptitle(f"{title}\n({counts}; bars per case, no mean is compared across different cases)")
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return out_png


def slice_view_for_case(case_id: str, image_path: Path, reference_path: Path, prediction_a: Path, prediction_b: Path,
                        target_value: int, reference_value: Optional[int] = None) -> dict:
    from backsplit.io.readers import read_image

    image, _ = read_image(image_path, case_id)
    reference, _ = read_image(reference_path, case_id, "reference")
    a, _ = read_image(prediction_a, case_id, "prediction")
    b, _ = read_image(prediction_b, case_id, "prediction")
    return {"image": image, "reference": reference == (reference_value or target_value),
            "prediction_a": a == target_value, "prediction_b": b == target_value, "title": f"case {case_id}"}
