"""Read an exported dataset's cases and file hashes for the plan (the plan itself stays pure).

A file's hash is the SHA-256 recorded in dataset.json at export (``DatasetFolder.recorded_hash``); only files
without a valid record (datasets exported before records existed, files changed since) are hashed here, through the
study's cache (``FileHasher``). Both give the same value for the same bytes (the first 32 hex digits of SHA-256).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from backsplit.datasets.folder import DatasetFolder, load_dataset_folder
from backsplit.errors import InputError
from backsplit.study.hashing import FileHasher, stable_hash
from backsplit.study.plan import DatasetScan

HASH_DIGITS = 32    # hex digits of SHA-256 the plan keeps per file (as FileHasher)


def file_hash(dataset: DatasetFolder, path: Path, hasher: FileHasher) -> str:
    """The content hash of one case file of ``dataset``: its recorded SHA-256, else ``hasher(path)`` (first
    ``HASH_DIGITS`` hex digits either way). Raises OSError when the file cannot be read."""
    recorded = dataset.recorded_hash(path)
    return recorded[:HASH_DIGITS] if recorded else hasher(path)


def scan_dataset(folder: Path, hasher: Optional[FileHasher] = None) -> DatasetScan:
    """Cases, schema and SHA-256 of every image and label file of an exported nnU-Net raw dataset (the recorded
    hashes where valid, see ``file_hash``). Raises InputError when the folder is not a dataset we can train on."""
    hasher = hasher or FileHasher()
    dataset = load_dataset_folder(folder)
    meta = json.loads(json.dumps(dataset.meta))
    meta.get("backsplit", {}).pop("created", None)   # the export time is not content
    channels = len(meta["channel_names"])
    images, labels = {}, {}
    for case in dataset.case_ids:
        images[case] = [file_hash(dataset, dataset.image_path(case, c), hasher) for c in range(channels)]
        labels[case] = file_hash(dataset, dataset.label_path(case), hasher)
    schema = dataset.schema
    return DatasetScan(str(dataset.folder), tuple(dataset.case_ids), stable_hash(meta), images, labels,
                       tuple(c.name for c in schema.targets) if schema else (),
                       tuple(c.name for c in schema.supports) if schema else (),
                       tuple(meta.get("backsplit", {}).get("negative_cases", [])))


def scan_study_inputs(source_dir: Path, hasher: Optional[FileHasher] = None) -> tuple[DatasetScan, DatasetScan]:
    """The BackSplit dataset and its binary twin (refused with the fix when the folder is not a BackSplit export)."""
    source = scan_dataset(source_dir, hasher)
    dataset = load_dataset_folder(source_dir)
    if dataset.variant != "backsplit":
        raise InputError(f"a study starts from a BackSplit dataset (with support structures), but this is a "
                         f"'{dataset.variant}' dataset; give the DatasetNNN_Name folder written by backsplit export",
                         path=str(source_dir))
    twin = dataset.twin_folder
    if twin is None or not twin.is_dir():
        raise InputError("the dataset has no binary twin next to it (the binary arm trains on it); export it again "
                         "with the binary twin", path=str(source_dir))
    return source, scan_dataset(twin, hasher)
