"""Checkpoints that do not fit the network give one line naming the file and the fix instead of a traceback
(backsplit/training/pretrained.py ``checkpoint_weights`` / ``check_weights_fit``, used by predict in
backsplit/inference/model.py and by fine-tuning); names saved through ``torch.compile`` (``_orig_mod.``) load.
A command's own unforeseen error ends in one line with the log path and exit 70 (backsplit/cli.py, backsplit/
runtime/lastresort.py). The model is the legacy fixture's real tiny model (Testing/data/legacy-805fbf2); its
checkpoint is rewritten in each test's copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from backsplit.cli import main

MODEL = Path(__file__).resolve().parent / "data" / "legacy-805fbf2" / "model"
IMAGE = Path(__file__).resolve().parent / "data" / "legacy-805fbf2" / "raw" / "Dataset021_Legacy" / "imagesTr"


@pytest.fixture
def model(tmp_path):
    shutil.copytree(MODEL, tmp_path / "model")
    return tmp_path / "model"


def _rewrite(model: Path, change) -> Path:
    import torch

    path = model / "fold_all" / "checkpoint_final.pth"
    saved = torch.load(path, map_location="cpu", weights_only=False)
    torch.save(change(saved), path)
    return path


def _predict(model: Path, tmp_path: Path, capsys) -> tuple[int, str]:
    image = next(IMAGE.glob("*_0000.nii.gz"))
    code = main(["predict", str(model), str(image), "--out", str(tmp_path / "out"), "--device", "cpu",
                 "--trust-model", "--no-mirroring", "--quiet"])
    return code, capsys.readouterr().err


def test_bare_state_dict_is_named_with_the_fix(model, tmp_path, capsys):
    path = _rewrite(model, lambda saved: saved["network_weights"])
    code, err = _predict(model, tmp_path, capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert str(path) in err and "bare state dict" in err and "'network_weights'" in err


def test_missing_weight_is_named_with_the_fix(model, tmp_path, capsys):
    def drop(saved):
        del saved["network_weights"]["encoder.stages.0.0.convs.0.conv.bias"]
        return saved

    path = _rewrite(model, drop)
    code, err = _predict(model, tmp_path, capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert str(path) in err and "1 weight(s) of the network are missing, e.g. 'encoder.stages.0.0.convs.0.conv.bias'" \
        in err and "another plans.json" in err


def test_compiled_network_names_load(model, tmp_path, capsys):
    _rewrite(model, lambda saved: {**saved, "network_weights": {f"_orig_mod.{k}": v for k, v in
                                                                saved["network_weights"].items()}})
    code, err = _predict(model, tmp_path, capsys)
    assert code == 0, err
    assert list((tmp_path / "out").glob("*.nii.gz"))


def test_internal_error_is_one_line_with_the_log_path(monkeypatch, tmp_path, capsys):
    import backsplit.commands.compare as compare

    def broken(args):
        raise IndexError("list index out of range")

    monkeypatch.setenv("BACKSPLIT_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setattr(compare, "run", broken)
    code = main(["compare", "a.csv", "b.csv", "--out", str(tmp_path / "c.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 70 and len(err) == 1, err
    logs = list((tmp_path / "logs").glob("backsplit-error-*.log"))
    assert len(logs) == 1 and str(logs[0]) in err[0]
    assert "internal error (IndexError: list index out of range)" in err[0]
    log = logs[0].read_text(encoding="utf-8")
    assert "Traceback" in log and "compare a.csv b.csv" in log


def test_read_only_folder_is_one_line_exit_1(monkeypatch, capsys):
    import backsplit.commands.compare as compare

    def refused(args):
        raise PermissionError(13, "Permission denied", "/data/out/comparison.png")

    monkeypatch.setattr(compare, "run", refused)
    code = main(["compare", "a.csv", "b.csv", "--out", "x.png"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err == ["backsplit: error: '/data/out/comparison.png': permission denied; choose a folder you "
                                 "can write to (or fix its permissions)"]
