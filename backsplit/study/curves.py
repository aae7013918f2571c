"""Learning curves of a study unit: one row per epoch (``CURVE_FIELDS`` of ``runtask``).

The unit's log (``log.txt``, written by the executor) carries the trainer's per-epoch progress events; where it is
missing or has none (a unit run by hand without its log, a SLURM log lost), the same per-epoch values come from
nnU-Net's own logger, which every nnU-Net checkpoint holds under ``logging`` (``LocalLogger.my_fantastic_logging``:
``mean_fg_dice``, ``ema_fg_dice``, ``dice_per_class_or_region``, ``train_losses``, ``val_losses``, ``lrs``,
``epoch_start_timestamps``, ``epoch_end_timestamps``, one entry per finished epoch).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from backsplit.runtime.progress import parse_event_line


def curve_from_log(log_text: str) -> list[dict]:
    """Per-epoch rows from a training log's 'epoch' events (the last report of an epoch wins: resumed runs)."""
    epochs: dict[int, dict] = {}
    for line in log_text.splitlines():
        event = parse_event_line(line)
        if event is None or event.stage != "epoch":
            continue
        data = event.data
        epochs[int(data["epoch"])] = _row(int(data["epoch"]), data.get("train_loss"), data.get("val_loss"),
                                          data.get("pseudo_dice"), data.get("ema_fg_dice"),
                                          data.get("learning_rate"), data.get("epoch_time"))
    return [epochs[k] for k in sorted(epochs)]


def curve_from_logging(logging: dict) -> list[dict]:
    """Per-epoch rows from nnU-Net's checkpoint ``logging`` dict (epochs numbered from 1, as the events are).
    Lists of unequal length (a checkpoint written mid-epoch) are cut to the epochs every list covers."""
    keys = ("train_losses", "val_losses", "dice_per_class_or_region", "ema_fg_dice", "lrs",
            "epoch_start_timestamps", "epoch_end_timestamps")
    n = min(len(logging.get(k) or []) for k in keys)
    rows = []
    for i in range(n):
        seconds = float(logging["epoch_end_timestamps"][i]) - float(logging["epoch_start_timestamps"][i])
        rows.append(_row(i + 1, logging["train_losses"][i], logging["val_losses"][i],
                         logging["dice_per_class_or_region"][i], logging["ema_fg_dice"][i], logging["lrs"][i],
                         seconds))
    return rows


def curve_from_checkpoint(model_folder: Path) -> list[dict]:
    """Rows from the newest checkpoint (final, else latest) of the single fold in ``model_folder`` (nnU-Net's
    trainer output folder); empty when there is none. Checkpoints are read as nnU-Net reads them (trusted files)."""
    checkpoint = _checkpoint(Path(model_folder))
    if checkpoint is None:
        return []
    import torch

    data = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return curve_from_logging(data.get("logging") or {}) if isinstance(data, dict) else []


def unit_curve(log: Path, model_folder: Path) -> list[dict]:
    """The unit's learning curve: from its log's events, else from its checkpoint's nnU-Net logging."""
    rows = curve_from_log(log.read_text(encoding="utf-8", errors="replace")) if log.is_file() else []
    return rows or curve_from_checkpoint(model_folder)


def _checkpoint(model_folder: Path) -> Optional[Path]:
    for name in ("checkpoint_final.pth", "checkpoint_latest.pth"):
        found = sorted(model_folder.glob(f"fold_*/{name}"))
        if found:
            return found[0]
    return None


def _row(epoch, train_loss, val_loss, dice, ema, lr, seconds) -> dict:
    dice = [float(d) for d in (dice or [float("nan")])]
    return {"epoch": int(epoch), "train_loss": train_loss, "val_loss": val_loss, "target_pseudo_dice": dice[0],
            "ema_fg_dice": ema, "learning_rate": lr, "epoch_time": seconds,
            "pseudo_dice_all": json.dumps([round(d, 4) for d in dice])}
