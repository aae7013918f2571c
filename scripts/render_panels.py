"""Render the two module panels from their .ui files with real Qt (PySide6), offscreen, into docs/images/.

CTK and MRML widgets exist only inside Slicer, so the .ui XML is rewritten first: each becomes a standard Qt widget
that says what it stands for (a labelled stand-in: "[MRML volume selector]", "[CTK path chooser]"), and the captions
in the docs say so. The .ui holds the designer's values, not what a user sees: the defaults of the module's
parameter node (``@parameterNodeWrapper`` class in BackSplitSegment.py / BackSplitTrain.py, read with ``ast``, no
Slicer import) are applied to the widgets bound to them (``SlicerParameterName``).

    python scripts/render_panels.py                   # docs/images/panel-segment.png, panel-train.png
    python scripts/render_panels.py --out-dir /tmp/p  # elsewhere

Needs PySide6 (``pip install PySide6-Essentials``; not needed by the tests). Qt is run with the offscreen platform.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
PANELS = (("BackSplitSegment", "panel-segment.png"), ("BackSplitTrain", "panel-train.png"))
WIDTH = 520  # about the width of Slicer's module panel, in pixels
_APP = None

# CTK/MRML class -> the standard Qt class drawn in its place.
STAND_INS = {
    "qMRMLWidget": "QWidget",
    "ctkCollapsibleButton": "QGroupBox",
    "ctkPathLineEdit": "QLineEdit",
    "qMRMLNodeComboBox": "QComboBox",
    "ctkDoubleSpinBox": "QDoubleSpinBox",
    "ctkSliderWidget": "QDoubleSpinBox",
}
NODE_NAMES = {"vtkMRMLScalarVolumeNode": "volume", "vtkMRMLSegmentationNode": "segmentation"}


def parameter_defaults(module_py: Path) -> dict[str, object]:
    """Field name -> default value of the module's ``@parameterNodeWrapper`` class (fields without a default, e.g.
    node references and paths, are left out). Read with ``ast``: nothing of Slicer is imported."""
    tree = ast.parse(module_py.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and any(getattr(d, "id", "") == "parameterNodeWrapper"
                                                  for d in node.decorator_list):
            return {item.target.id: ast.literal_eval(item.value) for item in node.body
                    if isinstance(item, ast.AnnAssign) and item.value is not None}
    return {}


def _prop(widget: ET.Element, name: str) -> Optional[ET.Element]:
    for prop in widget.findall("property"):
        if prop.get("name") == name:
            return prop
    return None


def _set(widget: ET.Element, name: str, tag: str, text: str) -> None:
    prop = _prop(widget, name)
    if prop is None:
        prop = ET.Element("property", name=name)
        widget.insert(0, prop)
    for child in list(prop):
        prop.remove(child)
    ET.SubElement(prop, tag).text = text


def apply_defaults(root: ET.Element, defaults: dict[str, object]) -> list[str]:
    """Put each parameter's default into the widget bound to it; returns the parameter names applied."""
    applied = []
    for widget in root.iter("widget"):
        bound = _prop(widget, "SlicerParameterName")
        if bound is None or bound.find("string") is None:
            continue
        name = bound.find("string").text
        if name not in defaults:
            continue
        value, cls = defaults[name], widget.get("class")
        if isinstance(value, bool) and cls == "QCheckBox":
            _set(widget, "checked", "bool", "true" if value else "false")
        elif isinstance(value, (int, float)) and cls in ("QSpinBox", "QDoubleSpinBox", "ctkDoubleSpinBox"):
            _set(widget, "value", "number" if cls == "QSpinBox" else "double", str(value))
        elif isinstance(value, str) and cls == "QLineEdit":
            _set(widget, "text", "string", value)
        elif isinstance(value, str) and cls == "QComboBox":
            items = [i.find("property/string").text for i in widget.findall("item")
                     if i.find("property/string") is not None]
            if value in items:
                _set(widget, "currentIndex", "number", str(items.index(value)))
            else:
                continue
        else:
            continue
        applied.append(name)
    return applied


def rewrite(ui_text: str, defaults: dict[str, object]) -> str:
    """The .ui with the parameter defaults applied and every CTK/MRML widget replaced by its labelled stand-in.
    Collapsible sections are drawn open, titled with a triangle; a section collapsed in Slicer says so."""
    root = ET.fromstring(ui_text)
    apply_defaults(root, defaults)
    for widget in root.iter("widget"):
        cls = widget.get("class")
        if cls not in STAND_INS:
            continue
        widget.set("class", STAND_INS[cls])
        if cls == "ctkCollapsibleButton":
            text = _prop(widget, "text")
            title = text.find("string").text if text is not None else ""
            collapsed = _prop(widget, "collapsed")
            is_collapsed = collapsed is not None and collapsed.find("bool").text == "true"
            for name in ("text", "collapsed", "collapsedHeight", "contentsFrameShape"):
                prop = _prop(widget, name)
                if prop is not None:
                    widget.remove(prop)
            _set(widget, "title", "string", "\u25bc " + title + (" (collapsed in Slicer)" if is_collapsed else ""))
        elif cls == "qMRMLNodeComboBox":
            types = _prop(widget, "nodeTypes")
            kinds = [s.text for s in types.iter("string")] if types is not None else []
            label = "/".join(NODE_NAMES.get(k, k) for k in kinds) or "node"
            for prop in list(widget.findall("property")):
                if prop.get("name") != "toolTip":
                    widget.remove(prop)
            item = ET.SubElement(widget, "item")
            ET.SubElement(ET.SubElement(item, "property", name="text"), "string").text = f"[MRML {label} selector]"
        elif cls == "ctkPathLineEdit":
            for prop in list(widget.findall("property")):
                if prop.get("name") not in ("toolTip", "minimumSize"):
                    widget.remove(prop)
            _set(widget, "placeholderText", "string", "[CTK path chooser]  ...")
        elif cls in ("ctkDoubleSpinBox", "ctkSliderWidget"):
            for prop in list(widget.findall("property")):
                if prop.get("name") not in ("toolTip", "value", "minimum", "maximum", "decimals", "singleStep"):
                    widget.remove(prop)
    for tag in ("customwidgets", "connections"):
        element = root.find(tag)
        if element is not None:
            root.remove(element)
    return ET.tostring(root, encoding="unicode")


def render(module: str, out: Path) -> str:
    """Render one module's panel to ``out`` (PNG); returns a line saying what was written."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice
    from PySide6.QtUiTools import QUiLoader
    from PySide6.QtWidgets import QApplication

    global _APP  # the application must outlive every widget, or Qt crashes
    _APP = QApplication.instance() or QApplication([])
    ui = ROOT / module / "Resources" / "UI" / f"{module}.ui"
    defaults = parameter_defaults(ROOT / module / f"{module}.py")
    data = QByteArray(rewrite(ui.read_text(encoding="utf-8"), defaults).encode("utf-8"))  # must outlive the buffer
    buffer = QBuffer(data)
    buffer.open(QIODevice.ReadOnly)
    widget = QUiLoader().load(buffer)
    if widget is None:
        raise SystemExit(f"Qt could not load the rewritten {ui.name}")
    widget.setFixedWidth(WIDTH)            # width first, so word-wrapped labels get their full height
    layout = widget.layout()
    height = layout.heightForWidth(WIDTH) if layout is not None and layout.hasHeightForWidth() else -1
    widget.resize(WIDTH, max(height, widget.sizeHint().height(), widget.minimumSizeHint().height()))
    pixmap = widget.grab()
    out.parent.mkdir(parents=True, exist_ok=True)
    if not pixmap.save(str(out)):
        raise SystemExit(f"could not write {out}")
    return f"{out}: {pixmap.width()}x{pixmap.height()} from {ui.relative_to(ROOT)} ({len(defaults)} parameter defaults)"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "images", help="folder for the PNG files")
    args = parser.parse_args(argv)
    try:
        import PySide6  # noqa: F401  (only to say clearly when it is missing)
    except ImportError:
        print("render_panels.py needs PySide6, which is not installed in this Python "
              f"({sys.executable}). Install it with: pip install PySide6-Essentials", file=sys.stderr)
        return 1
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    for module, name in PANELS:
        print(render(module, args.out_dir / name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
