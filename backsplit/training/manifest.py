"""The model folder's manifest, ``backsplit_model.json``: what inference and users need to know about a model.

A model folder is nnU-Net's trainer output folder (``dataset.json``, ``plans.json``, ``fold_<f>/checkpoint_*.pth``,
logs, ``progress.png``) plus this manifest. Checkpoints are loaded with ``torch.load(weights_only=False)`` by
nnU-Net: treat model folders as trusted input only.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

from backsplit import __version__
from backsplit.errors import InputError

MANIFEST_NAME = "backsplit_model.json"
FORMAT_VERSION = 1


def build_manifest(*, dataset_meta: dict, plans: dict, configuration: str, folds: list[str], trainer: str,
                   plans_name: str, epochs: int, iterations_per_epoch: int, initial_lr: float, sampling: str,
                   pretrained_from: Optional[str], source_dataset: str, training_time_s: float, device: str,
                   completed_epochs: int, twin_model: Optional[str] = None,
                   training_orientation: Optional[str] = None, batch_size: Optional[int] = None,
                   lineage: Optional[dict] = None) -> dict:
    """The manifest; ``lineage`` (``models/lineage.py``: model id, dataset version, parent model, weights
    transfer) is merged in."""
    import nnunetv2
    import torch

    section = dataset_meta.get("backsplit", {})
    return {
        "format_version": FORMAT_VERSION,
        "kind": "backsplit-model",
        "variant": section.get("variant", "external"),
        "schema": section.get("schema"),
        "labels": dataset_meta["labels"],
        "channel_names": dataset_meta["channel_names"],
        "file_ending": dataset_meta.get("file_ending", ".nii.gz"),
        "configuration": configuration,
        "folds": folds,
        "trainer": trainer,
        "plans_name": plans_name,
        "checkpoint": "checkpoint_final.pth",
        "epochs": epochs,
        "completed_epochs": completed_epochs,
        "iterations_per_epoch": iterations_per_epoch,
        "initial_lr": initial_lr,
        "sampling": sampling,
        "pretrained_from": pretrained_from,
        "source_dataset": source_dataset,
        "twin_model": twin_model,
        "training_orientation": training_orientation,
        "intensity_properties": plans.get("foreground_intensity_properties_per_channel", {}),
        "patch_size": plans["configurations"][configuration].get("patch_size"),
        "batch_size": batch_size or plans["configurations"][configuration].get("batch_size"),
        "spacing": plans["configurations"][configuration].get("spacing"),
        "versions": {"backsplit": __version__, "nnunetv2": getattr(nnunetv2, "__version__", _dist_version("nnunetv2")),
                     "torch": torch.__version__},
        "device": device,
        "training_time_s": round(training_time_s, 1),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(lineage or {}),
    }


def _dist_version(name: str) -> str:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return "unknown"


def write_manifest(model_folder: Path, manifest: dict) -> Path:
    path = Path(model_folder) / MANIFEST_NAME
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.replace(path)
    return path


def read_manifest(model_folder: Path) -> dict:
    path = Path(model_folder) / MANIFEST_NAME
    if not path.is_file():
        raise InputError(f"this folder is not a BackSplit model (no {MANIFEST_NAME}); choose a model folder written "
                         "by BackSplit training", path=str(model_folder))
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{MANIFEST_NAME} cannot be parsed ({exc})", path=str(path)) from None
    if manifest.get("kind") != "backsplit-model":
        raise InputError(f"{MANIFEST_NAME} does not describe a BackSplit model", path=str(path))
    return manifest
