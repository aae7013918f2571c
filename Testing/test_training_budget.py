"""training/budget.py and where its numbers are shown: the supports-per-budget advice (the BackSplit paper's Fig. 6
statements, named as such), the measured break-even budget with its results file, the warning before a short
BackSplit training, the training panel's "How support structures enter training" choice and break-even text
(BackSplitTrainLib/support_choice.py; the Qt widgets cannot run here, so a stand-in ``ui`` records what is shown),
the Slicer support list's warning (slicer-core) and the .ui controls (read as XML)."""

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from fixtures_panels import Signal  # the Qt signal stand-in (no Qt here)

from backsplit.errors import InputError
from backsplit.training import budget
from backsplit.training.options import TrainOptions

REPO = Path(__file__).resolve().parent.parent


def test_every_measured_number_names_an_existing_results_file():
    assert budget.MEASURED and all((REPO / f.source).is_file() for f in budget.MEASURED)
    assert budget.QUICK_RESULTS in budget.__doc__ and budget.DYNAMICS_RESULTS in budget.__doc__
    assert "paper" in budget.SOURCE_OF_SUPPORTS_TABLE and "not our measurement" in budget.SOURCE_OF_SUPPORTS_TABLE


def test_supports_warning_names_the_source_and_the_fix():
    assert budget.supports_warning(1, 5 * 50) is None                   # 1 support: the paper's fine case
    text = budget.supports_warning(9, 5 * 50)
    assert "9 support structures" in text and "250 optimiser steps" in text
    assert "BackSplit paper" in text and "not measured by BackSplit" in text and "fewer support structures" in text
    assert budget.supports_advised(10 ** 9) is None and budget.supports_warning(9, 10 ** 9) is None


def test_break_even_and_the_warning_before_a_short_training():
    assert budget.break_even_steps("paper") is None and budget.worse_up_to("paper") == 800
    text = budget.break_even_text("paper")
    assert "above 800 optimiser steps" in text and budget.QUICK_RESULTS in text
    # the default (ramp:200,lvr=0.5, chosen by the rule) was never worse at 240, 800 and 1520 steps: no warning
    assert budget.short_training_warning(240, "default") is None and "1520 steps: not worse" in \
        budget.break_even_text("default")
    warning = budget.short_training_warning(240, "paper")
    assert "240 optimiser steps" in warning and "lesion recall 0.05 vs 0.62" in warning
    assert budget.DYNAMICS_RESULTS in warning and "longer than 800 optimiser steps" in warning
    assert budget.short_training_warning(5000, "paper") is None
    # measured not worse at 240 steps (and only there): no warning, and the text says what was not measured
    assert budget.short_training_warning(240, "ramp:200,lvr=0.5") is None
    assert "larger budgets not measured" in budget.break_even_text("head")
    assert "lesion recall 0.52 vs 0.62" in budget.short_training_warning(240, "lvr:1")     # CI-worse in recall at 240
    # the in-app fine-tuning (5 x 50 steps) counts as the measured 240-step fine-tuning
    assert "lost the cyst" in budget.short_training_warning(250, budget.recipe_key({"head_init": "reinit"}, True))
    assert "not been measured" in budget.break_even_text("cap:0.5")
    assert "false-positive lesions" in budget.short_training_warning(250, "finetune:preserve")


def test_recipe_key_of_the_effective_settings():
    def key(**kw):
        return budget.recipe_key(TrainOptions(dataset_dir=".", work_dir=".", **kw).variants)

    assert key() == "ramp:200,lvr=0.5" and key(recipe="paper") == "paper"       # the default is the measured one
    assert key(support_head=1.0) == "head" and key(support_schedule="ramp:200,lvr=0.5") == "ramp:200,lvr=0.5"
    assert budget.recipe_key({"head_init": "preserve"}, fine_tuning=True) == "finetune:preserve"


def test_panel_choices_are_valid_training_options():
    from BackSplitTrainLib.support_choice import CHOICES, choice_options

    for choice in CHOICES:
        for fine_tuning in (False, True):
            kwargs = choice_options(choice, fine_tuning)
            options = TrainOptions(dataset_dir=".", work_dir=".",
                                   pretrained_model=Path("model") if fine_tuning else None, **kwargs)
            variants = options.variants                                # resolve_recipe accepts every choice
            assert choice not in ("head",) or variants["support_head"] == 1.0
            assert choice not in ("lvr:1",) or variants["support_schedule"] == "lvr:1"
    assert choice_options("paper") == {"recipe": "paper"}
    assert choice_options("ramp:200,lvr=0.5", fine_tuning=True)["head_init"] == "preserve"
    with pytest.raises(InputError, match="not a way of training the support structures"):
        choice_options("ramp:9")


class Widget:
    """Stand-in for the Qt widgets (no Qt here): the members BudgetLabel uses."""
    def __init__(self, **values):
        self.__dict__.update(values)
        self.valueChanged, self.currentIndexChanged = Signal(), Signal()


def test_break_even_label_follows_the_budget_and_the_choice():
    from BackSplitTrainLib.support_choice import BudgetLabel

    class Ui:
        epochs, iterationsPerEpoch = Widget(value=6), Widget(value=40)
        supportRecipe, breakEvenLabel = Widget(currentText="paper"), Widget(text="")

    ui = Ui()
    BudgetLabel(ui)
    assert "above 800 optimiser steps" in ui.breakEvenLabel.text and "Warning: a BackSplit training of 240" in \
        ui.breakEvenLabel.text
    ui.epochs.value = 100
    ui.epochs.valueChanged.emit(100)
    assert "above 800" in ui.breakEvenLabel.text and "Warning" not in ui.breakEvenLabel.text
    ui.supportRecipe.currentText = "head"
    ui.supportRecipe.currentIndexChanged.emit(4)
    assert ui.breakEvenLabel.text.startswith(budget.break_even_text("head"))


def test_parameter_choices_and_ui_controls_agree():
    from test_ui_static import parameter_specs

    from BackSplitTrainLib.support_choice import CHOICES

    spec = parameter_specs("BackSplitTrain")["supportRecipe"]
    assert tuple(spec["choices"]) == CHOICES and spec["default"] == "default"
    widgets = {w.get("name"): w for w in ET.parse(REPO / "BackSplitTrain" / "Resources" / "UI" /
                                                   "BackSplitTrain.ui").getroot().iter("widget")}
    combo = widgets["supportRecipe"]
    tip = combo.find("property[@name='toolTip']/string").text
    assert all(choice in tip for choice in CHOICES) and "break-even" in tip
    assert widgets["breakEvenLabel"].find("property[@name='wordWrap']/bool").text == "true"
    assert "How support structures enter training" in ET.tostring(widgets["settingsFormLabelSupportRecipe"],
                                                                   encoding="unicode")


def test_support_list_warning_in_the_segment_panel(slicer_scene):
    from BackSplitSegmentLib.supports_section import budget_note

    assert budget_note(1, 5) == ""
    note = budget_note(2, 5)                                       # 5 epochs x 50 iterations of in-app fine-tuning
    assert note == budget.supports_warning(2, 250) and "2 support structures" in note


def test_train_warns_before_a_short_backsplit_training(tmp_path, monkeypatch, capsys):
    """The worker's first event for a BackSplit dataset trained with the paper's recipe for a budget measured
    worse than the binary baseline is the warning (shown by ``backsplit train`` and the panel's log); the run is
    stopped right after it by asking for a GPU this machine does not have, so nothing is trained."""
    from fixtures_nnunet import export_tiny, tiny_options

    from backsplit.runtime.progress import EVENT_PREFIX, parse_event_line
    from backsplit.training import worker

    exported = export_tiny(tmp_path / "raw")
    monkeypatch.setenv("nnUNet_raw", str(exported.dataset_dir.parent))
    with pytest.raises(InputError, match="(?i)cuda|gpu"):
        worker.run(tiny_options(exported.dataset_dir, tmp_path / "work", device="cuda", recipe="paper"))
    events = [parse_event_line(line) for line in capsys.readouterr().out.splitlines()
              if line.startswith(EVENT_PREFIX)]
    assert events and events[0].stage == "warning" and "12 optimiser steps is short" in events[0].message
