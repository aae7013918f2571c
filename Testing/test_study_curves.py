"""Learning curves of study units: from the unit log's progress events, else from nnU-Net's own logger in the
checkpoint (a unit run by hand without its log). The checkpoint's ``logging`` dict is written by nnU-Net's real
``MetaLogger`` (its ``get_checkpoint()`` is what nnUNetTrainer saves), so the fallback reads nnU-Net's format."""

from __future__ import annotations

import json

import pytest

from backsplit.runtime.progress import ProgressEvent, format_event_line
from backsplit.study.curves import curve_from_checkpoint, curve_from_log, unit_curve

EPOCHS = [  # train loss, val loss, per-class pseudo Dice (target first), learning rate, seconds
    (0.60, 0.18, [0.0, 0.0, 0.72], 0.01, 30.0),
    (0.01, 0.16, [0.25, 0.0, 0.79], 0.0085, 28.0),
]


@pytest.fixture()
def model_folder(tmp_path):
    import torch
    from nnunetv2.training.logging.nnunet_logger import MetaLogger

    logger = MetaLogger(str(tmp_path), resume=False)
    start = 1000.0
    for epoch, (train, val, dice, lr, seconds) in enumerate(EPOCHS):
        logger.log("epoch_start_timestamps", start, epoch)
        logger.log("train_losses", train, epoch)
        logger.log("val_losses", val, epoch)
        logger.log("dice_per_class_or_region", dice, epoch)
        logger.log("mean_fg_dice", sum(dice) / len(dice), epoch)   # also logs ema_fg_dice, as in nnU-Net
        logger.log("lrs", lr, epoch)
        logger.log("epoch_end_timestamps", start + seconds, epoch)
        start += seconds
    folder = tmp_path / "BackSplitTrainer__nnUNetPlans__2d"
    (folder / "fold_0").mkdir(parents=True)
    torch.save({"network_weights": {}, "logging": logger.local_logger.get_checkpoint()},
               folder / "fold_0" / "checkpoint_final.pth")
    return folder


def _log_text() -> str:
    lines = ["some nnU-Net output"]
    for epoch, (train, val, dice, lr, seconds) in enumerate(EPOCHS, start=1):
        lines.append(format_event_line(ProgressEvent("epoch", f"epoch {epoch}", epoch, len(EPOCHS), {
            "epoch": epoch, "train_loss": train, "val_loss": val, "pseudo_dice": dice, "learning_rate": lr,
            "epoch_time": seconds, "ema_fg_dice": None})))
    return "\n".join(lines)


def test_checkpoint_logging_gives_the_rows_the_log_gives(model_folder):
    from_checkpoint = curve_from_checkpoint(model_folder)
    from_log = curve_from_log(_log_text())
    assert [r["epoch"] for r in from_checkpoint] == [1, 2]
    assert [r["target_pseudo_dice"] for r in from_checkpoint] == [0.0, 0.25]
    assert [json.loads(r["pseudo_dice_all"]) for r in from_checkpoint] == [[0.0, 0.0, 0.72], [0.25, 0.0, 0.79]]
    assert [r["epoch_time"] for r in from_checkpoint] == pytest.approx([30.0, 28.0])
    assert from_checkpoint[1]["ema_fg_dice"] == pytest.approx(0.9 * 0.24 + 0.1 * (1.04 / 3))
    for a, b in zip(from_checkpoint, from_log):
        for key in ("epoch", "train_loss", "val_loss", "target_pseudo_dice", "learning_rate", "pseudo_dice_all"):
            assert a[key] == pytest.approx(b[key]) if isinstance(a[key], float) else a[key] == b[key], key


def test_unit_curve_prefers_the_log_and_falls_back_to_the_checkpoint(model_folder, tmp_path):
    log = tmp_path / "log.txt"
    assert len(unit_curve(log, model_folder)) == 2                    # no log: the checkpoint
    log.write_text(_log_text().replace('"epoch": 2', '"epoch": 3'))   # a log with events wins
    assert [r["epoch"] for r in unit_curve(log, model_folder)] == [1, 3]
    log.write_text("no events here\n")
    assert [r["epoch"] for r in unit_curve(log, model_folder)] == [1, 2]
    assert unit_curve(log, tmp_path / "no model") == []
