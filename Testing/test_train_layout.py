"""BackSplit Train as a clinician meets it (issue 20, UX review section 2): Inputs, Outputs, a collapsed Advanced
section and Run; a tooltip on every control; Resume and Overwrite beside Start; the SLURM fields shown only for
"Run on: slurm"; Start enabled only when the inputs are valid, its tooltip saying what is missing
(BackSplitTrainLib/panel_state.py).

The .ui is read as XML (there is no Qt here). The parameter-node tests use a real ``vtkMRMLScriptedModuleNode`` of
slicer-core: changes reach the panel through its ModifiedEvent, as in Slicer. Two things are stand-ins because they
cannot run here: the Qt widgets (objects holding QWidget's ``enabled``, ``visible`` and ``toolTip`` properties, Qt 5.15
``qwidget.h``) and the parameterNodeWrapper (not in slicer-core), replaced by ``WrapperView``, which reads the node as
the wrapper's serializers do (``Base/Python/slicer/parameterNodeWrapper/serializers.py`` v5.10.0: str as stored
:298-302, ``Path(value)`` :337-341, bool as "True"/"False" :371-375).
"""

from __future__ import annotations

import ast
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace as NS

import pytest

REPO = Path(__file__).resolve().parent.parent
UI = REPO / "BackSplitTrain" / "Resources" / "UI" / "BackSplitTrain.ui"
CONTROLS = {"QPushButton", "QCheckBox", "QComboBox", "QSpinBox", "QDoubleSpinBox", "QLineEdit", "ctkPathLineEdit",
            "qMRMLNodeComboBox", "ctkDoubleSpinBox", "QPlainTextEdit"}


def _prop(widget, name):
    found = widget.find(f"property[@name='{name}']/*")
    return None if found is None else found.text


def _top():
    return ET.parse(UI).getroot().find("widget")


def _widget(name):
    return next(w for w in _top().iter("widget") if w.get("name") == name)


def _names(element) -> set:
    return {w.get("name") for w in element.iter("widget")}


def _shown_controls(element) -> list:
    """Controls shown when the panel opens: not inside a collapsed section, not hidden."""
    shown = []
    for item in element:
        if item.tag == "widget":
            if _prop(item, "collapsed") == "true" or _prop(item, "visible") == "false":
                continue
            if item.get("class") in CONTROLS:
                shown.append(item.get("name"))
        shown += _shown_controls(item)
    return shown


def test_sections_are_inputs_outputs_advanced_run_and_advanced_is_collapsed():
    top = _top()
    sections = [w for w in top.iter("widget") if w.get("class") == "ctkCollapsibleButton"]
    assert [(s.get("name"), _prop(s, "text"), _prop(s, "collapsed")) for s in sections] == [
        ("inputsCollapsibleButton", "Inputs", "false"), ("outputsCollapsibleButton", "Outputs", "false"),
        ("advancedCollapsibleButton", "Advanced", "true"), ("runCollapsibleButton", "Run", "false")]
    inputs, outputs, advanced, run = sections
    assert {"datasetFolder", "withBinary", "configuration", "epochs", "device"} <= _names(inputs)
    assert "workFolder" in _names(outputs)
    assert {"fold", "iterationsPerEpoch", "batchSize", "supportRecipe", "learnedContext", "targetSampling",
            "pretrainedModel", "learningRate", "modelListCombo", "executor", "slurmPartition", "slurmConfig",
            "showContextButton"} <= _names(advanced)
    shown = _shown_controls(top)
    assert len(shown) <= 12, shown                          # was 18 of 24 (UX review); TotalSegmentator shows 7
    assert {"startButton", "cancelButton", "resume", "overwrite", "datasetFolder"} <= set(shown)


def test_every_parameter_has_a_widget_and_every_control_a_tooltip():
    from test_ui_static import parameter_specs

    top = _top()
    bound = {_prop(w, "SlicerParameterName") for w in top.iter("widget") if _prop(w, "SlicerParameterName")}
    assert bound == set(parameter_specs("BackSplitTrain"))
    missing = [w.get("name") for w in top.iter("widget")
               if (w.get("class") in CONTROLS or _prop(w, "SlicerParameterName")) and not (_prop(w, "toolTip") or
                                                                                            "").strip()]
    assert missing == []


def test_resume_and_overwrite_sit_next_to_start():
    rows = [layout for layout in _top().iter("layout")
            if "startButton" in [w.get("name") for w in layout.findall("item/widget")]]
    assert len(rows) == 1
    assert [w.get("name") for w in rows[0].findall("item/widget")] == ["startButton", "resume", "overwrite",
                                                                       "cancelButton"]
    for name in ("resume", "overwrite"):
        assert _widget(name).get("class") == "QCheckBox" and len(_prop(_widget(name), "toolTip")) > 40


def test_slurm_fields_sit_in_a_group_hidden_until_slurm_is_chosen():
    group = _widget("slurmGroupBox")
    assert _prop(group, "visible") == "false"
    assert {"slurmPartition", "slurmConfig"} <= _names(group)
    assert "slurmGroupBox" in _names(_widget("advancedCollapsibleButton"))


def test_widget_keeps_the_panel_state_on_the_parameter_node():
    """The widget (Qt, cannot run here) watches the node when it binds, re-applies the rules when Start's work ends
    and stops watching in cleanup."""
    tree = ast.parse((REPO / "BackSplitTrain" / "BackSplitTrain.py").read_text(encoding="utf-8"))
    widget = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "BackSplitTrainWidget")
    body = {n.name: ast.unparse(n) for n in widget.body if isinstance(n, ast.FunctionDef)}
    assert "self._panelState.watch(self._parameterNode)" in body["initializeParameterNode"]
    assert "self._panelState.update()" in body["_idle"] and "self._panelState.unwatch()" in body["cleanup"]
    assert "self._startAction.busy" in body["setup"]


DEFAULTS = {"datasetFolder": "", "pretrainedModel": "", "slurmConfig": "", "resume": "False",
            "learnedContext": "none", "supportRecipe": "default", "executor": "local", "slurmPartition": ""}
PATHS, BOOLS = {"datasetFolder", "pretrainedModel", "slurmConfig"}, {"resume"}


class WrapperView:
    """The parameterNodeWrapper's view of the node (module docstring): ``parameterNode`` and typed attributes."""

    def __init__(self, node):
        self.parameterNode = node

    def __getattr__(self, name):
        value = self.parameterNode.GetParameter(name)
        if name in PATHS:
            return Path(value)                  # an unset Path parameter reads as Path("") == "."
        return value == "True" if name in BOOLS else value


@pytest.fixture
def panel(slicer_scene):
    from BackSplitTrainLib.panel_state import PanelState

    node = slicer_scene.slicer.vtkMRMLScriptedModuleNode()
    node.SetSingletonTag("BackSplitTrain")
    for name, value in DEFAULTS.items():           # the wrapper writes each default into a new node
        node.SetParameter(name, value)
    slicer_scene.scene.AddNode(node)
    view = WrapperView(node)
    ui = NS(startButton=NS(enabled=True, toolTip="Train in a background process"),   # QWidget stand-ins
            slurmGroupBox=NS(visible=False))
    busy = [False]
    state = PanelState(ui, lambda: view, lambda: busy[0])
    state.watch(view)
    yield NS(node=node, ui=ui, busy=busy, state=state, view=view)
    state.unwatch()


def test_slurm_fields_follow_the_executor_parameter(panel):
    ui, node = panel.ui, panel.node
    assert ui.slurmGroupBox.visible is False
    node.SetParameter("executor", "slurm")                 # what the Run on combo box writes; no update() called
    assert ui.slurmGroupBox.visible is True
    node.SetParameter("executor", "local")
    assert ui.slurmGroupBox.visible is False
    panel.busy[0] = True                                   # also while a training runs
    node.SetParameter("executor", "slurm")
    assert ui.slurmGroupBox.visible is True
    panel.state.unwatch()                                  # cleanup: the node no longer drives the panel
    node.SetParameter("executor", "local")
    assert ui.slurmGroupBox.visible is True


def test_start_is_enabled_only_with_valid_inputs_and_says_what_is_missing(panel, tmp_path):
    ui, node = panel.ui, panel.node
    start = ui.startButton
    assert not start.enabled and "Choose the dataset folder" in start.toolTip
    dataset = tmp_path / "Dataset501_Kidney"
    node.SetParameter("datasetFolder", str(dataset))
    assert not start.enabled and "does not exist" in start.toolTip and str(dataset) in start.toolTip
    dataset.mkdir()
    node.SetParameter("datasetFolder", str(dataset) + "/")  # a new value: ModifiedEvent
    assert not start.enabled and "has no dataset.json" in start.toolTip
    (dataset / "dataset.json").write_text("{}", encoding="utf-8")
    node.Modified()
    assert start.enabled and start.toolTip == "Train in a background process"

    model = tmp_path / "binary model"
    node.SetParameter("pretrainedModel", str(model))
    assert not start.enabled and "does not exist" in start.toolTip and "fine-tune" in start.toolTip
    model.mkdir()
    node.SetParameter("resume", "True")
    assert not start.enabled and "Resume and Fine-tune from cannot be combined" in start.toolTip
    node.SetParameter("resume", "False")
    assert start.enabled
    node.SetParameter("pretrainedModel", "")

    node.SetParameter("learnedContext", "learned:2")
    node.SetParameter("supportRecipe", "head")
    assert not start.enabled and "'head'" in start.toolTip
    node.SetParameter("supportRecipe", "paper")
    assert start.enabled

    node.SetParameter("slurmConfig", str(tmp_path / "slurm.json"))
    assert start.enabled                                   # not used while Run on is local
    node.SetParameter("executor", "slurm")
    assert not start.enabled and "SLURM config file" in start.toolTip
    (tmp_path / "slurm.json").write_text("{}", encoding="utf-8")
    node.Modified()
    assert start.enabled


def test_start_is_left_to_its_action_while_busy_and_a_failing_rule_lets_the_click_report(panel, tmp_path):
    from BackSplitTrainLib.panel_state import PanelState

    ui, node = panel.ui, panel.node
    panel.busy[0] = True                                   # the Start button's PanelAction owns it while busy
    ui.startButton.enabled = False
    (tmp_path / "Dataset501_X").mkdir()
    (tmp_path / "Dataset501_X" / "dataset.json").write_text("{}", encoding="utf-8")
    node.SetParameter("datasetFolder", str(tmp_path / "Dataset501_X"))
    assert ui.startButton.enabled is False
    panel.busy[0] = False
    panel.state.update()                                   # what the widget's _idle does after the work ended
    assert ui.startButton.enabled is True

    broken = PanelState(ui, lambda: NS(executor="local"), lambda: False)   # no datasetFolder: the rule raises
    ui.startButton.enabled = False
    broken.update()
    assert ui.startButton.enabled is True
    PanelState(ui, lambda: None, lambda: False).update()  # not bound yet (scene closing): nothing changes
