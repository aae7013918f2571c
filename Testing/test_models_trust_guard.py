"""An imported model stays untrusted until the user says so: `backsplit predict` and `backsplit train --pretrained`
refuse it (its checkpoints are pickles that can run code) before anything loads them, `--trust-model` allows one
run, `backsplit model trust` allows it for good. Real tiny model, real zip import, real prediction."""

from __future__ import annotations

import subprocess
import sys

from backsplit.models.archive import export_model, import_model
from backsplit.models.trust import is_trusted


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "backsplit", *map(str, args)], capture_output=True, text=True)


def test_untrusted_model_is_refused_until_trusted(tiny_model_dir, tiny_dataset, tmp_path):
    archive = export_model(tiny_model_dir, tmp_path / "model.zip")
    imported = import_model(archive, tmp_path / "models").folder
    assert not is_trusted(imported)
    image = sorted((tiny_dataset.dataset_dir / "imagesTr").glob("*_0000.nii.gz"))[0]

    refused = run_cli("predict", imported, image, "--out", tmp_path / "pred", "--device", "cpu", "--quiet")
    assert refused.returncode == 1
    assert "pickle" in refused.stderr and "backsplit model trust" in refused.stderr
    assert "--trust-model" in refused.stderr
    assert not (tmp_path / "pred").exists()                         # refused before anything was written

    trained = run_cli("train", tiny_dataset.dataset_dir, "--work-dir", tmp_path / "work", "--pretrained", imported)
    assert trained.returncode == 1 and "pickle" in trained.stderr
    assert not (tmp_path / "work").exists()                         # no child process, no jobs folder

    once = run_cli("predict", imported, image, "--out", tmp_path / "pred", "--device", "cpu", "--quiet",
                   "--no-mirroring", "--trust-model")
    assert once.returncode == 0, once.stderr
    assert not is_trusted(imported)                                 # for this run only

    assert run_cli("model", "trust", imported).returncode == 0
    again = run_cli("predict", imported, image, "--out", tmp_path / "pred2", "--device", "cpu", "--quiet",
                    "--no-mirroring")
    assert again.returncode == 0, again.stderr
