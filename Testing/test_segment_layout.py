"""BackSplit Segment as a clinician meets it (issue 20, UX review section 2): sections in the order of the work,
rarely used options in collapsed Advanced groups, a tooltip on every control, the research-use line next to the
lesion result, and start buttons enabled only when their inputs are valid (BackSplitSegmentLib/readiness.py, with a
stand-in button holding QWidget's ``enabled`` and ``toolTip`` properties, Qt 5.15 ``qwidget.h``)."""

import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
UI = REPO / "BackSplitSegment" / "Resources" / "UI" / "BackSplitSegment.ui"
CONTROLS = {"QPushButton", "QCheckBox", "QComboBox", "QSpinBox", "QDoubleSpinBox", "QLineEdit", "ctkPathLineEdit",
            "qMRMLNodeComboBox", "QListWidget", "QTableWidget", "ctkDoubleSpinBox"}


def _prop(widget, name):
    found = widget.find(f"property[@name='{name}']/*")
    return None if found is None else found.text


def _sections():
    top = ET.parse(UI).getroot().find("widget")
    return [w for w in top.iter("widget") if w.get("class") == "ctkCollapsibleButton"]


def _visible_controls(widget):
    """Controls shown when the panel opens: not inside a collapsed section or Advanced group, not hidden."""
    shown = []

    def walk(node):
        for item in node:
            if item.tag == "widget":
                if item.get("class") in ("ctkCollapsibleButton", "ctkCollapsibleGroupBox") and \
                        _prop(item, "collapsed") == "true":
                    continue
                if _prop(item, "visible") == "false":
                    continue
                if item.get("class") in CONTROLS:
                    shown.append(item.get("name"))
            walk(item)
    walk(widget)
    return shown


def test_sections_follow_the_work_and_options_sit_in_collapsed_advanced_groups():
    sections = _sections()
    assert [s.get("name") for s in sections] == [
        "casesCollapsibleButton", "supportsCollapsibleButton", "classesCollapsibleButton", "exportCollapsibleButton",
        "applyCollapsibleButton", "loopCollapsibleButton"]
    groups = [w for s in sections for w in s.iter("widget") if w.get("class") == "ctkCollapsibleGroupBox"]
    assert len(groups) >= 5 and all(_prop(g, "collapsed") == "true" and _prop(g, "title") == "Advanced"
                                     for g in groups)
    top = ET.parse(UI).getroot().find("widget")
    shown = _visible_controls(top)
    assert len(shown) <= 25, shown   # was 40 of 70 (UX review); peers show 7-15; 25th: Fast preview beside Apply
    for name in ("datasetId", "channelNames", "contextLabels", "overwrite", "lesionOnly", "decisionThreshold",
                 "extraChannelSelector", "nameMapping"):
        assert name not in shown, name
    names = [w.get("name") for w in top.iter("widget")]
    for bound in ("outputFolder", "datasetId", "binaryTwin", "modelFolder", "minLesionVolume"):
        assert bound in names                          # moved, still bound (test_ui_static checks the bindings)


def test_every_control_has_a_tooltip_and_the_result_says_research_use_only():
    top = ET.parse(UI).getroot().find("widget")
    missing = [w.get("name") for w in top.iter("widget") if w.get("class") in CONTROLS and not _prop(w, "toolTip")]
    assert missing == []
    layouts = [layout for layout in top.iter("layout")
               if any(w.get("name") == "summaryLabel" for w in layout.findall("item/widget"))]
    assert len(layouts) == 1
    in_order = [w.get("name") for w in layouts[0].findall("item/widget")]
    assert in_order[in_order.index("summaryLabel") + 1] == "researchUseLabel"
    label = next(w for w in top.iter("widget") if w.get("name") == "researchUseLabel")
    assert _prop(label, "text") == "Research use only: not for clinical decisions."
    handoff = next(w for w in top.iter("widget") if w.get("name") == "trainOnDatasetButton")
    assert _prop(handoff, "visible") == "false"         # shown only after a successful export


def test_start_buttons_say_what_is_missing(tmp_path, monkeypatch):
    pytest.importorskip("slicer")
    from BackSplitSegmentLib.readiness import (
        ReadyButtons,
        apply_missing,
        export_missing,
        generate_missing,
        suggest_missing,
    )

    monkeypatch.setenv("HOME", str(tmp_path))
    assert "at least one case" in export_missing(0, ["tumor"], "BackSplit")
    assert "target" in export_missing(2, [], "BackSplit")
    assert "dataset name" in export_missing(2, ["tumor"], "  ")
    assert export_missing(2, ["tumor"], "BackSplit") is None
    assert "model folder" in apply_missing("", object())          # a cleared field is not "."
    assert "does not exist" in apply_missing("models/none", object())
    (tmp_path / "models" / "Kidney").mkdir(parents=True)
    assert "input volume" in apply_missing("models/Kidney", None)
    assert apply_missing(str(tmp_path / "models" / "Kidney"), object()) is None
    assert "organ model folder" in generate_missing(1, True, ".")
    assert generate_missing(1, False, "") is None
    assert "target" in suggest_missing(1, "") and suggest_missing(1, "tumor") is None

    button, busy_button = types.SimpleNamespace(enabled=True, toolTip=""), types.SimpleNamespace(enabled=False,
                                                                                                  toolTip="")
    cases = []
    ready = ReadyButtons()
    ready.add(button, lambda: False, lambda: export_missing(len(cases), ["tumor"], "X"), "Write both datasets")
    ready.add(busy_button, lambda: True, lambda: "never asked", "")
    ready.add(types.SimpleNamespace(enabled=False, toolTip=""), lambda: False, lambda: 1 / 0, "tip")
    ready.update()
    assert not button.enabled and "at least one case" in button.toolTip
    assert busy_button.enabled is False and busy_button.toolTip == ""   # its PanelAction owns it while busy
    assert ready.entries[2].button.enabled                               # a failing rule lets the click report
    cases.append("case")
    ready.update()
    assert button.enabled and button.toolTip == "Write both datasets"
