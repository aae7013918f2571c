"""The connected flow's engine side (backsplit/models/recent.py): recent exports and models, newest first, and the
one-time hand-over between BackSplit Segment and BackSplit Train, in ``recent.json`` beside the models location."""

import json

import pytest


def test_recent_folders_newest_first_once_and_only_existing(tmp_path, monkeypatch):
    from backsplit.models import recent

    monkeypatch.setenv("BACKSPLIT_MODELS_DIR", str(tmp_path / "BackSplit" / "models"))
    assert recent.recent_file() == tmp_path / "BackSplit" / "recent.json"
    folders = [tmp_path / f"Dataset50{i}_X" for i in range(12)]
    for folder in folders:
        folder.mkdir()
        recent.remember("datasets", folder)
    recent.remember("datasets", folders[3])                          # again: moves to the front, listed once
    listed = recent.recent("datasets")
    assert listed[0] == folders[3] and len(listed) == recent.KEEP and len(set(listed)) == recent.KEEP
    folders[11].rmdir()                                              # gone folders are left out
    assert folders[11] not in recent.recent("datasets")
    assert recent.recent("models") == []
    with pytest.raises(ValueError):
        recent.remember("dataset", folders[0])


def test_hand_over_is_taken_once_and_a_broken_file_counts_as_empty(tmp_path):
    from backsplit.models import recent

    file = tmp_path / "recent.json"
    dataset, model = tmp_path / "Dataset501_BackSplit", tmp_path / "models" / "Kidney"
    dataset.mkdir()
    model.mkdir(parents=True)
    assert recent.take_handoff("datasets", file) is None
    recent.hand_over("datasets", dataset, file)
    recent.hand_over("models", model, file)
    assert recent.take_handoff("datasets", file) == dataset
    assert recent.take_handoff("datasets", file) is None            # taken once
    assert recent.take_handoff("models", file) == model
    assert recent.recent("datasets", file) == [dataset] and recent.recent("models", file) == [model]
    file.write_text("{not json")
    assert recent.recent("datasets", file) == [] and recent.take_handoff("models", file) is None
    recent.remember("models", model, file)                           # replaced by a valid file
    assert json.loads(file.read_text(encoding="utf-8"))["models"] == [str(model)]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".recent-")] == []
