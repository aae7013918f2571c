"""The study's PNG plots (matplotlib, Agg backend): paired per-case differences, learning curves, detection curves.

Each ``*_figure`` function returns the figure (tests read it); the function of the same name without the suffix
saves it and returns the path. What the plots never do: put losses of arms with different label sets on one axis
(each arm's loss gets its own panel and scale), draw an arm that predicted no lesion as a gain on false positives
(greyed, hollow, no mean), or hide an arm behind an identical one (identical arms are drawn once, named together).
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from backsplit.study.stats import METRICS, case_scores, compare, froc_points, paired_values, per_case

# Gains that silence alone gives (an arm that predicts nothing has no false positive): no mean for silent arms.
SILENCE_GAINS = ("fp_lesions",)
STYLES = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ((0, (5, 1)), "v"), ((0, (1, 1)), "P")]
SILENT_NOTE = ("an arm that predicted no lesion in any case is drawn grey and hollow, without a mean on false-positive "
               "lesions: fewer false positives or a Dice of 1 on cases without a lesion are then no detection gain")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def silent_arms(rows: Sequence[dict], arms: Sequence[str], target: str) -> list[str]:
    """Arms whose every per-case row for ``target`` has a predicted volume of 0 ml (``predicted_ml``): they predicted
    no target voxel in any case."""
    silent = []
    for arm in arms:
        values = [r.get("predicted_ml") for r in rows if r.get("arm") == arm and r.get("target") == target]
        if values and all(_number(v) == 0 for v in values):
            silent.append(arm)
    return silent


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def identical_groups(signatures: dict[str, object]) -> list[list[str]]:
    """Arms grouped by equal signatures (their per-case values), in the arms' order: [[a], [b, c], ...]."""
    groups: dict[str, list[str]] = {}
    for arm, signature in signatures.items():
        groups.setdefault(repr(signature), []).append(arm)
    return list(groups.values())


def paired_differences_figure(rows: Sequence[dict], arms: Sequence[str], reference: str, target: str,
                              metrics: Sequence[str] = ("dice", "nsd", "lesion_f1", "fp_lesions")):
    """Per metric: each arm's per-case differences to ``reference`` (dots; x for cases without a reference lesion),
    their mean and bootstrap 95 % CI (diamond with bars). Identical arms share one column; silent arms (see
    ``silent_arms``) are grey and hollow, without a mean on SILENCE_GAINS."""
    from matplotlib.lines import Line2D

    plt = _pyplot()
    others = [a for a in arms if a != reference]
    signatures = {arm: [sorted(per_case(rows, arm, target, m).items()) for m in metrics] for arm in others}
    groups = identical_groups(signatures)
    silent = set(silent_arms(rows, arms, target))
    no_lesion = {r["case_id"] for r in rows if _number(r.get("reference_lesions")) == 0}
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.9 * len(metrics), 4.4), squeeze=False, layout="constrained")
    rng = np.random.default_rng(0)
    for ax, metric in zip(axes[0], metrics):
        ticks = []
        for x, group in enumerate(groups):
            arm = group[0]
            cases, a, r, _, _ = paired_values(per_case(rows, arm, target, metric),
                                              per_case(rows, reference, target, metric))
            quiet = arm in silent
            colour = "#9a9a9a" if quiet else f"C{x % 10}"
            jitter = x + rng.uniform(-0.15, 0.15, a.size)
            lesion = np.array([c not in no_lesion for c in cases], bool)
            if a.size:
                ax.scatter(jitter[lesion], (a - r)[lesion], s=14, alpha=0.7,
                           facecolors="none" if quiet else colour, edgecolors=colour)
                ax.scatter(jitter[~lesion], (a - r)[~lesion], s=18, marker="x", color=colour, alpha=0.8)
            c = compare(rows, arm, reference, target, metric)
            if math.isfinite(c.ci_low) and not (quiet and metric in SILENCE_GAINS):
                ax.errorbar([x], [c.difference], yerr=[[c.difference - c.ci_low], [c.ci_high - c.difference]],
                            fmt="D", color="black", capsize=4)
            name = textwrap.fill(" = ".join(group), 22)
            ticks.append(f"{name}\nn={a.size}" + ("\npredicted no lesion" if quiet else ""))
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(range(len(groups)), ticks, rotation=0, fontsize=7)
        label, higher = METRICS[metric]
        ax.set_title(f"{label}: arm - {reference}\n({'higher' if higher else 'lower'} is better)", fontsize=9)
    handles = [Line2D([], [], marker="o", ls="", color="C0", label="one case (difference to " + reference + ")"),
               Line2D([], [], marker="x", ls="", color="C0",
                      label="case without a reference lesion (Dice 1 or 0 by convention)"),
               Line2D([], [], marker="D", ls="-", color="black", label="mean, bootstrap 95 % CI")]
    if silent:
        handles.append(Line2D([], [], marker="o", ls="", markerfacecolor="none", color="#9a9a9a",
                              label="arm that predicted no lesion"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    if silent:
        fig.suptitle(textwrap.fill(f"Warning: {', '.join(sorted(silent))}: {SILENT_NOTE}.", 170), fontsize=8,
                     color="#8a1c1c")
    return fig


def paired_differences(rows: Sequence[dict], arms: Sequence[str], reference: str, target: str, path: Path,
                       metrics: Sequence[str] = ("dice", "nsd", "lesion_f1", "fp_lesions")) -> Path:
    """``paired_differences_figure`` saved as a PNG at ``path``."""
    return _save(paired_differences_figure(rows, arms, reference, target, metrics), path)


def _runs(curves: Sequence[dict], arm: str) -> dict[tuple[str, str], dict[int, dict]]:
    """(fold, seed) -> epoch -> row, for one arm."""
    runs: dict[tuple[str, str], dict[int, dict]] = {}
    for row in curves:
        if row["arm"] == arm:
            runs.setdefault((str(row.get("fold")), str(row.get("seed"))), {})[int(row["epoch"])] = row
    return runs


def learning_curves_figure(curves: Sequence[dict], arms: Sequence[str], iterations_per_epoch: Optional[int] = None):
    """Top: the target's pseudo-Dice (the same target in every arm, so comparable) over optimiser steps (epoch x
    ``iterations_per_epoch``; epochs when unknown), mean over folds x seeds with a min-max band. Bottom: each arm's
    validation loss in its own panel and scale (label sets differ between arms: their losses are not comparable)."""
    plt = _pyplot()
    present = [arm for arm in arms if _runs(curves, arm)]
    fig = plt.figure(figsize=(max(9.0, 2.6 * len(present)), 6.8), layout="constrained")
    grid = fig.add_gridspec(2, max(1, len(present)), height_ratios=(1.4, 1))
    top = fig.add_subplot(grid[0, :])
    step = iterations_per_epoch or 1
    unit = "optimiser steps (epoch x iterations)" if iterations_per_epoch else "epoch"
    counts = set()
    for index, arm in enumerate(present):
        runs = _runs(curves, arm)
        folds, seeds = {k[0] for k in runs}, {k[1] for k in runs}
        counts.add((len(folds), len(seeds)))
        epochs = sorted({e for run in runs.values() for e in run})
        dice = np.array([[_number(run[e]["target_pseudo_dice"]) if e in run else math.nan for e in epochs]
                         for run in runs.values()])
        x = np.array(epochs) * step
        style, marker = STYLES[index % len(STYLES)]
        with np.errstate(all="ignore"):
            top.plot(x, np.nanmean(dice, axis=0), color=f"C{index % 10}", ls=style, marker=marker, markersize=3,
                     label=arm)
            top.fill_between(x, np.nanmin(dice, axis=0), np.nanmax(dice, axis=0), color=f"C{index % 10}",
                             alpha=0.15, lw=0)
        ax = fig.add_subplot(grid[1, index])
        for run in runs.values():
            run_epochs = sorted(run)
            ax.plot(np.array(run_epochs) * step, [_number(run[e]["val_loss"]) for e in run_epochs],
                    color=f"C{index % 10}", lw=0.8, alpha=0.7)
        ax.set_title(arm, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlabel(unit.split(" (")[0], fontsize=8)
    n = ", ".join(f"{f} folds x {s} seed{'s' if s > 1 else ''}" for f, s in sorted(counts)) or "no runs"
    top.set(title=f"target pseudo-Dice on validation patches (mean, band: min-max; n = {n})", xlabel=unit,
            ylabel="pseudo-Dice")
    fig.legend(*top.get_legend_handles_labels(), loc="outside right upper", fontsize=8, frameon=False)
    if present:
        fig.text(0.5, 0.0, "bottom row: validation loss, one panel per arm, own scale: label sets differ, not "
                           "comparable across arms (each line one fold and seed)", ha="center", va="bottom",
                 fontsize=8)
        fig.get_layout_engine().set(rect=(0, 0.03, 1, 0.97))
    return fig


def learning_curves(curves: Sequence[dict], arms: Sequence[str], path: Path,
                    iterations_per_epoch: Optional[int] = None) -> Path:
    """``learning_curves_figure`` saved as a PNG at ``path``."""
    return _save(learning_curves_figure(curves, arms, iterations_per_epoch), path)


def detection_curves_figure(rows: Sequence[dict], lesion_rows: Sequence[dict], arms: Sequence[str], target: str):
    """Left: FROC-style lesion recall vs false-positive lesions per case as the minimum predicted lesion volume grows.
    Right: case-level ROC of the lesion score (scikit-learn's roc_curve), the legend with each arm's AUROC
    (roc_auc_score). Identical curves are drawn once with all their arms' names; line style and marker differ per
    curve (not colour alone)."""
    from sklearn.metrics import roc_auc_score, roc_curve  # scikit-learn: ROC points and AUROC, not hand-written

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), layout="constrained")
    froc, roc = {}, {}
    positives = negatives = 0
    silent = set(silent_arms(rows, arms, target))
    for arm in arms:
        runs = sum(1 for r in rows if r["arm"] == arm and r["target"] == target)
        points = froc_points(lesion_rows, arm, target, runs)
        if any(math.isfinite(p[1]) for p in points):
            froc[arm] = [(p[2], p[1]) for p in points]
        scores = [v for v in case_scores(rows, arm, target).values() if math.isfinite(v[0])]
        labels = [v[1] for v in scores]
        if labels and any(labels) and not all(labels):
            positives, negatives = max(positives, sum(labels)), max(negatives, len(labels) - sum(labels))
            fpr, tpr, _ = roc_curve(labels, [v[0] for v in scores])
            roc[arm] = (list(zip(fpr.round(6), tpr.round(6))), roc_auc_score(labels, [v[0] for v in scores]))
    for ax, curves in ((axes[0], froc), (axes[1], roc)):
        for index, group in enumerate(identical_groups(curves)):
            points = curves[group[0]] if ax is axes[0] else curves[group[0]][0]
            label = " = ".join(group) + (f" (AUROC {curves[group[0]][1]:.2f})" if ax is axes[1] else "")
            label += ": predicted no lesion" if group[0] in silent else ""
            style, marker = STYLES[index % len(STYLES)]
            ax.plot([p[0] for p in points], [p[1] for p in points], ls=style, marker=marker, markersize=4,
                    color=f"C{index % 10}", label=label, alpha=0.85)
        if curves:
            ax.legend(fontsize=7, loc="lower right")
    axes[0].set(title="lesion detection (minimum predicted lesion volume varied)",
                xlabel="false-positive lesions per case", ylabel="lesion-wise recall")
    if not froc:
        axes[0].text(0.5, 0.5, "no per-lesion rows (results/lesions.csv)", transform=axes[0].transAxes,
                     ha="center", va="center", fontsize=9, color="#555555")
    title = "case-level ROC (lesion present)"
    if roc and min(positives, negatives) < 10:
        title += f"\n{positives} cases with a lesion, {negatives} without:\nfew points, descriptive only"
    elif not roc:
        title += "\nneeds cases with and without a lesion"
    axes[1].set(title=title, xlabel="1 - specificity", ylabel="sensitivity")
    axes[1].title.set_fontsize(9)
    axes[1].plot([0, 1], [0, 1], color="grey", lw=0.6)
    return fig


def detection_curves(rows: Sequence[dict], lesion_rows: Sequence[dict], arms: Sequence[str], target: str,
                     path: Path) -> Path:
    """``detection_curves_figure`` saved as a PNG at ``path``."""
    return _save(detection_curves_figure(rows, lesion_rows, arms, target), path)
