"""Checks on an exported dataset before any training work starts."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from backsplit.errors import InputError
from backsplit.datasets.export import read_dataset_json
from backsplit.labels.schema import LabelSchema

DATASET_FOLDER = re.compile(r"^Dataset(\d{3})_(.+)$")


@dataclass
class TrainingDataset:
    folder: Path
    dataset_id: int
    name: str
    meta: dict                      # dataset.json
    case_ids: list[str]

    @property
    def folder_name(self) -> str:
        return self.folder.name

    @property
    def variant(self) -> str:
        return self.meta.get("backsplit", {}).get("variant", "external")

    @property
    def schema(self) -> Optional[LabelSchema]:
        section = self.meta.get("backsplit", {}).get("schema")
        return LabelSchema.from_json(section) if section else None

    @property
    def target_labels(self) -> list[int]:
        """Label values of the target classes (all foreground labels for a dataset without a BackSplit section)."""
        schema = self.schema
        if schema is not None:
            return schema.target_values
        return sorted(v for k, v in self.meta["labels"].items() if int(v) > 0 and k != "ignore")

    @property
    def twin_folder(self) -> Optional[Path]:
        twin = self.meta.get("backsplit", {}).get("twin")
        return self.folder.parent / twin if twin else None

    def content_hash(self) -> str:
        """Changes when the dataset is exported again (dataset.json, file names, sizes and times)."""
        digest = hashlib.sha256((self.folder / "dataset.json").read_bytes())
        for sub in ("imagesTr", "labelsTr"):
            for path in sorted((self.folder / sub).iterdir()):
                stat = path.stat()
                digest.update(f"{sub}/{path.name}:{stat.st_size}:{int(stat.st_mtime)}".encode())
        return digest.hexdigest()[:16]


def load_training_dataset(folder: Path) -> TrainingDataset:
    """Check that ``folder`` is an nnU-Net raw dataset we can train on; name the problem and the fix otherwise."""
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise InputError("the dataset folder does not exist; choose the DatasetNNN_Name folder written by export",
                         path=str(folder))
    match = DATASET_FOLDER.match(folder.name)
    if not match:
        raise InputError("the folder name is not an nnU-Net dataset name (DatasetNNN_Name); choose the folder written "
                         "by BackSplit export", path=str(folder))
    meta = read_dataset_json(folder)
    for sub in ("imagesTr", "labelsTr"):
        if not (folder / sub).is_dir():
            raise InputError(f"the dataset has no {sub} folder; export it again", path=str(folder))
    ending = meta["file_ending"]
    labels = sorted(p.name[: -len(ending)] for p in (folder / "labelsTr").iterdir() if p.name.endswith(ending))
    if not labels:
        raise InputError("the dataset has no training cases (labelsTr is empty); export it again", path=str(folder))
    if len(labels) != int(meta["numTraining"]):
        raise InputError(f"dataset.json says {meta['numTraining']} training cases but labelsTr holds {len(labels)}; "
                         "the export is incomplete, export it again", path=str(folder))
    n_channels = len(meta["channel_names"])
    for case in labels:
        for channel in range(n_channels):
            if not (folder / "imagesTr" / f"{case}_{channel:04d}{ending}").is_file():
                raise InputError(f"image channel {channel} is missing; export the dataset again", case=case,
                                 path=str(folder / "imagesTr"))
    values = sorted(int(v) for v in meta["labels"].values())
    if values != list(range(len(values))):
        raise InputError(f"the label values in dataset.json are not consecutive from 0 ({values}); nnU-Net needs "
                         "consecutive labels", path=str(folder / "dataset.json"))
    return TrainingDataset(folder, int(match.group(1)), match.group(2), meta, labels)
