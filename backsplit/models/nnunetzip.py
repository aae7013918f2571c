"""Import nnU-Net's own model zips (``nnUNetv2_export_model_to_zip``) as BackSplit models, untrusted.

nnU-Net's exporter (``nnunetv2/model_sharing/model_export.py``) writes entries relative to ``nnUNet_results``::

    DatasetNNN_Name/<Trainer>__<Plans>__<configuration>/{plans.json, dataset.json, dataset_fingerprint.json,
        fold_<f>/{checkpoint_final.pth, debug.json, progress.png, validation/summary.json},
        crossval_results_folds_*/...}
    DatasetNNN_Name/ensembles/...            (not imported: BackSplit ensembles the folds of one model)

with no checksum list (``nnUNetv2_install_pretrained_model_from_zip`` just extracts it). Each
``<Trainer>__<Plans>__<configuration>`` folder becomes one BackSplit model named ``<DatasetNNN_Name>__<configuration>``
(or ``--name`` when the zip holds one model), with a manifest derived from its files (``inference.model
.plain_model_manifest``: every foreground class a target, ``"derived": true``). The same entry checks as BackSplit's
zips apply (``archive.check_entry_name``: no absolute paths, ``..``, links, duplicates); files local to the computer
that made the zip are skipped (``archive.machine_local``); a file larger than the zip says is refused. Extracted into
a hidden folder first, moved into place only when the model reads back.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Optional

from backsplit.errors import InputError, OutputError
from backsplit.models.archive import CHECKSUMS_NAME, ImportResult, check_entry_name, machine_local, move_imported
from backsplit.models.location import check_model_name, free_name

MODEL_FOLDER = re.compile(r"^[^_]+.*__.+__.+$")


def nnunet_models_in_zip(zip_path: Path) -> Optional[list[str]]:
    """``DatasetNNN_Name/<Trainer>__<Plans>__<configuration>`` folders of an nnU-Net model zip, or None when
    ``zip_path`` is not one (no zip, a BackSplit zip with its checksum list, or no such folder with a plans.json)."""
    if not zipfile.is_zipfile(zip_path):
        return None
    with zipfile.ZipFile(zip_path) as archive:
        names = [i.filename.replace("\\", "/") for i in archive.infolist()]
    if CHECKSUMS_NAME in names:
        return None
    models = sorted({"/".join(n.split("/")[:2]) for n in names if len(n.split("/")) == 3
                     and n.endswith("/plans.json") and n.startswith("Dataset") and MODEL_FOLDER.match(n.split("/")[1])})
    return models or None


def import_nnunet_zip(zip_path: Path, models_dir: Path, name: Optional[str] = None,
                      rename_if_exists: bool = False, chunk: int = 1 << 20) -> list[ImportResult]:
    """Unpack every model of an nnU-Net model zip into ``models_dir`` (module doc); one ImportResult per model.
    Raises InputError (not an nnU-Net zip, unsafe entries, ``--name`` with several models, a model that does not read
    back) or OutputError (a name taken without ``rename_if_exists``, too little space); the failing model leaves
    nothing behind (models of the zip imported before it stay)."""
    from backsplit.datasets.layout import hash_file
    from backsplit.inference.model import plain_model_manifest
    from backsplit.training.manifest import MANIFEST_NAME

    zip_path, models_dir = Path(zip_path), Path(models_dir)
    models = nnunet_models_in_zip(zip_path)
    if not models:
        raise InputError("this is neither a BackSplit model zip nor an nnU-Net model zip (DatasetNNN_Name/<Trainer>__"
                         "<Plans>__<configuration>/plans.json)", path=str(zip_path))
    if name is not None and len(models) > 1:
        raise InputError(f"the nnU-Net zip holds {len(models)} models ({', '.join(models)}); --name names one model: "
                         "leave it out (they are named <DatasetNNN_Name>__<configuration>)", path=str(zip_path))
    digest = hash_file(zip_path)
    results = []
    models_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as archive:
        infos, seen = archive.infolist(), set()
        for info in infos:
            clean = str(check_entry_name(info.filename, zip_path))
            if stat.S_ISLNK(info.external_attr >> 16):
                raise InputError(f"the archive holds a link ('{info.filename}'); refusing it", path=str(zip_path))
            if clean in seen:
                raise InputError(f"the archive holds '{info.filename}' twice; refusing it", path=str(zip_path))
            seen.add(clean)
        for model in models:
            dataset, folder_name = model.split("/")
            wanted = check_model_name(name or f"{dataset}__{folder_name.split('__')[-1]}")
            target = wanted
            if (models_dir / target).exists():
                if not rename_if_exists:
                    raise OutputError(f"a model named '{target}' exists already in '{models_dir}'; import it under "
                                      "another name (--name NAME, or --rename to get the next free name)")
                target = free_name(models_dir, target)
            members, skipped = [], []
            for info in infos:
                clean = check_entry_name(info.filename, zip_path)
                if info.is_dir() or clean.parts[:2] != (dataset, folder_name):
                    continue
                relative = PurePosixPath(*clean.parts[2:])
                (skipped if machine_local(relative) else members).append((relative, info))
            needed = sum(i.file_size for _, i in members)
            if shutil.disk_usage(models_dir).free < needed * 1.05:
                raise OutputError(f"the model needs {needed / 1e6:.0f} MB but '{models_dir}' has less free space")
            staging = Path(tempfile.mkdtemp(prefix=".backsplit-import-", dir=models_dir))
            try:
                folder = staging / target
                for relative, info in members:
                    destination = folder / relative
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    written = 0
                    with archive.open(info) as source, open(destination, "wb") as handle:
                        for block in iter(lambda: source.read(chunk), b""):
                            written += len(block)
                            if written > info.file_size:
                                raise InputError(f"'{info.filename}' is larger than the archive says; refusing it",
                                                 path=str(zip_path))
                            handle.write(block)
                manifest = plain_model_manifest(folder, folder_name=folder_name)
                manifest.update({"source": "nnU-Net model zip", "name_in_archive": model})
                (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
                move_imported(folder, models_dir, target, {"source": str(zip_path.resolve()), "archive_sha256": digest,
                                                           "name_in_archive": model,
                                                           "format": "nnU-Net model zip (no checksum list)"})
            except zipfile.BadZipFile as exc:
                raise InputError(f"the archive is damaged ({exc}); nothing was imported", path=str(zip_path)) from None
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            results.append(ImportResult(target, models_dir / target, len(members),
                                        wanted if target != wanted else None, [str(r) for r, _ in skipped]))
    return results
