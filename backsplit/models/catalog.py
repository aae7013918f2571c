"""The models under the models location: one ``ModelEntry`` per folder with a manifest, newest first.

Key metrics come from the manifest's ``metrics`` (a study or evaluation may record them there) or from an
evaluation table saved in the model folder (``evaluation.csv`` or ``evaluation/*.csv`` as written by
``backsplit evaluate``: mean Dice of the target rows).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from backsplit.errors import InputError
from backsplit.models.trust import is_trusted
from backsplit.models.usage import model_users
from backsplit.training.manifest import MANIFEST_NAME, read_manifest


@dataclass
class ModelEntry:
    name: str
    folder: Path
    manifest: dict = field(repr=False)
    trusted: bool = True
    size_bytes: int = 0
    metrics: dict = field(default_factory=dict)

    @property
    def targets(self) -> list[str]:
        return [c["name"] for c in (self.manifest.get("schema") or {}).get("targets", [])] or \
            [k for k, v in sorted(self.manifest.get("labels", {}).items(), key=lambda kv: kv[1]) if int(v) > 0]

    @property
    def supports(self) -> list[str]:
        return [c["name"] for c in (self.manifest.get("schema") or {}).get("supports", [])]

    @property
    def channels(self) -> list[str]:
        names = self.manifest.get("channel_names") or {}
        return [names[k] for k in sorted(names, key=int)]

    @property
    def created(self) -> str:
        return str(self.manifest.get("created") or "")

    @property
    def parent_name(self) -> Optional[str]:
        parent = self.manifest.get("parent_model")
        if isinstance(parent, dict):
            return parent.get("name")
        return Path(self.manifest["pretrained_from"]).name if self.manifest.get("pretrained_from") else None

    def fields(self) -> dict:
        """Everything the manager shows about the model (the command line's ``show`` and the Slicer list)."""
        m = self.manifest
        return {
            "name": self.name, "folder": str(self.folder), "variant": m.get("variant"),
            "targets": self.targets, "supports": self.supports, "channels": self.channels,
            "dataset": m.get("source_dataset"), "dataset_version": m.get("dataset_version", 1),
            "parent_model": self.parent_name, "configuration": m.get("configuration"), "folds": m.get("folds"),
            "epochs": f"{m.get('completed_epochs', m.get('epochs'))} of {m.get('epochs')}",
            "learning_rate": m.get("initial_lr"), "training_time_s": m.get("training_time_s"),
            "metrics": self.metrics or None, "created": self.created, "size_mb": round(self.size_bytes / 1e6, 1),
            "trusted": self.trusted, "model_id": m.get("model_id"),
        }

    def line(self) -> str:
        task = ", ".join(self.targets) + (f" | supports {', '.join(self.supports)}" if self.supports else "")
        dice = f" Dice {self.metrics['dice_mean']:.3f}" if "dice_mean" in self.metrics else ""
        flag = "" if self.trusted else "  [untrusted]"
        return (f"{self.name:<28} {task:<40} {self.manifest.get('source_dataset') or '?'} "
                f"v{self.manifest.get('dataset_version', 1)}  {self.manifest.get('configuration')}  "
                f"{self.created[:16]}  {self.size_bytes / 1e6:.1f} MB{dice}{flag}")


def folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def model_metrics(folder: Path, manifest: dict) -> dict:
    if isinstance(manifest.get("metrics"), dict):
        return dict(manifest["metrics"])
    tables = [Path(folder) / "evaluation.csv"] + sorted((Path(folder) / "evaluation").glob("*.csv"))
    for table in tables:
        if not table.is_file():
            continue
        try:
            with table.open(newline="", encoding="utf-8") as handle:
                values = [float(row["dice"]) for row in csv.DictReader(handle) if row.get("dice") not in (None, "")]
        except (OSError, ValueError, KeyError):
            continue
        values = [v for v in values if math.isfinite(v)]
        if values:
            return {"dice_mean": sum(values) / len(values), "rows": len(values), "source": table.name}
    return {}


def read_entry(folder: Path) -> ModelEntry:
    folder = Path(folder)
    manifest = read_manifest(folder)
    return ModelEntry(folder.name, folder, manifest, is_trusted(folder), folder_size(folder),
                      model_metrics(folder, manifest))


def list_models(models_dir: Path) -> list[ModelEntry]:
    """Every model folder directly under ``models_dir`` (hidden and unreadable ones skipped), newest first."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return []
    entries = []
    for folder in models_dir.iterdir():
        if folder.name.startswith(".") or not (folder / MANIFEST_NAME).is_file():
            continue
        try:
            entries.append(read_entry(folder))
        except InputError:
            continue
    return sorted(entries, key=lambda e: (e.created, e.name), reverse=True)


def find_model(models_dir: Path, name_or_path: str) -> ModelEntry:
    """A model by name (in ``models_dir``) or by folder path; InputError listing the known names otherwise."""
    candidate = Path(name_or_path)
    if not (candidate.is_dir() and (candidate / MANIFEST_NAME).is_file()):
        candidate = Path(models_dir) / name_or_path
    if (candidate / MANIFEST_NAME).is_file():
        return read_entry(candidate)
    known = ", ".join(e.name for e in list_models(models_dir)) or "none"
    raise InputError(f"there is no model '{name_or_path}' in '{models_dir}' (models: {known})")


def models_for_channels(entries: Sequence[ModelEntry], n_channels: int) -> list[ModelEntry]:
    """The models an input of ``n_channels`` volumes can use, newest first (the Apply panel's choice)."""
    usable = [e for e in entries if len(e.channels) == int(n_channels)]
    return sorted(usable, key=lambda e: (e.created, e.name), reverse=True)


def in_use_by(entry: ModelEntry) -> list[str]:
    return model_users(entry.folder)


def model_choices(models_dir: Path, n_channels: int) -> list[tuple[str, Path]]:
    """(label, folder) for the Apply panel's model list: models taking ``n_channels`` volumes, newest first; the
    label names the task, dataset version, date and whether the model is untrusted."""
    return [(choice_label(entry), entry.folder) for entry in models_for_channels(list_models(models_dir), n_channels)]


def choice_label(entry: "ModelEntry") -> str:
    """One line for a model list: name, task, dataset version, date, and '[untrusted]' for imported models."""
    task = ", ".join(entry.targets) + (f" + {len(entry.supports)} support(s)" if entry.supports else "")
    flag = "" if entry.trusted else " [untrusted]"
    return f"{entry.name} ({task}; dataset v{entry.manifest.get('dataset_version', 1)}; {entry.created[:10]}){flag}"
