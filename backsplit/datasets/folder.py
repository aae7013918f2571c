"""A typed, read-only view of an exported dataset folder (``DatasetNNN_Name`` with dataset.json, imagesTr,
labelsTr), built from dataset.json by ``layout.read_dataset_json`` and checked before any work starts; as nnU-Net's
``PlansManager`` wraps the plans. Training, preprocessing, the study scan and ``dataset add`` read datasets
through it.

The content identity of a case file is the SHA-256 that export / ``dataset add`` recorded in dataset.json
(``backsplit.files``). A record is used only while it still describes the file (same size, not modified after
dataset.json was written); otherwise, and for datasets exported before records existed, the file itself is the
evidence (``content_hash``: size and time; the study scan: its own cached SHA-256, ``study.hashing.FileHasher``).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from backsplit.datasets.layout import CASE_FOLDERS, DATASET_JSON, read_dataset_json
from backsplit.errors import InputError
from backsplit.labels.schema import LabelSchema

DATASET_FOLDER = re.compile(r"^Dataset(\d{3})_(.+)$")


@dataclass(frozen=True)
class DatasetFolder:
    folder: Path                    # absolute path of DatasetNNN_Name
    dataset_id: int
    name: str
    meta: dict                      # dataset.json as read (treat as read-only)
    case_ids: list[str]             # from labelsTr, sorted

    @property
    def folder_name(self) -> str:
        """``DatasetNNN_Name``."""
        return self.folder.name

    @property
    def section(self) -> dict:
        """dataset.json's ``backsplit`` section (empty for a dataset not written by BackSplit)."""
        return self.meta.get("backsplit") or {}

    @property
    def variant(self) -> str:
        """"backsplit", "binary", or "external" (no BackSplit section)."""
        return self.section.get("variant", "external")

    @property
    def schema(self) -> Optional[LabelSchema]:
        """The label schema (targets, support structures, values), None for a dataset not written by BackSplit."""
        section = self.section.get("schema")
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
        """The other dataset of the pair (the binary twin, or the BackSplit dataset of a twin), when recorded."""
        twin = self.section.get("twin")
        return self.folder.parent / twin if twin else None

    @property
    def channel_names(self) -> list[str]:
        """Image channel names in channel order (``_0000``, ``_0001`` ...)."""
        names = self.meta["channel_names"]
        return [names[k] for k in sorted(names, key=int)]

    @property
    def file_ending(self) -> str:
        """The case files' suffix (``.nii.gz`` for BackSplit exports)."""
        return self.meta["file_ending"]

    @property
    def version(self) -> int:
        """The dataset version (1 for a dataset exported before versions were recorded)."""
        return int(self.section.get("version", 1))

    @property
    def file_records(self) -> dict[str, dict]:
        """``{"imagesTr/<file>": {"sha256": hex, "bytes": n}}`` as recorded at export / ``dataset add``; empty for a
        dataset exported before records existed."""
        return dict(self.section.get("files") or {})

    def image_path(self, case: str, channel: int) -> Path:
        """``imagesTr/<case>_<channel:04d><file_ending>`` (may not exist: ``load_dataset_folder`` checked it did)."""
        return self.folder / "imagesTr" / f"{case}_{channel:04d}{self.file_ending}"

    def label_path(self, case: str) -> Path:
        """``labelsTr/<case><file_ending>``."""
        return self.folder / "labelsTr" / f"{case}{self.file_ending}"

    def recorded_hash(self, path: Path, stat: Optional[os.stat_result] = None) -> Optional[str]:
        """The recorded SHA-256 (64 hex digits) of a case file of this folder, or None when there is no record or the
        file may have changed since (other size, or modified after dataset.json was written). ``stat``: the file's
        ``os.stat`` when the caller has it."""
        path = Path(path)
        record = self.file_records.get(f"{path.parent.name}/{path.name}")
        if not record or path.parent.parent != self.folder:
            return None
        stat = stat or path.stat()
        written = (self.folder / DATASET_JSON).stat().st_mtime_ns
        if stat.st_size != record.get("bytes") or stat.st_mtime_ns > written:
            return None
        return str(record["sha256"])

    def content_hash(self) -> str:
        """16 hex digits that change when the dataset changes: dataset.json's bytes and, per case file, its recorded
        SHA-256 (or, without a valid record, its name, size and modification time)."""
        digest = hashlib.sha256((self.folder / DATASET_JSON).read_bytes())
        for sub in CASE_FOLDERS:
            for path in sorted((self.folder / sub).iterdir()):
                stat = path.stat()
                recorded = self.recorded_hash(path, stat)
                digest.update((f"{sub}/{path.name}:sha256:{recorded}" if recorded else
                               f"{sub}/{path.name}:{stat.st_size}:{int(stat.st_mtime)}").encode())
        return digest.hexdigest()[:16]


def load_dataset_folder(folder: Path) -> DatasetFolder:
    """Check that ``folder`` is an nnU-Net raw dataset we can train on; name the problem and the fix otherwise.

    Raises InputError (with the path, and the case for a missing channel) when the folder is missing or misnamed,
    dataset.json is missing / unreadable, imagesTr or labelsTr is missing or empty, ``numTraining`` does not match,
    an image channel is missing, or the label values are not consecutive from 0."""
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise InputError("the dataset folder does not exist; choose the DatasetNNN_Name folder written by export",
                         path=str(folder))
    match = DATASET_FOLDER.match(folder.name)
    if not match:
        raise InputError("the folder name is not an nnU-Net dataset name (DatasetNNN_Name); choose the folder written "
                         "by BackSplit export", path=str(folder))
    meta = read_dataset_json(folder)
    for sub in CASE_FOLDERS:
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
                         "consecutive labels", path=str(folder / DATASET_JSON))
    return DatasetFolder(folder, int(match.group(1)), match.group(2), meta, labels)
