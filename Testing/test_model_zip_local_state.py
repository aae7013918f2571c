"""Issue 21 item 8: a model zip that carries state local to the computer that made it (an in-use marker, a lock, a
trust record, a resume checkpoint) is imported without it, exactly what export leaves out; and ``import --name`` no
longer claims the zip's own name "was taken". A real trained tiny model; the zip is rewritten in the test the way
a hand-made or older exporter's zip looks, with a valid checksum list naming the extra entries."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile

from backsplit.models.archive import CHECKSUMS_NAME, export_model, import_model
from backsplit.models.remove import remove_model
from backsplit.models.trust import is_trusted
from backsplit.models.usage import model_users

EXTRA = {"kidney/.backsplit-in-use/1-prediction": str(os.getpid()).encode(),   # a live process: 'in use' forever
         "kidney/.backsplit-train-kidney-fold_0.lock": b"1",
         "kidney/backsplit_origin.json": json.dumps({"trusted": True}).encode(),
         "kidney/fold_all/checkpoint_latest.pth": b"resume state"}


def _zip_with_local_state(model, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(model, models / "kidney", ignore=shutil.ignore_patterns("checkpoint_latest.pth", ".backsplit-*"))
    clean = export_model(models / "kidney", tmp_path / "clean.zip")
    dirty = tmp_path / "dirty.zip"
    with zipfile.ZipFile(clean) as old, zipfile.ZipFile(dirty, "w") as new:
        listed = old.read(CHECKSUMS_NAME).decode()
        for info in old.infolist():
            if info.filename != CHECKSUMS_NAME:
                new.writestr(info.filename, old.read(info))
        for name, data in EXTRA.items():
            new.writestr(name, data)
            listed += f"{hashlib.sha256(data).hexdigest()}  {name}\n"
        new.writestr(CHECKSUMS_NAME, listed)
    return dirty


def test_import_skips_what_export_leaves_out(tiny_model_dir, tmp_path):
    # today: the in-use marker is imported and 'model remove' refuses forever; the zip's trust record is taken too
    dirty = _zip_with_local_state(tiny_model_dir, tmp_path)
    result = import_model(dirty, tmp_path / "other")
    assert not (result.folder / ".backsplit-in-use").exists() and model_users(result.folder) == []
    assert not (result.folder / "fold_all" / "checkpoint_latest.pth").exists()
    assert not is_trusted(result.folder)                                   # the zip's own "trusted": true ignored
    assert remove_model(result.folder, lambda question: True) == result.folder
    from backsplit.models.archive import machine_local

    assert sorted(result.skipped) == sorted(EXTRA)
    assert all(machine_local(name.split("/", 1)[1]) for name in EXTRA)   # the one predicate export uses too


def test_import_name_message(tiny_model_dir, tmp_path):
    dirty = _zip_with_local_state(tiny_model_dir, tmp_path)
    target = tmp_path / "other"
    named = import_model(dirty, target, name="mine")
    assert named.name == "mine" and named.renamed_from is None             # today: "kidney" (nothing had it)
    again = import_model(dirty, target, name="mine", rename_if_exists=True)
    assert again.name == "mine_2" and again.renamed_from == "mine"
    run = subprocess.run([sys.executable, "-m", "backsplit", "model", "import", str(dirty), "--models-dir",
                          str(target), "--name", "yours"], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert run.returncode == 0 and "was taken" not in run.stdout and "left out 4 file(s)" in run.stdout
