"""Compare two models (e.g. binary vs BackSplit) on the same cases: a text table and a PNG picture."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .evaluation import EvaluationRow, aggregate, fmt

TABLE_METRICS = ("dice", "hd95", "nsd", "precision", "recall")


def comparison_table(rows_a: Sequence[EvaluationRow], rows_b: Sequence[EvaluationRow], names: Sequence[str]) -> str:
    """Mean (sd) per metric and lesion counts for each target class, models side by side, then per-case Dice."""
    summary = [aggregate(rows_a), aggregate(rows_b)]
    lines = []
    for target in summary[0]:
        lines.append(f"target: {target}  ({summary[0][target]['cases']} cases)")
        lines.append(f"  {'metric':24s}" + "".join(f"{n:>22s}" for n in names))
        for metric in TABLE_METRICS:
            cells = []
            for s in summary:
                entry = s.get(target, {}).get(metric)
                if entry is None:
                    cells.append("-")
                    continue
                extra = f" [{entry['left_out']} n/a]" if entry["left_out"] else ""
                cells.append(f"{fmt(entry['mean'])} ({fmt(entry['sd'])}){extra}")
            unit = " (mm)" if metric == "hd95" else ""
            lines.append(f"  {metric + unit:24s}" + "".join(f"{c:>22s}" for c in cells))
        for metric in ("detected_lesions", "missed_lesions", "false_positive_lesions"):
            lines.append(f"  {metric.replace('_', ' '):24s}" +
                         "".join(f"{s.get(target, {}).get(metric, '-'):>22}" for s in summary))
        lines.append(f"  {'reference lesions':24s}{summary[0][target]['reference_lesions']:>22}")
        lines.append("  Dice per case:")
        by_case = [{r.case_id: r.metrics['dice'] for r in rows if r.target == target} for rows in (rows_a, rows_b)]
        for case in by_case[0]:
            lines.append(f"    {case:22s}" + "".join(f"{fmt(d.get(case, float('nan'))):>22s}" for d in by_case))
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
    for ax, metric in zip(axes[:2], ("dice", "nsd")):
        for index, (rows, name) in enumerate(zip((rows_a, rows_b), names)):
            selected = [r for r in rows if r.target == targets[0]]
            values = [r.metrics[metric] for r in selected]
            x = np.arange(len(values)) + (index - 0.5) * 0.35
            ax.bar(x, values, width=0.35, color=colors[index], label=name)
        cases = [r.case_id for r in rows_a if r.target == targets[0]]
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
    fig.suptitle(slice_view.get("title", "") if slice_view else f"{names[0]} vs {names[1]}")
    fig.tight_layout()
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return out_png


def slice_view_for_case(case_id: str, image_path: Path, reference_path: Path, prediction_a: Path, prediction_b: Path,
                        target_value: int, reference_value: Optional[int] = None) -> dict:
    from .readers import read_image

    image, _ = read_image(image_path, case_id)
    reference, _ = read_image(reference_path, case_id, "reference")
    a, _ = read_image(prediction_a, case_id, "prediction")
    b, _ = read_image(prediction_b, case_id, "prediction")
    return {"image": image, "reference": reference == (reference_value or target_value),
            "prediction_a": a == target_value, "prediction_b": b == target_value, "title": f"case {case_id}"}
