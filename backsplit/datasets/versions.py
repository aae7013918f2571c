"""Dataset versions as data, in dataset.json's ``backsplit`` section, and where earlier versions live.

Recorded per dataset (the BackSplit dataset and its binary twin carry the same numbers)::

    "version": 2, "parent_version": 1,
    "versions": [{"version": 1, "parent": null, "created": "...", "how": "export", "added_cases": [...]},
                 {"version": 2, "parent": 1, "created": "...", "how": "dataset add", "added_cases": ["c7"]}],
    "files": {"imagesTr/c7_0000.nii.gz": {"sha256": "...", "bytes": 1234}, ...}     # this version's files

Layout: the dataset folder (``nnUNet_raw/Dataset501_Name``) always holds the newest version, so training,
prediction and nnU-Net use it unchanged. ``backsplit dataset add`` moves the previous version's folders (both
datasets) whole into ``nnUNet_raw/backsplit_versions/Dataset501_Name/v<N>/`` (same file names: that folder is an
nnU-Net raw root, ``backsplit train .../v1/Dataset501_Name`` retrains on version 1), and the new version holds hard
links to the unchanged image files (copies where the file system has no hard links) and copies of the unchanged
label files. BackSplit never edits a case file in place; a person correcting a label file of the newest version in
place (SimpleITK's ``WriteImage`` to the same path writes into the file) changes only the newest version, because
label files are not shared. An image file edited in place would change the kept versions that share it: so
``list_versions`` flags a kept version's case file modified after that version was kept (a stat, no hashing) and
``verify_files`` re-hashes every file against dataset.json. nnU-Net only looks at ``DatasetNNN_*`` folders, so
``backsplit_versions`` does not disturb it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, Optional

from backsplit.datasets.layout import (
    case_file_names,
    hash_file,
    read_dataset_json,
    write_dataset_json,
)
from backsplit.errors import InputError

VERSIONS_FOLDER = "backsplit_versions"
__all__ = ["VERSIONS_FOLDER", "file_records", "files_digest",
           "current_version", "version_history", "stamp_first_version", "main_dataset_name", "snapshot_dir",
           "VersionInfo", "list_versions", "version_folder", "verify_files", "now", "modified_after"]


def file_records(folder: Path, names: Optional[Iterable[str]] = None) -> dict[str, dict]:
    """``{"imagesTr/<file>": {"sha256": hex, "bytes": n}}`` for the case files of a dataset folder (all of them, or
    the relative paths in ``names``)."""
    folder = Path(folder)
    if names is None:
        names = case_file_names(folder)
    return {name: {"sha256": hash_file(folder / name), "bytes": (folder / name).stat().st_size}
            for name in sorted(names)}


def files_digest(records: dict[str, dict]) -> str:
    """One fingerprint of a version's content (names and hashes of every case file), for model manifests."""
    digest = hashlib.sha256()
    for name in sorted(records):
        digest.update(f"{name}:{records[name]['sha256']}\n".encode())
    return digest.hexdigest()[:16]


def current_version(meta: dict) -> int:
    """The dataset version recorded in a dataset.json (``meta``); 1 for a dataset exported before versions."""
    return int(meta.get("backsplit", {}).get("version", 1))


def version_history(meta: dict) -> list[dict]:
    """The versions recorded in dataset.json; a dataset exported before versions were recorded is version 1."""
    section = meta.get("backsplit", {})
    if section.get("versions"):
        return [dict(v) for v in section["versions"]]
    return [{"version": 1, "parent": None, "created": section.get("created"), "how": "export",
             "added_cases": list(section.get("case_ids", []))}]


def stamp_first_version(folder: Path, known: Optional[dict[str, dict]] = None) -> dict[str, dict]:
    """Record version 1 and the hash of every case file in a freshly exported dataset's dataset.json. ``known``:
    records of files that are hard links of the same bytes (the twin's images); returns the records."""
    meta = read_dataset_json(folder)
    section = meta.setdefault("backsplit", {})
    section["version"] = 1
    section["parent_version"] = None
    section["versions"] = version_history(meta)
    names = case_file_names(folder)
    known = known or {}
    records = file_records(folder, [n for n in names if n not in known])
    records.update({n: known[n] for n in names if n in known})
    section["files"] = dict(sorted(records.items()))
    write_dataset_json(folder, meta)
    return records


def main_dataset_name(dataset_dir: Path, meta: dict) -> str:
    """The BackSplit dataset's folder name (snapshots of a pair are kept under it, also for the twin)."""
    section = meta.get("backsplit", {})
    if section.get("variant") == "binary" and section.get("twin"):
        return str(section["twin"])
    return Path(dataset_dir).name


def snapshot_dir(dataset_dir: Path, meta: dict, version: int) -> Path:
    """The nnU-Net raw root that holds version ``version`` of the pair once a newer version exists."""
    dataset_dir = Path(dataset_dir)
    return dataset_dir.parent / VERSIONS_FOLDER / main_dataset_name(dataset_dir, meta) / f"v{int(version)}"


@dataclass
class VersionInfo:
    version: int
    parent: Optional[int]
    created: Optional[str]
    how: str
    added_cases: list[str]
    folder: Optional[Path]          # where this version's dataset folder is (None: its snapshot is gone)
    changed_after_kept: list[str] = dataclasses.field(default_factory=list)   # kept version: files modified since

    def line(self) -> str:
        where = str(self.folder) if self.folder else "(folder missing)"
        parent = f"v{self.parent}" if self.parent else "-"
        text = (f"v{self.version}  parent {parent:<4} {self.created or '?':<25} {self.how:<12} "
                f"+{len(self.added_cases)} case(s)  {where}")
        if self.changed_after_kept:
            shown = ", ".join(self.changed_after_kept[:5]) + (" ..." if len(self.changed_after_kept) > 5 else "")
            text += (f"\n    warning: {len(self.changed_after_kept)} case file(s) modified after this version was "
                     f"kept ({shown}): a file shared with a newer version was written in place; check with "
                     f"'backsplit dataset verify {self.folder}'")
        return text


def _epoch(stamp: Optional[str]) -> Optional[float]:
    """Seconds since 1970 of a time as ``now`` records it, or None when it cannot be read."""
    try:
        return datetime.strptime(str(stamp), "%Y-%m-%dT%H:%M:%S%z").timestamp()
    except ValueError:
        return None


def modified_after(folder: Path, when: float, slack_s: float = 2.0) -> list[str]:
    """The case files of ``folder`` (``imagesTr/<file>``, ``labelsTr/<file>``) whose modification time is later than
    ``when`` (seconds since 1970) plus ``slack_s`` (file-system time resolution). A kept version's files are never
    written after the version that replaced it was created, so any such file was edited in place."""
    late = []
    for name in case_file_names(folder):
        try:
            if (Path(folder) / name).stat().st_mtime > when + slack_s:
                late.append(name)
        except OSError:
            continue
    return late


def list_versions(dataset_dir: Path) -> list[VersionInfo]:
    """Every recorded version of a dataset, oldest first, with the folder that holds it."""
    dataset_dir = Path(dataset_dir)
    meta = read_dataset_json(dataset_dir)
    current = current_version(meta)
    result = []
    history = version_history(meta)
    kept_at = {int(r["parent"]): _epoch(r.get("created")) for r in history if r.get("parent")}
    for record in history:
        number = int(record["version"])
        folder = dataset_dir if number == current else snapshot_dir(dataset_dir, meta, number) / dataset_dir.name
        found = folder if folder.is_dir() else None
        changed = modified_after(found, kept_at[number]) if found and number != current and kept_at.get(number) \
            else []
        result.append(VersionInfo(number, record.get("parent"), record.get("created"), record.get("how", "?"),
                                  list(record.get("added_cases", [])), found, changed))
    return result


def version_folder(dataset_dir: Path, version: int) -> Path:
    """The dataset folder of one version (the live folder for the newest); InputError when it is not kept."""
    for info in list_versions(dataset_dir):
        if info.version == int(version):
            if info.folder is None:
                raise InputError(f"version {version} is recorded but its folder is gone (it was kept in "
                                 f"'{VERSIONS_FOLDER}' next to the dataset)", path=str(dataset_dir))
            return info.folder
    known = ", ".join(str(i.version) for i in list_versions(dataset_dir))
    raise InputError(f"the dataset has no version {version} (versions: {known})", path=str(dataset_dir))


def verify_files(dataset_dir: Path) -> list[str]:
    """Compare the case files on disk with the hashes recorded in dataset.json. Returns problems (empty: all match):
    changed, missing and unrecorded files. A dataset without recorded hashes gives one line saying so."""
    dataset_dir = Path(dataset_dir)
    recorded = read_dataset_json(dataset_dir).get("backsplit", {}).get("files")
    if not recorded:
        return ["no file hashes are recorded (exported before dataset versions); 'backsplit dataset add' records them"]
    on_disk = file_records(dataset_dir)
    problems = []
    for name, record in sorted(recorded.items()):
        if name not in on_disk:
            problems.append(f"{name}: missing")
        elif on_disk[name]["sha256"] != record["sha256"]:
            problems.append(f"{name}: changed since it was recorded")
    problems += [f"{name}: not recorded in dataset.json" for name in sorted(set(on_disk) - set(recorded))]
    return problems


def now() -> str:
    """The local time as recorded in dataset.json (ISO 8601 with the UTC offset)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
