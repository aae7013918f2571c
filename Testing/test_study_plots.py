"""The study's plots and report say what the numbers allow (issue 22): losses of arms with different label sets never
share an axis; an arm that predicted no lesion is not drawn as a gain on false positives; the ROC legend carries
AUROC; identical arms are drawn once with all names; report.md shows no absolute path of the machine it ran on.
Hand-made tables with known answers; figures are read before saving (matplotlib, Agg); no training."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from backsplit.study.plots import (
    detection_curves_figure,
    learning_curves_figure,
    paired_differences_figure,
    silent_arms,
)
from backsplit.study.report import build_report, write_report


def row(arm, case, dice, *, fold=0, ref=1, det=1, fp=0, score=1.0, predicted=1.0):
    return {"arm": arm, "fold": str(fold), "seed": "1", "case_id": case, "target": "cyst", "dice": str(dice),
            "hd95": "1.0", "nsd": str(dice), "reference_lesions": str(ref), "detected_lesions": str(det),
            "missed_lesions": str(ref - det), "false_positive_lesions": str(fp), "lesion_score_ml": str(score),
            "predicted_ml": str(predicted)}


def table() -> list[dict]:
    """6 cases (the last 2 without a lesion); binary has false positives; 'silent' predicts nothing; 'same1' and
    'same2' are identical."""
    rows = []
    for i in range(6):
        ref = 1 if i < 4 else 0
        rows.append(row("binary", f"c{i}", 0.5 + 0.05 * i if ref else 0.0, ref=ref, det=ref, fp=2,
                        score=1.0 + i if ref else 0.5 * i))
        rows.append(row("silent", f"c{i}", 0.0 if ref else 1.0, ref=ref, det=0, fp=0, score=0.0, predicted=0.0))
        for name in ("same1", "same2"):
            rows.append(row(name, f"c{i}", 0.6 + 0.05 * i if ref else 1.0, ref=ref, det=ref, fp=1,
                            score=2.0 + i if ref else 0.1 * i))
    return rows


ARMS = ["binary", "silent", "same1", "same2"]


def test_silent_arm_greyed_without_a_false_positive_gain():
    rows = table()
    assert silent_arms(rows, ARMS, "cyst") == ["silent"]
    fig = paired_differences_figure(rows, ARMS, "binary", "cyst", metrics=("dice", "fp_lesions"))
    dice_ax, fp_ax = fig.axes[:2]
    ticks = [t.get_text() for t in fp_ax.get_xticklabels()]
    assert ticks == ["silent\nn=6\npredicted no lesion", "same1 = same2\nn=6"]   # identical arms drawn once
    diamonds = [line for line in fp_ax.get_lines() if line.get_marker() == "D"]
    assert [round(d.get_xdata()[0]) for d in diamonds] == [1]                  # no mean for the silent arm
    assert len([line for line in dice_ax.get_lines() if line.get_marker() == "D"]) == 2
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "case without a reference lesion (Dice 1 or 0 by convention)" in labels
    assert "arm that predicted no lesion" in labels
    assert "predicted no lesion in any case" in fig.get_suptitle().replace("\n", " ")
    plt.close(fig)


def curves() -> list[dict]:
    out = []
    for arm, loss in (("binary", 0.1), ("backsplit", 1.5)):
        for fold in (0, 1, 2):
            for epoch in (1, 2, 3):
                out.append({"arm": arm, "fold": str(fold), "seed": "1", "epoch": str(epoch),
                            "val_loss": str(loss / epoch), "target_pseudo_dice": str(0.1 * epoch + 0.01 * fold)})
    return out


def test_learning_curves_give_each_arm_its_own_loss_axis_and_steps():
    fig = learning_curves_figure(curves(), ["binary", "backsplit"], iterations_per_epoch=40)
    top, *losses = fig.axes
    assert [ax.get_title() for ax in losses] == ["binary", "backsplit"]      # one loss panel per arm
    assert not any(ax.get_shared_y_axes().joined(losses[0], losses[1]) for ax in losses)
    assert "n = 3 folds x 1 seed" in top.get_title() and top.get_xlabel().startswith("optimiser steps")
    assert list(top.get_lines()[0].get_xdata()) == [40, 80, 120]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["binary", "backsplit"]
    assert any("not comparable across arms" in t.get_text() for t in fig.texts)
    plt.close(fig)


def test_roc_legend_has_auroc_and_identical_arms_once():
    rows = table()
    fig = detection_curves_figure(rows, [], ["binary", "same1", "same2"], "cyst")
    labels = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
    assert labels == ["binary (AUROC 0.56)", "same1 = same2 (AUROC 1.00)"]   # 4.5 of 8 pairs ordered
    assert "4 cases with a lesion, 2 without:\nfew points, descriptive only" in fig.axes[1].get_title()
    plt.close(fig)


def test_report_paths_are_relative_to_the_study_folder(tmp_path):
    study = tmp_path / "study"
    results = study / "results"
    results.mkdir(parents=True)
    rows = table()
    with (results / "per_case.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    meta = {"source": str(tmp_path / "raw" / "Dataset501_Kidney"), "twin": str(study / "data" / "Dataset502_K"),
            "arms": [{"name": a} for a in ARMS]}
    (results / "plan_summary.json").write_text(json.dumps(meta), encoding="utf-8")
    note_dir = str(study / "units" / "u1" / "log.txt")
    text = write_report(results, study / "report", note=f"- `u1`: failed, see {note_dir}").read_text(encoding="utf-8")
    quoted = re.findall(r"`([^`]+)`", text) + re.findall(r"\]\(([^)]+)\)", text)
    assert quoted and not [q for q in quoted if Path(q).is_absolute()]
    assert str(tmp_path) not in text
    assert "Dataset: `Dataset501_Kidney` (binary baseline dataset `data/Dataset502_K`)" in text
    assert "units/u1/log.txt" in text and "binary twin" not in text


def test_report_without_study_folder_shows_names_only():
    text = build_report([], [], [], {"source": "/data/raw/Dataset501_K", "twin": "/data/raw/Dataset502_K"})
    assert "`Dataset501_K`" in text and "/data/" not in text


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")
