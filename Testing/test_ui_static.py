"""What can be checked of the Qt panels without Qt (there is no Qt here): the .ui files against the module code.

- every parameter bound with ``SlicerParameterName`` sits on a widget that Slicer's parameterNodeWrapper can connect
  to the parameter's type (the same widget/type pairs as Slicer's guiConnectors; a wrong pair makes ``connectGui``
  raise, and the panel would not open), with choices and ranges that agree;
- every ``self.ui.<widget>.<member>`` the code uses is a member of that widget's class (small table of the Qt API used);
- every slot the widget connects and every logic method it calls exists; every timer is stopped in ``cleanup``;
- every MRML widget receives the scene; node selectors without a parameter are optional (noneEnabled) and typed;
- the widget class does no blocking work itself (no sleep/wait/whole export on the GUI thread).
"""

from __future__ import annotations

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MODULES = ["BackSplitSegment", "BackSplitTrain"]

# Widget classes that Slicer's parameterNodeWrapper connects to each parameter type (Base/Python/slicer/
# parameterNodeWrapper/guiConnectors.py). QComboBox needs a Choice annotation.
SPIN = {"QSpinBox", "QSlider", "QDoubleSpinBox", "ctkSliderWidget", "qMRMLSliderWidget", "ctkDoubleSlider",
        "ctkDoubleSpinBox", "qMRMLSpinBox"}
CONNECTABLE = {
    "bool": {"QCheckBox", "ctkCheckBox", "QPushButton", "ctkCheckablePushButton"},
    "int": SPIN,
    "float": SPIN - {"QSpinBox", "QSlider"},
    "str": {"QLineEdit", "QLabel", "QTextEdit"},
    "Path": {"ctkPathLineEdit", "ctkDirectoryButton"},
    "node": {"qMRMLNodeComboBox"},
}
COMBOS = {"QComboBox", "ctkComboBox"}

# The Qt API the panels use, per widget class (with inherited members). A member missing here is either a typo
# (the panel would fail at run time) or a real member to add to this table.
QWIDGET = {"enabled", "visible", "toolTip", "setEnabled", "setVisible", "hasFocus", "setToolTip"}
BUTTON = QWIDGET | {"clicked", "toggled", "checked", "text", "setText", "setChecked"}
API = {
    "QPushButton": BUTTON,
    "QCheckBox": BUTTON | {"stateChanged"},
    "QLabel": QWIDGET | {"text", "setText", "clear"},
    "QProgressBar": QWIDGET | {"value", "setValue", "maximum", "minimum", "setRange", "format", "reset"},
    "QSpinBox": QWIDGET | {"value", "setValue", "valueChanged", "minimum", "maximum"},
    "ctkDoubleSpinBox": QWIDGET | {"value", "setValue", "valueChanged"},
    "QDoubleSpinBox": QWIDGET | {"value", "setValue", "valueChanged", "minimum", "maximum", "setRange", "decimals",
                                 "singleStep"},
    "QLineEdit": QWIDGET | {"text", "setText", "textChanged", "editingFinished", "clear"},
    "QPlainTextEdit": QWIDGET | {"appendPlainText", "clear", "setPlainText", "toPlainText", "plainText"},
    "QComboBox": QWIDGET | {"currentText", "currentIndex", "currentIndexChanged", "addItem", "clear", "count",
                  "activated"},   # QComboBox::activated(int): user choice only (Qt 5 QComboBox signals),
    "QListWidget": QWIDGET | {"addItem", "addItems", "clear", "count", "item", "row", "takeItem", "insertItem",
                              "selectedItems", "currentRow", "setCurrentRow", "currentItem", "itemSelectionChanged"},
    "QTableWidget": QWIDGET | {"setRowCount", "rowCount", "setItem", "item", "selectedItems", "clearContents",
                               "currentRow", "itemChanged", "selectRow"},
    "qMRMLNodeComboBox": QWIDGET | {"currentNode", "setCurrentNode", "currentNodeChanged", "currentNodeID",
                                    "setMRMLScene"},
    "ctkPathLineEdit": QWIDGET | {"currentPath", "setCurrentPath", "currentPathChanged"},
    "ctkCollapsibleButton": BUTTON | {"collapsed", "setCollapsed", "contentsCollapsed"},
    "QGroupBox": QWIDGET | {"title", "setTitle"},
}


def ui_tree(module):
    return ET.parse(REPO / module / "Resources" / "UI" / f"{module}.ui").getroot()


def ui_widgets(module) -> dict:
    return {w.get("name"): w for w in ui_tree(module).iter("widget")}


def prop(widget, name):
    for p in widget.findall("property"):
        if p.get("name") == name:
            return p
    return None


def prop_text(widget, name):
    p = prop(widget, name)
    if p is None:
        return None
    child = next(iter(p), None)
    return child.text if child is not None else None


def module_ast(module):
    return ast.parse((REPO / module / f"{module}.py").read_text(encoding="utf-8"))


def class_def(tree, suffix):
    return next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name.endswith(suffix)
                and not n.name.endswith("Test" + suffix))


def wrapper_class(tree):
    return next(n for n in tree.body if isinstance(n, ast.ClassDef)
                and any(getattr(d, "id", None) == "parameterNodeWrapper" for d in n.decorator_list))


def parameter_specs(module) -> dict:
    """name -> dict(type=..., choices=[...] | None, range=(lo, hi) | None, default=...)."""
    specs = {}
    for stmt in wrapper_class(module_ast(module)).body:
        if not isinstance(stmt, ast.AnnAssign):
            continue
        annotation, choices, bounds = stmt.annotation, None, None
        if isinstance(annotation, ast.Subscript) and getattr(annotation.value, "id", None) == "Annotated":
            base, *extras = annotation.slice.elts
            for extra in extras:
                if isinstance(extra, ast.Call) and getattr(extra.func, "id", None) == "Choice":
                    choices = ast.literal_eval(extra.args[0])
                if isinstance(extra, ast.Call) and getattr(extra.func, "id", None) == "WithinRange":
                    bounds = tuple(ast.literal_eval(a) for a in extra.args)
            annotation = base
        type_name = annotation.id if isinstance(annotation, ast.Name) else ast.unparse(annotation)
        if type_name.startswith("vtkMRML"):
            type_name = "node"
        default = ast.literal_eval(stmt.value) if stmt.value is not None else None
        specs[stmt.target.id] = {"type": type_name, "choices": choices, "range": bounds, "default": default,
                                 "annotation": ast.unparse(stmt.annotation)}
    return specs


def bound_widgets(module) -> dict:
    return {name: w for name, w in ui_widgets(module).items() if prop_text(w, "SlicerParameterName")}


@pytest.mark.parametrize("module", MODULES)
def test_bound_widgets_can_represent_their_parameter(module):
    specs = parameter_specs(module)
    assert specs, "no parameters found"
    for name, widget in bound_widgets(module).items():
        parameter = prop_text(widget, "SlicerParameterName")
        spec = specs[parameter]
        cls = widget.get("class")
        if cls in COMBOS:
            assert spec["choices"], f"{module}: combo box '{name}' needs a Choice annotation on '{parameter}'"
            items = [i.find("property/string").text for i in widget.findall("item")]
            assert not items or items == [str(c) for c in spec["choices"]], \
                f"{module}: items of '{name}' {items} differ from Choice {spec['choices']}"
        else:
            assert cls in CONNECTABLE[spec["type"]], \
                f"{module}: '{name}' is a {cls}; parameterNodeWrapper cannot connect it to {spec['annotation']}"
        if cls == "qMRMLNodeComboBox" and prop(widget, "nodeTypes") is not None:
            ui_types = [s.text for s in prop(widget, "nodeTypes").iter("string")]
            assert all(t in spec["annotation"] for t in ui_types), \
                f"{name}: .ui nodeTypes {ui_types} vs parameter type {spec['annotation']}"
        if spec["range"] and cls in ("QSpinBox", "QDoubleSpinBox", "ctkDoubleSpinBox"):
            low, high = spec["range"]
            ui_min, ui_max = prop_text(widget, "minimum"), prop_text(widget, "maximum")
            assert ui_min is None or float(ui_min) == low, f"{name}: .ui minimum {ui_min} vs WithinRange {low}"
            assert ui_max is None or float(ui_max) == high, f"{name}: .ui maximum {ui_max} vs WithinRange {high}"


@pytest.mark.parametrize("module", MODULES)
def test_parameter_defaults_are_valid(module):
    for name, spec in parameter_specs(module).items():
        if spec["choices"] and spec["default"] is not None:
            assert spec["default"] in spec["choices"], name
        if spec["range"] and spec["default"] is not None:
            low, high = spec["range"]
            assert low <= spec["default"] <= high, name


def panel_sources(module) -> str:
    """The widget module and the Lib helpers that work on its ``self.ui`` (e.g. BackSplitSegmentLib/case_list.py)."""
    sources = [(REPO / module / f"{module}.py").read_text(encoding="utf-8")]
    sources += [p.read_text(encoding="utf-8") for p in sorted((REPO / module / f"{module}Lib").glob("*.py"))
                if "self.ui." in p.read_text(encoding="utf-8")]
    return "\n".join(sources)


@pytest.mark.parametrize("module", MODULES)
def test_every_widget_member_used_exists_for_its_class(module):
    widgets = ui_widgets(module)
    source = panel_sources(module)
    used = set(re.findall(r"self\.ui\.(\w+)\.(\w+)", source))
    assert used
    problems = []
    for name, member in sorted(used):
        cls = widgets[name].get("class") if name in widgets else None
        if cls is None:
            problems.append(f"{name} is not in the .ui")
        elif cls not in API:
            problems.append(f"{name}: class {cls} is not in the API table of this test")
        elif member not in API[cls]:
            problems.append(f"{name}.{member}: not a member of {cls}")
    assert not problems, problems


@pytest.mark.parametrize("module", MODULES)
def test_ui_names_are_unique_and_top_widget_takes_the_scene(module):
    root = ui_tree(module)
    names = [w.get("name") for w in root.iter("widget")]
    assert len(names) == len(set(names))
    top = root.find("widget")
    assert top.get("class") == "qMRMLWidget" and top.get("name") == module
    connected = {(c.findtext("sender"), c.findtext("signal"), c.findtext("receiver"), c.findtext("slot"))
                 for c in root.iter("connection")}
    for widget in root.iter("widget"):
        if widget.get("class", "").startswith("qMRML") and widget is not top:
            assert (module, "mrmlSceneChanged(vtkMRMLScene*)", widget.get("name"), "setMRMLScene(vtkMRMLScene*)") \
                in connected, f"{widget.get('name')} never receives the scene (add the .ui connection)"


@pytest.mark.parametrize("module", MODULES)
def test_unbound_node_selectors_are_typed_and_optional(module):
    for name, widget in ui_widgets(module).items():
        if widget.get("class") != "qMRMLNodeComboBox" or prop_text(widget, "SlicerParameterName"):
            continue
        types = [s.text for s in prop(widget, "nodeTypes").iter("string")] if prop(widget, "nodeTypes") is not None \
            else []
        assert types and all(t.startswith("vtkMRML") for t in types), f"{name}: nodeTypes not set"
        assert prop_text(widget, "noneEnabled") == "true", f"{name}: optional selector must allow None"


@pytest.mark.parametrize("module", MODULES)
def test_case_table_has_the_columns_it_is_filled_with(module):
    for name, widget in ui_widgets(module).items():
        if widget.get("class") == "QTableWidget":
            headers = [c.findtext("property/string") for c in widget.findall("column")]
            assert len(headers) >= 3 and all(headers), f"{name}: {headers}"


def methods(cls: ast.ClassDef) -> set:
    return {n.name for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


@pytest.mark.parametrize("module", MODULES)
def test_connected_slots_and_logic_calls_exist(module):
    tree = module_ast(module)
    widget, logic = class_def(tree, "Widget"), class_def(tree, "Logic")
    widget_methods = methods(widget) | {"resourcePath", "layout", "parent"}
    for base in logic.bases:   # a Logic base class kept in the module's Lib (e.g. BackSplitTrainLib/logic.py)
        for path in (REPO / module / f"{module}Lib").glob("*.py"):
            found = [n for n in ast.parse(path.read_text(encoding="utf-8")).body
                     if isinstance(n, ast.ClassDef) and n.name == getattr(base, "id", None)]
            if found:
                logic.body.extend(found[0].body)
    logic_methods = methods(logic) | {"getParameterNode", "isParameterNodeEmpty", "setDefaultParameters"} | \
        {t.attr for n in ast.walk(logic) if isinstance(n, ast.Assign) for t in n.targets
         if isinstance(t, ast.Attribute) and getattr(t.value, "id", None) == "self"}   # attributes set by the logic
    slots, logic_calls = set(), set()
    for node in ast.walk(widget):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "connect":
            for arg in node.args:
                if isinstance(arg, ast.Attribute) and getattr(arg.value, "id", None) == "self":
                    slots.add(arg.attr)
                else:   # through a PanelAction: action.slot(self.onX), action.wrap_tick(self._timer, self._pollX)
                    slots |= set(re.findall(r"self\.(on\w+|_poll\w*|_step\w*)\b", ast.unparse(arg)))
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                and node.value.attr == "logic" and getattr(node.value.value, "id", None) == "self":
            logic_calls.add(node.attr)
    assert slots and logic_calls
    assert slots <= widget_methods, f"slots not defined: {sorted(slots - widget_methods)}"
    assert logic_calls <= logic_methods, f"logic methods not defined: {sorted(logic_calls - logic_methods)}"


@pytest.mark.parametrize("module", MODULES)
def test_timers_are_stopped_in_cleanup(module):
    widget = class_def(module_ast(module), "Widget")
    source = ast.unparse(widget)
    timers = set(re.findall(r"self\.(\w+) = qt\.QTimer\(\)", source))
    assert timers, "long work is driven from timers"
    cleanup = next(n for n in widget.body if isinstance(n, ast.FunctionDef) and n.name == "cleanup")
    cleanup_source = ast.unparse(cleanup)
    for timer in timers:
        assert f"self.{timer}.stop()" in cleanup_source, f"{timer} keeps firing after the module is closed"


@pytest.mark.parametrize("module", MODULES)
def test_widget_does_no_blocking_work(module):
    widget_source = ast.unparse(class_def(module_ast(module), "Widget"))
    for pattern in (r"time\.sleep\(", r"\.wait\(", r"export_dataset\(", r"probe_devices\(", r"describeDevices\(",
                    r"subprocess\.", r"\.run_to_end\("):
        assert not re.search(pattern, widget_source), f"{module}Widget calls {pattern} on the GUI thread"


@pytest.mark.parametrize("module", MODULES)
def test_texts_shown_in_the_panel_are_translatable(module):
    source = (REPO / module / f"{module}.py").read_text(encoding="utf-8")
    literal = re.findall(r"self\.ui\.\w+\.text\s*=\s*([\"'f][^\n]*)", source)
    assert not literal, f"use _() for texts shown in the panel: {literal}"


def test_case_table_cells_are_read_only():
    """Edits in the case table would not reach the cases: the cells are not editable (Qt's editTriggers)."""
    table = ui_widgets("BackSplitSegment")["caseTable"]
    assert prop_text(table, "editTriggers") == "QAbstractItemView::NoEditTriggers"


@pytest.mark.parametrize("module", MODULES)
def test_timer_callbacks_are_guarded_and_cancel_does_not_wait(module):
    """Every timer's timeout goes through a PanelAction's wrap_tick (stop, idle, report once; the whole rule, all
    files: Testing/test_panel_actions.py); Cancel never waits on the GUI."""
    source = (REPO / module / f"{module}.py").read_text(encoding="utf-8")
    timers = set(re.findall(r"self\.(\w+) = qt\.QTimer\(\)", source))
    for timer in timers:
        connections = re.findall(rf"self\.{timer}\.timeout\.connect\((.*)", source)
        assert connections and all(".wrap_tick(" in c for c in connections), (timer, connections)
    widget = ast.unparse(class_def(module_ast(module), "Widget"))
    for method in re.findall(r"def (onCancel\w*)\(", widget):
        body = widget.split(f"def {method}(", 1)[1].split("\n    def ", 1)[0]
        assert "wait=True" not in body and (".cancel(" not in body or "wait=False" in body
                                            or "_gate.cancel()" in body or "_export.cancel()" in body), method


@pytest.mark.parametrize("module", MODULES)
def test_release_policy_is_enforced_in_the_panel(module):
    source = (REPO / module / f"{module}.py").read_text(encoding="utf-8")
    assert "releaseProblem()" in source or "release_problem(" in source
    assert "https://github.com/backsplit/SlicerBackSplit" in source          # help text links to the documentation
