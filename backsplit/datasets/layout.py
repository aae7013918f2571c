"""The on-disk format of an exported dataset folder: names, ``dataset.json`` (its one reader and writer), case files,
twin links, file hashes and the atomic move into place.

Layout (an nnU-Net v2 raw dataset; the binary twin sits next to it in the same nnU-Net raw root)::

    Dataset501_Kidney/   dataset.json
                         imagesTr/<case>_<channel:04d>.nii.gz    one file per image channel
                         labelsTr/<case>.nii.gz                  targets 1..T, support structures T+1..T+S
    Dataset502_KidneyBinary/                                     same images (hard links where possible),
                                                                 labels with support classes folded to 0

``dataset.json`` holds nnU-Net's keys plus a ``backsplit`` section (format ``FORMAT_VERSION``: variant, label
schema, twin, case ids, versions and the SHA-256 of every case file; see ``datasets/versions.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

import numpy as np

from backsplit import __version__
from backsplit.errors import InputError, OutputError
from backsplit.io.niftiio import NiftiGzWriter
from backsplit.labels.schema import LabelSchema
from backsplit.labels.terminology import class_terminology

FILE_ENDING = ".nii.gz"
FORMAT_VERSION = 1
DATASET_JSON = "dataset.json"
CASE_FOLDERS = ("imagesTr", "labelsTr")
DATASET_KEYS = ("channel_names", "labels", "numTraining", "file_ending")   # what a dataset's dataset.json must hold


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``Dataset<id:03d>_<name>``, nnU-Net's folder name. Raises InputError for an id outside 1..999 or a name that
    cannot be a folder name (empty, spaces, path characters, a leading dot)."""
    if not 1 <= int(dataset_id) <= 999:
        raise InputError(f"dataset id {dataset_id} is out of range; nnU-Net ids are 1 to 999")
    name = name.strip()
    if not name or any(ch in name for ch in '/\\:*?"<>| ') or name.startswith("."):
        raise InputError(f"the dataset name '{name}' cannot be a folder name for nnU-Net; use letters, digits, '-' "
                         "and '_' (no spaces)")
    return f"Dataset{int(dataset_id):03d}_{name}"


def existing_datasets(out_root: Path, dataset_id: int) -> list[Path]:
    """The dataset folders in ``out_root`` that use ``dataset_id`` (any name), sorted; empty when none or no folder."""
    if not out_root.is_dir():
        return []
    prefix = f"Dataset{int(dataset_id):03d}_"
    return sorted(p for p in out_root.iterdir() if p.name.startswith(prefix) and p.is_dir())


def case_file_names(folder: Path) -> list[str]:
    """The case files of a dataset folder as ``imagesTr/<file>`` / ``labelsTr/<file>`` paths, sorted per folder."""
    folder = Path(folder)
    return [f"{sub}/{p.name}" for sub in CASE_FOLDERS if (folder / sub).is_dir()
            for p in sorted((folder / sub).iterdir()) if p.is_file()]


# ---- dataset.json ----------------------------------------------------------------------------------------------------
def dataset_json(request: Any, schema: LabelSchema, variant: str, common: dict, twin: Optional[str]) -> dict:
    """The dataset.json content: nnU-Net's keys plus a ``backsplit`` section with class roles and sources.

    ``request``: an ``ExportRequest`` (``channel_names``, ``dataset_name``, ``name_mapping``, ``context`` are read);
    ``variant``: "backsplit" or "binary"; ``common``: ``case_ids``, ``negative_cases``, ``absent_segments``,
    ``sources`` (class -> source segment names) and optionally ``source_colors`` / ``source_terminology``;
    ``twin``: the other dataset's folder name, or None."""
    roles = schema.to_json()
    for item in roles["targets"] + roles["supports"]:
        item["sources"] = common["sources"].get(item["name"], []) or item["sources"]
        if item["name"] in common.get("source_colors", {}):
            item["source_color"] = common["source_colors"][item["name"]]
        entry = class_terminology(item["name"], common.get("source_terminology", {}))
        if entry:  # what Slicer shows for the predicted segment (from the source segment, or a well-known name)
            item["terminology"] = entry
    return {
        "channel_names": {str(i): name for i, name in enumerate(request.channel_names)},
        "labels": schema.labels_json(),
        "numTraining": len(common["case_ids"]),
        "file_ending": FILE_ENDING,
        "overwrite_image_reader_writer": "SimpleITKIO",
        "name": request.dataset_name if variant == "backsplit" else f"{request.dataset_name}Binary",
        "description": ("BackSplit dataset: background split into support structures" if variant == "backsplit"
                        else "Binary baseline (support structures folded into background) of a BackSplit dataset"),
        "backsplit": {
            "format_version": FORMAT_VERSION,
            "variant": variant,
            "schema": roles,
            "twin": twin,
            "case_ids": common["case_ids"],
            "negative_cases": common["negative_cases"],
            "absent_segments": common["absent_segments"],
            "name_mapping": dict(request.name_mapping),
            "context": request.context.to_json(),
            "created_by": f"backsplit {__version__}",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    }


def write_json_atomic(path: Path, content: dict) -> None:
    """Write ``content`` as indented UTF-8 JSON through a ``.tmp`` file and ``os.replace``: readers see the old or
    the new file, never half of one. Raises OSError when the folder is not writable."""
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    tmp.write_text(json.dumps(content, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def write_dataset_json(folder: Path, content: dict) -> None:
    """Write ``content`` as ``<folder>/dataset.json`` (atomically, see ``write_json_atomic``)."""
    write_json_atomic(Path(folder) / DATASET_JSON, content)


def read_dataset_json(dataset_dir: Path, required: Iterable[str] = DATASET_KEYS,
                      fix: str = "export the dataset again") -> dict:
    """Read and sanity-check the dataset.json of a dataset folder (or of a model folder, which keeps a copy).

    ``required``: keys it must hold (a model folder needs fewer than a dataset); ``fix``: what the user should do
    when it is unreadable. Raises InputError naming the file when it is missing, cannot be parsed or lacks a key."""
    path = Path(dataset_dir) / DATASET_JSON
    if not path.is_file():
        raise InputError("this folder is not an nnU-Net dataset (no dataset.json); choose the DatasetNNN_Name "
                         "folder written by BackSplit export", path=str(dataset_dir))
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"dataset.json cannot be parsed ({exc}); {fix}", path=str(path)) from None
    if not isinstance(content, dict):
        raise InputError(f"dataset.json is not a JSON object; {fix}", path=str(path))
    for key in required:
        if key not in content:
            raise InputError(f"dataset.json has no '{key}'; {fix}", path=str(path))
    return content


# ---- case files ------------------------------------------------------------------------------------------------------
def image_to_write(channel: np.ndarray) -> np.ndarray:
    """The array as written to ``imagesTr``: bool -> uint8, float64 -> float32, int64 -> int32 when the values fit
    (nnU-Net and ITK read these everywhere); other dtypes unchanged. Same shape (z, y, x)."""
    if channel.dtype == bool:
        return channel.astype(np.uint8)
    if channel.dtype == np.float64:
        return channel.astype(np.float32)
    if channel.dtype == np.int64 and channel.size and channel.min() >= np.iinfo(np.int32).min \
            and channel.max() <= np.iinfo(np.int32).max:
        return channel.astype(np.int32)
    return channel


def write_case(writer: NiftiGzWriter, case, labels: np.ndarray, schema: LabelSchema, main_dir: Path,
               twin_dir: Optional[Path]) -> None:
    """Queue one case's files: every image channel (``imagesTr/<case>_<c:04d>.nii.gz``) and the labels
    (``labelsTr/<case>.nii.gz``) into ``main_dir``; into ``twin_dir`` (when given) the labels with support classes
    folded to background. ``case``: a ``backsplit.io.cases.Case``; ``labels``: (z, y, x) label values of ``schema``.
    Errors of the background compression surface in ``writer.wait``."""
    for index, channel in enumerate(case.channels):
        name = f"{case.case_id}_{index:04d}{FILE_ENDING}"
        writer.write(image_to_write(channel), case.geometry, main_dir / "imagesTr" / name)
    writer.write(labels, case.geometry, main_dir / "labelsTr" / f"{case.case_id}{FILE_ENDING}")
    if twin_dir:
        writer.write(schema.fold_to_binary(labels) if schema.supports else labels, case.geometry,
                     twin_dir / "labelsTr" / f"{case.case_id}{FILE_ENDING}")


def link_twin_images(main_dir: Path, twin_dir: Optional[Path]) -> None:
    """The twin's images are the same files: hard links where the file system allows, else copies. Nothing happens
    when ``twin_dir`` is None. Raises OSError when neither works."""
    if twin_dir:
        for image in sorted((main_dir / "imagesTr").iterdir()):
            link_or_copy(image, twin_dir / "imagesTr" / image.name)


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` as ``dst``; copy it (with its times) where hard links are not possible."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def move_into_place(folder: Path, out_root: Path, dataset_id: int, overwrite: bool) -> Path:
    """Move a finished dataset folder from staging into ``out_root``; returns its new path. Existing folders with the
    same id are replaced only with ``overwrite`` (and put back if the move fails). Raises OutputError when the id
    appeared meanwhile and ``overwrite`` is off, OSError when the move fails."""
    target = out_root / folder.name
    old = existing_datasets(out_root, dataset_id)
    if old and not overwrite:  # appeared while we were writing
        raise OutputError(f"dataset id {dataset_id} appeared in '{out_root}' during the export ({old[0].name}); "
                          "nothing was overwritten, export again with another id")
    trash = None
    if old:
        trash = Path(tempfile.mkdtemp(prefix=".backsplit-replaced-", dir=out_root))
        for path in old:
            os.replace(path, trash / path.name)
    try:
        os.replace(folder, target)
    except OSError:
        if trash:  # put the old dataset back
            for path in trash.iterdir():
                os.replace(path, out_root / path.name)
        raise
    if trash:
        shutil.rmtree(trash, ignore_errors=True)
    return target


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) back while a few renames run that must all happen or all be undone; a Ctrl-C pressed
    meanwhile raises KeyboardInterrupt when the block ends. Only the main thread can set a signal handler: elsewhere
    (a GUI's worker thread, which gets no SIGINT anyway) the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    except (ValueError, OSError):   # an embedding application that does not let Python handle signals
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def hash_file(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (hashlib: the standard library's, fast and well known), 64 hex digits. ``chunk``:
    bytes read at a time. Raises OSError when the file cannot be read."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
