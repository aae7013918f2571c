"""The connected flow between the panels (issue 20): an export offers "Train on this dataset", which hands the
dataset to BackSplit Train and opens it; Train takes it on its next visit; a finished training lands in the models
folder and offers "Use in BackSplit Segment", which Segment takes as Apply's model folder. Through the real
``recent.json`` (backsplit/models/recent.py) in a temporary home.

Qt stand-in: ``Button`` holds only what ``HandoffButton`` uses of a ``QPushButton`` (the ``visible`` and ``toolTip``
properties of QWidget and the ``clicked`` signal of QAbstractButton, Qt 5.15 ``qwidget.h``/``qabstractbutton.h``, as
PythonQt exposes them); ``selectModule`` is recorded instead of switching modules (no application here)."""

import types
from pathlib import Path

import pytest
from fixtures_panels import Signal  # the Qt signal stand-in (no Qt here)


class Button:
    def __init__(self):
        self.visible, self.toolTip, self.clicked = True, "", Signal()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("BACKSPLIT_MODELS_DIR", raising=False)
    return tmp_path


def test_export_hands_its_dataset_to_train_and_training_its_model_to_segment(home):
    from BackSplitShared.handoff import HandoffButton, take_handoff
    from BackSplitTrainLib.training_run import model_destination, take_dataset_handoff

    opened, dataset = [], home / "BackSplit" / "nnUNet_raw" / "Dataset501_BackSplit"
    dataset.mkdir(parents=True)
    button = Button()
    train_on = HandoffButton(button, "datasets", "BackSplitTrain", opened.append, "Train on {folder}")
    assert not button.visible                                     # nothing exported yet
    train_on.offer(dataset)                                       # the export finished
    assert button.visible and str(dataset) in button.toolTip
    button.clicked.emit(False)                                    # QAbstractButton::clicked(bool)
    assert opened == ["BackSplitTrain"]
    train_parameters = types.SimpleNamespace(datasetFolder=Path())
    assert take_dataset_handoff(train_parameters) == dataset and train_parameters.datasetFolder == dataset
    assert take_dataset_handoff(train_parameters) is None         # taken once: a later visit changes nothing

    destination = model_destination(dataset, "3d_fullres")       # TrainOptions.model_dir: the models folder
    assert destination == home / "BackSplit" / "models" / "Dataset501_BackSplit_3d_fullres"
    destination.mkdir(parents=True)
    assert model_destination(dataset, "3d_fullres").name == "Dataset501_BackSplit_3d_fullres_2"
    use_in = HandoffButton(Button(), "models", "BackSplitSegment", opened.append, "{folder}")
    use_in.offer(destination)                                     # the training finished with this model
    use_in.click()
    assert opened[-1] == "BackSplitSegment" and take_handoff("models") == destination
    use_in.offer(None)
    assert not use_in.button.visible


def test_a_failed_hand_over_is_reported_by_the_panels_guard(home):
    from BackSplitShared.handoff import HandoffButton

    reported = []

    def guard(fn):                                                # stands in for panel_action.once(what, fn)
        def run(*args):
            try:
                fn(*args)
            except OSError as exc:
                reported.append(str(exc))
        return run

    (home / "BackSplit").write_text("a file where the BackSplit folder should be")
    dataset = home / "Dataset501_BackSplit"
    dataset.mkdir()
    opened, button = [], Button()
    HandoffButton(button, "datasets", "BackSplitTrain", opened.append, "{folder}", guard).offer(dataset)
    button.clicked.emit(False)
    assert len(reported) == 1 and opened == []
