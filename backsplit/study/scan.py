"""Read an exported dataset's cases and file hashes for the plan (the plan itself stays pure)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from backsplit.errors import InputError
from backsplit.datasets.folder import load_training_dataset
from backsplit.study.hashing import FileHasher, stable_hash
from backsplit.study.plan import DatasetScan


def scan_dataset(folder: Path, hasher: Optional[FileHasher] = None) -> DatasetScan:
    """Cases, schema and SHA-256 of every image and label file of an exported nnU-Net raw dataset."""
    hasher = hasher or FileHasher()
    dataset = load_training_dataset(folder)
    meta = json.loads(json.dumps(dataset.meta))
    meta.get("backsplit", {}).pop("created", None)   # the export time is not content
    ending = meta["file_ending"]
    channels = len(meta["channel_names"])
    images, labels = {}, {}
    for case in dataset.case_ids:
        images[case] = [hasher(dataset.folder / "imagesTr" / f"{case}_{c:04d}{ending}") for c in range(channels)]
        labels[case] = hasher(dataset.folder / "labelsTr" / f"{case}{ending}")
    schema = dataset.schema
    return DatasetScan(str(dataset.folder), tuple(dataset.case_ids), stable_hash(meta), images, labels,
                       tuple(c.name for c in schema.targets) if schema else (),
                       tuple(c.name for c in schema.supports) if schema else (),
                       tuple(meta.get("backsplit", {}).get("negative_cases", [])))


def scan_study_inputs(source_dir: Path, hasher: Optional[FileHasher] = None) -> tuple[DatasetScan, DatasetScan]:
    """The BackSplit dataset and its binary twin (refused with the fix when the folder is not a BackSplit export)."""
    source = scan_dataset(source_dir, hasher)
    dataset = load_training_dataset(source_dir)
    if dataset.variant != "backsplit":
        raise InputError(f"a study starts from a BackSplit dataset (with support structures), but this is a "
                         f"'{dataset.variant}' dataset; give the DatasetNNN_Name folder written by backsplit export",
                         path=str(source_dir))
    twin = dataset.twin_folder
    if twin is None or not twin.is_dir():
        raise InputError("the dataset has no binary twin next to it (the binary arm trains on it); export it again "
                         "with the binary twin", path=str(source_dir))
    return source, scan_dataset(twin, hasher)
