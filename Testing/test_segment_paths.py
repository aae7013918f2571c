"""N4 (issue 20): BackSplit Segment's folders never resolve against Slicer's working directory. A cleared field (the
parameterNodeWrapper reads it as ``Path()`` = ".", guiConnectors.py v5.10.0:673-706) means the default folder, a
relative path is taken under the home folder, and a folder the user must choose (model, dataset) is refused with
a message instead of becoming ".". The rules live in ``BackSplitShared.paths`` (both panels)."""

import types
from pathlib import Path

import pytest

from backsplit.errors import InputError


def _parameters(output):
    return types.SimpleNamespace(outputFolder=output, datasetId=501, datasetName="BackSplit", channelNames="CT",
                                 nameMapping="", binaryTwin=True, allowNegative=False, missingAsAbsent=False,
                                 overwrite=False, contextLabels="none", contextDetail="")


def test_cleared_or_relative_export_folder_is_under_home_never_the_working_directory(tmp_path, monkeypatch):
    pytest.importorskip("slicer")
    from BackSplitSegmentLib.export_run import export_request

    home, cwd = tmp_path / "home", tmp_path / "slicer working dir"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    for cleared in (Path(), Path("."), "", None):
        assert export_request(_parameters(cleared), ["tumor"], ["kidney"]).out_root == home / "BackSplit" / \
            "nnUNet_raw"
    assert export_request(_parameters(Path("exports")), ["tumor"], []).out_root == home / "exports"
    assert export_request(_parameters(Path("~/x")), ["tumor"], []).out_root == home / "x"
    assert export_request(_parameters(tmp_path / "abs"), ["tumor"], []).out_root == tmp_path / "abs"
    assert list(cwd.iterdir()) == []


def test_folders_the_user_must_choose_are_refused_when_cleared(tmp_path, monkeypatch):
    from BackSplitShared.paths import required_folder, resolve_folder

    monkeypatch.setenv("HOME", str(tmp_path))
    for cleared in (Path(), ".", "  ", None):
        with pytest.raises(InputError, match="choose the model folder first"):
            required_folder(cleared, "model folder")
    assert required_folder("models/Kidney", "model folder") == tmp_path / "models" / "Kidney"
    assert resolve_folder(".", tmp_path / "default") == tmp_path / "default"
