"""The model manager on a real trained tiny model: list/show/filter, zip export -> import with checksum
verification, tampered and zip-slip archives refused, trust, and removal (asked first, refused while in use)."""

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from backsplit.errors import CancelledError, InputError, OutputError
from backsplit.models.archive import CHECKSUMS_NAME, export_model, import_model
from backsplit.models.catalog import find_model, list_models, models_for_channels
from backsplit.models.remove import remove_model
from backsplit.models.trust import confirm_trust, is_trusted, trust_warning
from backsplit.models.usage import ModelInUse, model_users


def copy_model(source, models, name, **manifest_changes):
    target = models / name
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("checkpoint_latest.pth", "checkpoint_best.pth",
                                                                  ".backsplit-*"))
    manifest = json.loads((target / "backsplit_model.json").read_text(encoding="utf-8"))
    manifest.update(manifest_changes)
    (target / "backsplit_model.json").write_text(json.dumps(manifest))
    return target


@pytest.fixture
def models(tiny_model_dir, tmp_path):
    folder = tmp_path / "models"
    copy_model(tiny_model_dir, folder, "kidney-v1", created="2026-01-01T10:00:00+0000")
    copy_model(tiny_model_dir, folder, "kidney-v2", created="2026-02-01T10:00:00+0000",
               parent_model={"name": "kidney-v1"}, dataset_version=2)
    copy_model(tiny_model_dir, folder, "ct-pet", created="2026-03-01T10:00:00+0000",
               channel_names={"0": "CT", "1": "PET"})
    (folder / "not a model").mkdir()
    return folder


def rewrite_zip(source, target, change):
    """Copy a zip entry by entry; ``change(name, data)`` returns new data, or None to drop the entry."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            data = change(info.filename, old.read(info))
            if data is not None:
                new.writestr(info.filename, data)
    return target


def test_list_show_and_filter(models):
    entries = list_models(models)
    assert [e.name for e in entries] == ["ct-pet", "kidney-v2", "kidney-v1"]        # newest first
    assert [e.name for e in models_for_channels(entries, 1)] == ["kidney-v2", "kidney-v1"]
    assert [e.name for e in models_for_channels(entries, 2)] == ["ct-pet"]
    fields = find_model(models, "kidney-v2").fields()
    assert fields["targets"] == ["Lesion"] and fields["supports"] == ["Vessel", "Organ"]
    assert fields["parent_model"] == "kidney-v1" and fields["dataset_version"] == 2 and fields["trusted"]
    assert fields["configuration"] == "2d" and fields["size_mb"] > 0 and fields["dataset"] == "Dataset011_Tiny"
    with pytest.raises(InputError, match="no model 'nope'.*kidney-v1"):
        find_model(models, "nope")


def test_export_import_round_trip_verifies_checksums(models, tmp_path):
    from backsplit.inference.model import read_model_info

    archive = export_model(models / "kidney-v1", tmp_path / "kidney.zip")
    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
        listed = z.read(CHECKSUMS_NAME).decode().splitlines()
    assert CHECKSUMS_NAME in names and "kidney-v1/backsplit_model.json" in names and len(listed) == len(names) - 1
    elsewhere = tmp_path / "other computer"
    result = import_model(archive, elsewhere)
    assert result.name == "kidney-v1" and result.renamed_from is None
    for path in (models / "kidney-v1").rglob("*"):
        if path.is_file():
            assert (result.folder / path.relative_to(models / "kidney-v1")).read_bytes() == path.read_bytes()
    read_model_info(result.folder)
    assert not is_trusted(result.folder) and "pickle" in trust_warning(result.folder)
    assert "[untrusted]" in list_models(elsewhere)[0].line()
    confirm_trust(result.folder)
    assert is_trusted(result.folder) and trust_warning(result.folder) is None
    with pytest.raises(OutputError, match="'kidney-v1' exists already"):
        import_model(archive, elsewhere)
    again = import_model(archive, elsewhere, rename_if_exists=True)
    assert again.name == "kidney-v1_2" and again.renamed_from == "kidney-v1" and not is_trusted(again.folder)
    assert sorted(p.name for p in elsewhere.iterdir()) == ["kidney-v1", "kidney-v1_2"]   # no staging left


def test_tampered_archives_are_refused(models, tmp_path):
    archive = export_model(models / "kidney-v1", tmp_path / "kidney.zip")
    target = tmp_path / "target"

    def flip(name, data):
        if name.endswith("checkpoint_final.pth"):
            data = bytearray(data)
            data[len(data) // 2] ^= 0xFF
            return bytes(data)
        return data
    cases = {
        "altered": (flip, "checkpoint_final.pth' does not match its checksum"),
        "missing": (lambda n, d: None if n.endswith("plans.json") else d, "missing from the archive: kidney-v1/plans"),
        "extra": (lambda n, d: d, "not named in the checksum list: kidney-v1/extra.py"),
        "no list": (lambda n, d: None if n == CHECKSUMS_NAME else d, "no checksum list"),
    }
    for label, (change, message) in cases.items():
        bad = rewrite_zip(archive, tmp_path / f"{label}.zip", change)
        if label == "extra":
            with zipfile.ZipFile(bad, "a") as z:
                z.writestr("kidney-v1/extra.py", "print('hello')")
        with pytest.raises(InputError, match=message):
            import_model(bad, target)
        assert not target.exists() or list(target.iterdir()) == [], label


@pytest.mark.parametrize("entry", ["../evil.txt", "kidney-v1/../../evil.txt", "/tmp/evil.txt", "C:/evil.txt",
                                   "kidney-v1\\..\\..\\evil.txt"])
def test_zip_slip_entries_are_refused(models, tmp_path, entry):
    archive = export_model(models / "kidney-v1", tmp_path / "kidney.zip")
    with zipfile.ZipFile(archive, "a") as z:
        z.writestr(entry, "pwned")
    target = tmp_path / "deep" / "target"
    with pytest.raises(InputError, match="absolute path|'\\.\\.'"):
        import_model(archive, target)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "deep" / "evil.txt").exists()
    assert not target.exists() or list(target.iterdir()) == []


def test_remove_asks_and_refuses_models_in_use(models):
    asked = []
    with pytest.raises(CancelledError):
        remove_model(models / "kidney-v1", lambda q: asked.append(q) or False)
    assert "Remove the model 'kidney-v1'" in asked[0] and (models / "kidney-v1").is_dir()
    with ModelInUse(models / "kidney-v1", "prediction"):
        assert model_users(models / "kidney-v1") == [f"prediction (process {os.getpid()})"]
        with pytest.raises(OutputError, match="in use \\(prediction"):
            remove_model(models / "kidney-v1", lambda q: True)
    lock = models / ".backsplit-train-kidney-v1-fold_all.lock"       # the training lock of training/lock.py
    lock.write_text(str(os.getpid()))
    with pytest.raises(OutputError, match="in use \\(training"):
        remove_model(models / "kidney-v1", lambda q: True)
    lock.write_text("999999999")                                     # stale: its process is gone
    assert remove_model(models / "kidney-v1", lambda q: True) == models / "kidney-v1"
    assert not (models / "kidney-v1").exists()
    assert not [p for p in models.iterdir() if p.name.startswith(".backsplit-r")]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "backsplit", *map(str, args)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)


def test_command_line(models, tmp_path):
    listed = run_cli("model", "list", "--models-dir", models)
    assert listed.returncode == 0 and listed.stdout.index("ct-pet") < listed.stdout.index("kidney-v1")
    assert "ct-pet" not in run_cli("model", "list", "--models-dir", models, "--channels", "1").stdout
    shown = json.loads(run_cli("model", "show", "kidney-v2", "--models-dir", models, "--json").stdout)
    assert shown["parent_model"] == "kidney-v1" and shown["in_use"] is None
    assert run_cli("model", "export", "kidney-v2", tmp_path / "k.zip", "--models-dir", models).returncode == 0
    imported = run_cli("model", "import", tmp_path / "k.zip", "--models-dir", tmp_path / "b")
    assert imported.returncode == 0 and "checksums verified" in imported.stdout and "untrusted" in imported.stdout
    refused = run_cli("model", "import", tmp_path / "k.zip", "--models-dir", tmp_path / "b")
    assert refused.returncode == 1 and "exists already" in refused.stderr
    kept = run_cli("model", "remove", "kidney-v2", "--models-dir", tmp_path / "b")       # no terminal, no --yes
    assert kept.returncode == 130 and (tmp_path / "b" / "kidney-v2").is_dir()
    assert run_cli("model", "remove", "kidney-v2", "--models-dir", tmp_path / "b", "--yes").returncode == 0
    assert not (tmp_path / "b" / "kidney-v2").exists()
    env_listed = subprocess.run([sys.executable, "-m", "backsplit", "model", "list"], capture_output=True, text=True,
                                env={**os.environ, "BACKSPLIT_MODELS_DIR": str(models)})
    assert "kidney-v1" in env_listed.stdout


def test_apply_panel_model_choices(models, tmp_path):
    from backsplit.models.catalog import model_choices

    archive = export_model(models / "kidney-v1", tmp_path / "k.zip")
    import_model(archive, models, name="from-a-colleague")
    labels = [label for label, _ in model_choices(models, 1)]
    assert [label.split(" ")[0] for label in labels] == ["kidney-v2", "kidney-v1", "from-a-colleague"]  # newest first
    assert labels[2].endswith("[untrusted]") and not labels[1].endswith("[untrusted]")   # imported: untrusted
    assert "Lesion + 2 support(s); dataset v2; 2026-02-01" in labels[0]
    assert [folder.name for _, folder in model_choices(models, 2)] == ["ct-pet"]
    assert model_choices(tmp_path / "nowhere", 1) == []
