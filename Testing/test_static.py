"""Static checks of what cannot run here (Qt widgets, the CMake build) and of the layering rules."""

import ast
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MODULES = ["BackSplitSegment", "BackSplitTrain"]


def ui_widgets(module):
    tree = ET.parse(REPO / module / "Resources" / "UI" / f"{module}.ui")
    widgets = {w.get("name"): w for w in tree.iter("widget")}
    parameters = {}
    for name, widget in widgets.items():
        for prop in widget.findall("property"):
            if prop.get("name") == "SlicerParameterName":
                parameters[name] = prop.find("string").text
    return widgets, parameters


@pytest.mark.parametrize("module", MODULES)
def test_ui_parses_and_every_widget_used_exists(module):
    widgets, _ = ui_widgets(module)
    source = (REPO / module / f"{module}.py").read_text(encoding="utf-8")
    used = set(re.findall(r"self\.ui\.(\w+)", source))
    assert used, "the widget uses no ui names?"
    missing = sorted(used - set(widgets))
    assert not missing, f"{module}.py uses widgets missing from its .ui: {missing}"


@pytest.mark.parametrize("module", MODULES)
def test_parameter_names_match_the_parameter_node_wrapper(module):
    _, parameters = ui_widgets(module)
    tree = ast.parse((REPO / module / f"{module}.py").read_text(encoding="utf-8"))
    wrapper = next(node for node in tree.body if isinstance(node, ast.ClassDef)
                   and any(getattr(d, "id", None) == "parameterNodeWrapper" for d in node.decorator_list))
    fields = {stmt.target.id for stmt in wrapper.body if isinstance(stmt, ast.AnnAssign)}
    unknown = sorted(set(parameters.values()) - fields)
    assert not unknown, f"SlicerParameterName without a parameter: {unknown}"
    # every widget bound to a parameter is named after it (keeps the .ui readable)
    assert all(widget == parameter for widget, parameter in parameters.items())


def cmake_listed(path):
    text = path.read_text(encoding="utf-8")
    return set(re.findall(r"^\s+([\w${}/.-]+\.(?:py|png|ui|gz|txt|md|json)|[\w${}/.-]+/LICENSE[\w-]*)\s*$", text,
                          re.MULTILINE))


@pytest.mark.parametrize("module", MODULES)
def test_every_script_and_resource_is_listed_in_the_module_cmakelists(module):
    folder = REPO / module
    listed = {entry.replace("${MODULE_NAME}", module) for entry in cmake_listed(folder / "CMakeLists.txt")}
    on_disk = {str(p.relative_to(folder)) for p in folder.rglob("*")
               if p.is_file() and p.suffix in (".py", ".png", ".ui") and "__pycache__" not in p.parts
               and "Testing" not in p.parts}
    assert on_disk == listed, f"not listed: {sorted(on_disk - listed)}; listed but missing: {sorted(listed - on_disk)}"
    text = (folder / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "WITH_GENERIC_TESTS" in text and "slicer_add_python_unittest" in text


def test_engine_cmakelists_lists_every_file_of_the_package():
    folder = REPO / "backsplit"
    listed = cmake_listed(folder / "CMakeLists.txt")
    on_disk = {str(p.relative_to(folder)) for p in folder.rglob("*")
               if p.is_file() and "__pycache__" not in p.parts and p.name != "CMakeLists.txt"}
    assert on_disk == listed, f"not listed: {sorted(on_disk - listed)}; listed but missing: {sorted(listed - on_disk)}"


def test_top_level_cmakelists():
    text = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    assert "project(BackSplit)" in text
    assert re.search(r"set\(EXTENSION_DEPENDS\s+PyTorch\)", text)
    for sub in ["backsplit"] + MODULES:
        assert f"add_subdirectory({sub})" in text
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION",
                "EXTENSION_ICONURL"):
        assert key in text
    for icon in [REPO / "Resources" / "Icons" / "BackSplit.png"] + \
            [REPO / m / "Resources" / "Icons" / f"{m}.png" for m in MODULES]:
        assert icon.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def imports_of(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_engine_never_imports_slicer_or_qt():
    for path in (REPO / "backsplit").rglob("*.py"):
        bad = imports_of(path) & {"slicer", "qt", "ctk", "vtk", "slicerqt"}
        assert not bad, f"{path} imports {bad}"


def test_engine_imports_heavy_dependencies_lazily():
    """torch and nnunetv2 only at module level in the two modules that run in the training child process."""
    allowed = {"trainer.py"}
    for path in (REPO / "backsplit").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top = set()
        for node in tree.body:
            if isinstance(node, ast.Import):
                top |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                top.add(node.module.split(".")[0])
        if path.name not in allowed:
            assert not top & {"torch", "nnunetv2", "scipy", "matplotlib"}, f"{path} imports {top} at module level"


def test_scene_adapters_never_import_qt_or_start_processes():
    for module in MODULES:
        for path in (REPO / module / f"{module}Lib").glob("*.py"):
            assert not imports_of(path) & {"qt", "ctk"}, path
        widget_imports = imports_of(REPO / module / f"{module}.py")
        assert "subprocess" not in widget_imports and "multiprocessing" not in widget_imports


def test_nnunet_variables_are_never_set_in_the_calling_process():
    """Only child-process entry points touch os.environ (the training child ``training/worker.py`` and the study's
    ``study/runtask.py``, each run as ``python -m ...`` by an executor); everything else builds an env for Popen."""
    child_entry_points = {("training", "worker.py"), ("study", "runtask.py")}
    for path in list((REPO / "backsplit").rglob("*.py")) + list(REPO.glob("BackSplit*/**/*.py")):
        if (path.parent.name, path.name) in child_entry_points:
            continue
        source = path.read_text(encoding="utf-8")
        assert not re.search(r"os\.environ\[[^\]]+\]\s*=|os\.environ\.(update|setdefault)\(|putenv\(", source), path


@pytest.mark.parametrize("module", MODULES)
def test_user_strings_are_translatable(module):
    source = (REPO / module / f"{module}.py").read_text(encoding="utf-8")
    assert "from slicer.i18n import tr as _" in source
    for call in re.findall(r"(?:errorDisplay|tryWithErrorDisplay)\(([^)]*)", source):
        assert call.lstrip().startswith("_(") or not call.strip().startswith(('"', "'")), call


def test_modules_lib_imports_with_slicer_core():
    pytest.importorskip("slicer")
    import importlib

    for name in ("BackSplitSegmentLib.scene_cases", "BackSplitSegmentLib.prediction_import",
                 "BackSplitSegmentLib.prediction_run", "BackSplitSegmentLib.demo_scene",
                 "BackSplitShared.dependencies", "BackSplitShared.release",
                 "BackSplitSegmentLib.pairing", "BackSplitShared.panel_support", "BackSplitShared.install_run",
                 "BackSplitSegmentLib.scene_guard", "BackSplitSegmentLib.case_list", "BackSplitTrainLib.plots",
                 "BackSplitTrainLib.devices", "BackSplitTrainLib.paths"):
        importlib.import_module(name)
