"""The study's PNG plots (matplotlib, Agg backend): paired per-case differences, learning curves, detection curves."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from backsplit.study.stats import METRICS, case_scores, compare, froc_points, paired_values, per_case


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def paired_differences(rows: Sequence[dict], arms: Sequence[str], reference: str, target: str, path: Path,
                       metrics: Sequence[str] = ("dice", "nsd", "lesion_f1", "fp_lesions")) -> Path:
    """Per metric: each arm's per-case differences to the reference (dots), their mean and bootstrap 95 % CI."""
    plt = _pyplot()
    others = [a for a in arms if a != reference]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 3.6), squeeze=False)
    rng = np.random.default_rng(0)
    for ax, metric in zip(axes[0], metrics):
        for x, arm in enumerate(others):
            _, a, r, _, _ = paired_values(per_case(rows, arm, target, metric),
                                          per_case(rows, reference, target, metric))
            if a.size:
                ax.scatter(x + rng.uniform(-0.15, 0.15, a.size), a - r, s=12, alpha=0.6)
            c = compare(rows, arm, reference, target, metric)
            if math.isfinite(c.ci_low):
                ax.errorbar([x], [c.difference], yerr=[[c.difference - c.ci_low], [c.ci_high - c.difference]],
                            fmt="D", color="black", capsize=4)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(range(len(others)), others, rotation=30, ha="right", fontsize=8)
        label, higher = METRICS[metric]
        ax.set_title(f"{label}: arm - {reference}\n({'higher' if higher else 'lower'} is better)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def learning_curves(curves: Sequence[dict], arms: Sequence[str], path: Path) -> Path:
    """Mean over folds and seeds per epoch: validation loss and the target's pseudo-Dice, one line per arm."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for arm in arms:
        by_epoch: dict[int, list[tuple[float, float]]] = {}
        for row in curves:
            if row["arm"] == arm:
                by_epoch.setdefault(int(row["epoch"]), []).append((float(row["val_loss"] or "nan"),
                                                                  float(row["target_pseudo_dice"] or "nan")))
        if not by_epoch:
            continue
        epochs = sorted(by_epoch)
        axes[0].plot(epochs, [np.nanmean([v[0] for v in by_epoch[e]]) for e in epochs], label=arm)
        axes[1].plot(epochs, [np.nanmean([v[1] for v in by_epoch[e]]) for e in epochs], label=arm)
    axes[0].set(title="validation loss", xlabel="epoch")
    axes[1].set(title="target pseudo-Dice (validation patches)", xlabel="epoch")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def detection_curves(rows: Sequence[dict], lesion_rows: Sequence[dict], arms: Sequence[str], target: str,
                     path: Path) -> Path:
    """Left: FROC-style lesion recall vs FP lesions per case as the minimum predicted lesion volume grows.
    Right: case-level ROC of the lesion score (scikit-learn's roc_curve) when both classes are present."""
    from sklearn.metrics import roc_curve

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for arm in arms:
        runs = sum(1 for r in rows if r["arm"] == arm and r["target"] == target)
        points = froc_points(lesion_rows, arm, target, runs)
        if points:
            axes[0].plot([p[2] for p in points], [p[1] for p in points], marker=".", label=arm)
        scores = case_scores(rows, arm, target)
        labels = [v[1] for v in scores.values() if math.isfinite(v[0])]
        if labels and any(labels) and not all(labels):
            fpr, tpr, _ = roc_curve(labels, [v[0] for v in scores.values() if math.isfinite(v[0])])
            axes[1].plot(fpr, tpr, label=arm)
    axes[0].set(title="lesion detection (min. predicted lesion volume varied)", xlabel="FP lesions per case",
                ylabel="lesion-wise recall")
    axes[1].set(title="case-level ROC (lesion present)", xlabel="1 - specificity", ylabel="sensitivity")
    axes[1].plot([0, 1], [0, 1], color="grey", lw=0.6)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
