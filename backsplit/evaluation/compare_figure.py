"""The picture of ``backsplit compare``: two models on the same cases, readable without the table. Top row: per-case
Dice as paired dots (a line per case from model A to model B) and the paired mean difference B - A of Dice and NSD
with the bootstrap 95 % CI the study uses; lesion counts under it. Bottom row (with a slice view): reference, A and B
on the slice with the largest reference lesion, every class drawn (targets filled, support structures muted), the
reference lesion outlined on all three. One legend for the whole figure.

``comparison_figure`` returns the matplotlib figure (tests read it before saving); ``backsplit.evaluation.compare``
saves it. Colours of the models: Okabe-Ito blue and orange (colour-blind safe).
"""

from __future__ import annotations

import math
import textwrap
from typing import Optional, Sequence

import numpy as np

from backsplit.evaluation.evaluate import CONVENTION_NOTE, EvaluationRow, aggregate

MODEL_COLORS = ("#0072B2", "#E69F00")      # Okabe-Ito blue (A), orange (B)
DIFFERENCE_METRICS = (("dice", "Dice"), ("nsd", "NSD"))
MIN_CASES_FOR_INTERVAL = 5
# Old-style slice views (boolean target masks only) are drawn with this class table.
MASK_TABLE = {"1": {"name": "lesion", "role": "target", "color": [0.95, 0.2, 0.15]}}


def paired_difference(rows_a: Sequence[EvaluationRow], rows_b: Sequence[EvaluationRow], target: str,
                      metric: str) -> dict:
    """Per-case differences B - A of ``metric`` on the cases where both have a finite value (the pairing of
    ``compare.paired``), their mean and, with at least MIN_CASES_FOR_INTERVAL cases, the paired bootstrap 95 % CI
    (``backsplit.study.stats.bootstrap_ci``: the study's seed and resamples, so compare and study agree); ``text``
    says it in words."""
    from backsplit.study.stats import bootstrap_ci

    values_a = {r.case_id: r.metrics[metric] for r in rows_a if r.target == target}
    values_b = {r.case_id: r.metrics[metric] for r in rows_b if r.target == target}
    cases = [c for c in values_a if c in values_b and math.isfinite(values_a[c]) and math.isfinite(values_b[c])]
    a = np.asarray([values_a[c] for c in cases], float)
    b = np.asarray([values_b[c] for c in cases], float)
    n = a.size
    mean = float(np.mean(b - a)) if n else math.nan
    low, high = bootstrap_ci(b, a) if n >= MIN_CASES_FOR_INTERVAL else (math.nan, math.nan)
    label = dict(DIFFERENCE_METRICS).get(metric, metric)
    if not n:
        text = f"{label}: no case with a value in both evaluations"
    elif math.isfinite(low):
        text = f"{label}: mean difference {mean:+.3f} (95 % CI {low:+.3f} to {high:+.3f}), {n} paired cases"
    else:
        text = f"{label}: mean difference {mean:+.3f}, {n} paired case(s): too few cases for an interval"
    return {"differences": b - a, "mean": mean, "ci": (low, high), "n": n, "text": text, "cases": cases}


def lesion_counts_text(rows_a: Sequence[EvaluationRow], rows_b: Sequence[EvaluationRow], target: str) -> str:
    """'lesions found 18 / 16 of 25, false-positive lesions 38 / 14' (A / B, pooled over each model's cases)."""
    a, b = aggregate(rows_a).get(target, {}), aggregate(rows_b).get(target, {})
    reference = {a.get("reference_lesions"), b.get("reference_lesions")} - {None}
    of = f" of {reference.pop()}" if len(reference) == 1 else ""
    return (f"lesions found {a.get('detected_lesions', '-')} / {b.get('detected_lesions', '-')}{of}, "
            f"false-positive lesions {a.get('false_positive_lesions', '-')} / {b.get('false_positive_lesions', '-')}")


def _per_case_panel(ax, rows_a, rows_b, names, target) -> list[str]:
    """Slope graph of Dice per case; returns the footnote lines about cases only one model has."""
    a = {r.case_id: r.metrics["dice"] for r in rows_a if r.target == target}
    b = {r.case_id: r.metrics["dice"] for r in rows_b if r.target == target}
    both = [c for c in a if c in b and math.isfinite(a[c]) and math.isfinite(b[c])]
    for case in both:
        ax.plot([0, 1], [a[case], b[case]], color="#999999", lw=0.8, zorder=1)
    ax.scatter([0] * len(both), [a[c] for c in both], color=MODEL_COLORS[0], s=28, zorder=2)
    ax.scatter([1] * len(both), [b[c] for c in both], color=MODEL_COLORS[1], s=28, zorder=2)
    if len(both) <= 8:
        for case in both:
            ax.annotate(case, (1, b[case]), xytext=(6, 0), textcoords="offset points", fontsize=7, va="center")
    notes = []
    for side, (mine, other, name) in enumerate(((a, b, names[0]), (b, a, names[1]))):
        alone = [c for c in mine if c not in other and math.isfinite(mine[c])]
        if alone:
            ax.scatter([side] * len(alone), [mine[c] for c in alone], facecolors="none", edgecolors=MODEL_COLORS[side],
                       s=28, zorder=2)
            notes.append(f"only {name} has {', '.join(alone)} (hollow, not paired)")
    ax.set_xticks([0, 1], list(names))
    ax.set_xlim(-0.3, 1.45)
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel("Dice")
    ax.set_title(f"Dice per case ({target}; a line joins the same case)", fontsize=10)
    return notes


def _difference_panel(ax, rows_a, rows_b, names, target) -> list[str]:
    rng = np.random.default_rng(0)
    texts = []
    for x, (metric, _) in enumerate(DIFFERENCE_METRICS):
        d = paired_difference(rows_a, rows_b, target, metric)
        if d["n"]:
            ax.scatter(x + rng.uniform(-0.12, 0.12, d["n"]), d["differences"], color="#555555", s=14, alpha=0.7)
            low, high = d["ci"]
            if math.isfinite(low):
                ax.errorbar([x + 0.25], [d["mean"]], yerr=[[d["mean"] - low], [high - d["mean"]]], fmt="D",
                            color="black", capsize=4, markersize=6)
            else:
                ax.plot([x + 0.25], [d["mean"]], "D", color="black", markersize=6)
        texts.append(d["text"])
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xticks(range(len(DIFFERENCE_METRICS)), [label for _, label in DIFFERENCE_METRICS])
    ax.set_xlim(-0.5, len(DIFFERENCE_METRICS) - 0.3)
    ax.set_ylabel(f"{names[1]} - {names[0]} (higher is better)")
    ax.set_title(f"paired difference {names[1]} - {names[0]}", fontsize=10)
    texts.append(lesion_counts_text(rows_a, rows_b, target) + f" ({names[0]} / {names[1]})")
    ax.text(0.0, -0.14, "\n".join(texts), transform=ax.transAxes, fontsize=8, va="top")
    return texts


def _panel_labels(view: dict, key: str):
    """(labels (z, y, x), class table) of one slice-view panel; old views carry boolean target masks only."""
    labels = view.get(f"labels_{key}")
    if labels is not None:
        return labels, view.get(f"table_{key}") or MASK_TABLE
    return np.asarray(view[{"reference": "reference"}.get(key, f"prediction_{key}")], dtype=np.uint8), MASK_TABLE


def _slice_panels(fig, axes, view: dict, names) -> set:
    """Reference, A and B on the slice with the largest reference lesion; returns {(table id, value)} drawn."""
    from backsplit.evaluation.slices import draw_slice, largest_slice, values_with_role

    ref_labels, ref_table = _panel_labels(view, "reference")
    reference_lesion = np.isin(ref_labels, values_with_role(ref_table, "target"))
    z = largest_slice(reference_lesion)
    spacing = tuple(view.get("spacing") or (1.0, 1.0, 1.0))
    drawn = []
    for ax, key, title in zip(axes, ("reference", "a", "b"), ("reference", names[0], names[1])):
        labels, table = _panel_labels(view, key)
        present = draw_slice(ax, view["image"][z], labels[z], table, spacing, reference_lesion[z])
        drawn += [(table, v) for v in present]
        subtitle = ""
        if key != "reference" and not values_with_role(table, "support"):
            subtitle = "\nbinary baseline: no support structures"
        ax.set_title(f"{title} (slice {z}){subtitle}", fontsize=10)
        if key != "reference":
            lesion = np.isin(labels, values_with_role(table, "target"))
            if not lesion[z].any():
                ax.text(0.5, 0.96, f"no lesion predicted on this slice;\nwhole case: {int(lesion.sum())} voxels",
                        transform=ax.transAxes, ha="center", va="top", fontsize=8, color="white",
                        bbox={"facecolor": "black", "alpha": 0.6, "edgecolor": "none"})
    return drawn


def comparison_figure(rows_a: Sequence[EvaluationRow], rows_b: Sequence[EvaluationRow], names: Sequence[str],
                      slice_view: Optional[dict] = None):
    """The figure (matplotlib, Agg) of two evaluations of the same cases; see the module docstring. ``slice_view``
    (``compare.slice_view_for_case``): ``image`` (z, y, x) in HU, ``spacing`` (x, y, z) mm, and per panel
    ``labels_reference|a|b`` (z, y, x) with ``table_reference|a|b`` (labels.json tables), or the older boolean
    ``reference`` / ``prediction_a`` / ``prediction_b`` target masks. The caller saves and closes it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    from backsplit.evaluation.slices import legend_handles

    targets = list(dict.fromkeys(r.target for r in list(rows_a) + list(rows_b)))
    target = targets[0]
    fig = plt.figure(figsize=(12, 8.6 if slice_view else 4.8), layout="constrained")
    grid = fig.add_gridspec(2 if slice_view else 1, 6, height_ratios=(1, 1.25) if slice_view else None)
    top = [fig.add_subplot(grid[0, 0:3]), fig.add_subplot(grid[0, 3:6])]
    notes = _per_case_panel(top[0], rows_a, rows_b, names, target)
    _difference_panel(top[1], rows_a, rows_b, names, target)
    handles = [Line2D([], [], marker="o", ls="", color=MODEL_COLORS[i], label=f"model {'AB'[i]}: {names[i]}")
               for i in range(2)]
    handles.append(Line2D([], [], marker="D", ls="", color="black", label="mean difference (95 % CI when >= "
                                                                          f"{MIN_CASES_FOR_INTERVAL} cases)"))
    if slice_view:
        bottom = [fig.add_subplot(grid[1, 2 * i:2 * i + 2]) for i in range(3)]
        drawn = _slice_panels(fig, bottom, slice_view, names)
        seen: dict[str, tuple[dict, int]] = {}
        for table, value in drawn:          # one legend entry per class name
            seen.setdefault(table[str(value)]["name"], (table, value))
        merged = {str(i): table[str(value)] for i, (table, value) in enumerate(seen.values(), start=1)}
        handles += legend_handles(merged, [int(k) for k in merged])
    height = fig.get_figheight()
    bottom = 0.95 / height                      # inches kept free under the panels for the legend and footnote
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, bottom), ncol=min(4, len(handles)),
               fontsize=8, frameon=False)
    a_cases = {r.case_id for r in rows_a if r.target == target}
    b_cases = {r.case_id for r in rows_b if r.target == target}
    same = "the same cases for both" if a_cases == b_cases else f"{len(a_cases & b_cases)} in both"
    title = f"{names[0]} vs {names[1]}, {len(a_cases | b_cases)} test cases ({same})"
    if slice_view and slice_view.get("title"):
        title += f"; slices: {slice_view['title']}"
    fig.suptitle(title, fontsize=12)
    footnote = notes + [f"Target {target}. Differences are {names[1]} - {names[0]} on the cases both have. "
                        f"Conventions: {CONVENTION_NOTE}."]
    fig.text(0.01, 0.0, "\n".join(textwrap.fill(line, 170) for line in footnote), fontsize=7, va="bottom",
             color="#444444")
    fig.get_layout_engine().set(h_pad=0.12, rect=(0, bottom, 1, 1 - bottom))   # (left, bottom, width, height)
    return fig
