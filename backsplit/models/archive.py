"""One-file model exchange: a zip (Python's ``zipfile``) with the model folder and a SHA-256 checksum list.

Layout::

    backsplit_checksums.sha256        "<sha256>  <name>/<path>" per file (the format of ``sha256sum``)
    <name>/backsplit_model.json, dataset.json, plans.json, fold_<f>/checkpoint_final.pth, ...

Export leaves out what is local to this computer (``machine_local``: in-use markers, locks and other hidden files,
the trust record, ``checkpoint_latest.pth`` which only serves to resume); import skips exactly the same entries (a
hand-made or older zip may hold them: an in-use marker would make 'model remove' refuse forever, a trust record would
carry someone else's trust). Import refuses, before writing anything: entries with absolute paths, drive letters or
``..`` (zip-slip), links, duplicate names, files missing from or not named in the checksum list, more than one top
folder, a model name that exists (unless a new name is asked for), too little disk space. Files are extracted into
a hidden folder in the models location while their SHA-256 is computed; any mismatch removes everything. The
imported model is marked untrusted (``trust.py``).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Optional

from backsplit.errors import InputError, OutputError
from backsplit.models.location import check_model_name, free_name
from backsplit.models.trust import ORIGIN_NAME, write_origin
from backsplit.models.usage import IN_USE_DIR
from backsplit.training.manifest import MANIFEST_NAME

CHECKSUMS_NAME = "backsplit_checksums.sha256"
LEFT_OUT = {ORIGIN_NAME, "checkpoint_latest.pth"}


def machine_local(relative: PurePosixPath | Path) -> bool:
    """True for a path inside a model folder (relative to it) that belongs to this computer, not to the model: the
    in-use markers (``IN_USE_DIR``), any hidden file or folder (locks, partial files), the trust record
    (``ORIGIN_NAME``) and ``checkpoint_latest.pth``. Export leaves these out and import skips them."""
    parts = PurePosixPath(*Path(relative).parts).parts
    return bool(parts) and (parts[0] == IN_USE_DIR or parts[-1] in LEFT_OUT or any(p.startswith(".") for p in parts))


def _model_files(folder: Path) -> list[Path]:
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if machine_local(relative):
            continue
        if path.is_symlink():
            raise InputError("the model folder holds a link; copy the real file into the model folder first",
                             path=str(path))
        if path.is_file():
            files.append(path)
    return files


def export_model(folder: Path, zip_path: Path, overwrite: bool = False) -> Path:
    """Write the model folder as one zip with a checksum list; written aside, then moved into place."""
    from backsplit.datasets.layout import hash_file
    from backsplit.models.catalog import read_entry

    entry = read_entry(folder)        # refuses a folder that is not a model
    zip_path = Path(zip_path)
    if zip_path.exists() and not overwrite:
        raise OutputError(f"'{zip_path}' exists; choose another file name or allow overwriting it")
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    files = _model_files(entry.folder)
    fd, tmp = tempfile.mkstemp(prefix=".backsplit-export-", suffix=".zip", dir=zip_path.parent)
    os.close(fd)
    try:
        lines = []
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for path in files:
                name = f"{entry.name}/{path.relative_to(entry.folder).as_posix()}"
                archive.write(path, name)
                lines.append(f"{hash_file(path)}  {name}")
            archive.writestr(CHECKSUMS_NAME, "\n".join(lines) + "\n")
        os.replace(tmp, zip_path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return zip_path


@dataclass
class ImportResult:
    name: str
    folder: Path
    files: int
    renamed_from: Optional[str]     # the name asked for (--name, else the zip's), when --rename had to change it
    skipped: list[str] = field(default_factory=list)   # machine-local entries of the zip, not imported


def check_entry_name(name: str, zip_path: Path) -> PurePosixPath:
    """Refuse a zip entry that would be written outside the target folder (absolute, drive letter, '..')."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
        raise InputError(f"the archive holds an absolute path ('{name}'); it would write outside the models folder, "
                         "refusing it", path=str(zip_path))
    parts = PurePosixPath(posix).parts
    if ".." in parts:
        raise InputError(f"the archive holds a path with '..' ('{name}'); it would write outside the models folder, "
                         "refusing it", path=str(zip_path))
    return PurePosixPath(*[p for p in parts if p not in ("", ".")])


def read_checksums(text: str, zip_path: Path) -> dict[str, str]:
    listed = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = re.fullmatch(r"([0-9a-f]{64}) [ *](.+)", line.strip())
        if not match:
            raise InputError(f"line {number} of {CHECKSUMS_NAME} is not '<sha256>  <path>'", path=str(zip_path))
        listed[match.group(2)] = match.group(1)
    return listed



def move_imported(folder: Path, models_dir: Path, target: str, origin: dict) -> None:
    """Finish an import: check the unpacked model ``folder`` (manifest, dataset.json, plans and checkpoints agree; no
    checkpoint is loaded), record where it came from as untrusted (``trust.write_origin``, with ``origin`` and the
    time), and move it to ``models_dir/target``. Raises InputError (a model that does not hold together) or
    OutputError (a model of that name appeared meanwhile)."""
    from backsplit.inference.model import read_model_info

    read_model_info(folder)
    write_origin(folder, {"trusted": False, **origin, "imported": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    if (models_dir / target).exists():
        raise OutputError(f"a model named '{target}' appeared in '{models_dir}' during the import; import it again")
    os.replace(folder, models_dir / target)


def import_model(zip_path: Path, models_dir: Path, name: Optional[str] = None, rename_if_exists: bool = False,
                 chunk: int = 1 << 20) -> ImportResult:
    """Verify and unpack a model zip into ``models_dir/<name>``, marked untrusted. See the module doc."""
    import hashlib

    zip_path, models_dir = Path(zip_path), Path(models_dir)
    if not zip_path.is_file() or not zipfile.is_zipfile(zip_path):
        raise InputError("this is not a zip file; choose a model exported with 'backsplit model export'",
                         path=str(zip_path))
    with zipfile.ZipFile(zip_path) as archive:
        infos = archive.infolist()
        seen, tops = set(), set()
        for info in infos:
            clean = check_entry_name(info.filename, zip_path)
            if stat.S_ISLNK(info.external_attr >> 16):
                raise InputError(f"the archive holds a link ('{info.filename}'); refusing it", path=str(zip_path))
            if str(clean) in seen:
                raise InputError(f"the archive holds '{info.filename}' twice; refusing it", path=str(zip_path))
            seen.add(str(clean))
            if not info.is_dir() and str(clean) != CHECKSUMS_NAME:
                tops.add(clean.parts[0] if len(clean.parts) > 1 else "")
        if CHECKSUMS_NAME not in seen:
            raise InputError(f"the archive has no checksum list ({CHECKSUMS_NAME}); export the model with "
                             "'backsplit model export'", path=str(zip_path))
        if len(tops) != 1 or "" in tops:
            raise InputError("the archive must hold exactly one model folder (and the checksum list)",
                             path=str(zip_path))
        top = tops.pop()
        def local(relative: str) -> bool:
            return machine_local(PurePosixPath(relative).relative_to(top))

        listed = {k: v for k, v in read_checksums(archive.read(CHECKSUMS_NAME).decode("utf-8"), zip_path).items()
                  if not (k.startswith(f"{top}/") and local(k))}
        every = {str(check_entry_name(i.filename, zip_path)): i for i in infos
                 if not i.is_dir() and i.filename != CHECKSUMS_NAME}
        skipped = sorted(k for k in every if local(k))
        files = {k: i for k, i in every.items() if k not in skipped}
        missing = sorted(set(listed) - set(files))
        if missing:
            raise InputError(f"files named in the checksum list are missing from the archive: {', '.join(missing)}; "
                             "the archive is incomplete, export the model again", path=str(zip_path))
        unlisted = sorted(set(files) - set(listed))
        if unlisted:
            raise InputError(f"files not named in the checksum list: {', '.join(unlisted)}; the archive was changed "
                             "after export, refusing it", path=str(zip_path))
        if f"{top}/{MANIFEST_NAME}" not in files:
            raise InputError(f"the archive holds no {MANIFEST_NAME}; it is not a BackSplit model", path=str(zip_path))
        original = top
        asked = target_name = check_model_name(name or top)
        models_dir.mkdir(parents=True, exist_ok=True)
        if (models_dir / target_name).exists():
            if not rename_if_exists:
                raise OutputError(f"a model named '{target_name}' exists already in '{models_dir}'; import it under "
                                  "another name (--name NAME, or --rename to get the next free name)")
            target_name = free_name(models_dir, target_name)
        needed = sum(i.file_size for i in files.values())
        if shutil.disk_usage(models_dir).free < needed * 1.05:
            raise OutputError(f"the model needs {needed / 1e6:.0f} MB but '{models_dir}' has less free space")
        staging = Path(tempfile.mkdtemp(prefix=".backsplit-import-", dir=models_dir))
        try:
            folder = staging / target_name
            for relative, info in files.items():
                destination = folder / PurePosixPath(relative).relative_to(top)
                destination.parent.mkdir(parents=True, exist_ok=True)
                digest, written = hashlib.sha256(), 0
                with archive.open(info) as source, open(destination, "wb") as handle:
                    for block in iter(lambda: source.read(chunk), b""):
                        written += len(block)
                        if written > info.file_size:
                            raise InputError(f"'{relative}' is larger than the archive says; refusing it",
                                             path=str(zip_path))
                        digest.update(block)
                        handle.write(block)
                if digest.hexdigest() != listed[relative]:
                    raise InputError(f"'{relative}' does not match its checksum: the file was altered or damaged "
                                     "after export; nothing was imported", path=str(zip_path))
            from backsplit.datasets.layout import hash_file

            move_imported(folder, models_dir, target_name, {"source": str(zip_path.resolve()),
                                                            "archive_sha256": hash_file(zip_path),
                                                            "name_in_archive": original})
        except zipfile.BadZipFile as exc:
            raise InputError(f"the archive is damaged ({exc}); nothing was imported", path=str(zip_path)) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return ImportResult(target_name, models_dir / target_name, len(files),
                        asked if target_name != asked else None, skipped)
