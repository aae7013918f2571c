"""The helpers both Slicer modules share (``BackSplitShared/``, a package beside the modules) and the modules'
dev-mode path guard: in a checkout the guard puts the repository root on sys.path, installed it adds nothing. The
guard's own lines are run from the module files against folder layouts made here (Slicer itself is not needed)."""

from __future__ import annotations

import ast
import re
import sys
import types
from pathlib import Path

import pytest

from backsplit.runtime.requirements import NNUNET_REQUIREMENT, requirements_without

REPO = Path(__file__).resolve().parent.parent
MODULES = ["BackSplitSegment", "BackSplitTrain"]
SHARED_IMPORTS = ("BackSplitShared", "BackSplitSegmentLib", "BackSplitTrainLib", "backsplit")


def _guard_source(module: str) -> str:
    source = (REPO / module / f"{module}.py").read_text(encoding="utf-8")
    match = re.search(r"^ROOT = .*?\n    sys\.path\.append\(ROOT\)\n", source, re.S | re.M)
    assert match, f"{module}.py has no dev-mode guard"
    return match.group(0)


def _run_guard(module: str, module_file: Path) -> list[str]:
    import os

    path: list[str] = []
    fake_sys = types.SimpleNamespace(path=path)
    exec(_guard_source(module), {"os": os, "sys": fake_sys, "__file__": str(module_file)})
    return path


@pytest.mark.parametrize("module", MODULES)
def test_guard_adds_the_checkout_root_in_dev_mode_only(module, tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "BackSplitShared").mkdir(parents=True)
    (checkout / module).mkdir()
    assert _run_guard(module, checkout / module / f"{module}.py") == [str(checkout)]
    installed = tmp_path / "lib" / "Slicer-5.10" / "qt-scripted-modules"
    (installed / "BackSplitShared").mkdir(parents=True)
    assert _run_guard(module, installed / f"{module}.py") == []          # installed: the package is beside it


@pytest.mark.parametrize("module", MODULES)
def test_modules_import_their_helpers_after_the_guard_and_never_from_the_other_module(module):
    tree = ast.parse((REPO / module / f"{module}.py").read_text(encoding="utf-8"))
    guard_line = next(n.lineno for n in tree.body if isinstance(n, ast.If) and "sys.path.append" in ast.unparse(n))
    imported = [(n.lineno, n.module) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    ours = [(line, name) for line, name in imported if name.split(".")[0] in SHARED_IMPORTS]
    assert ours and all(line > guard_line for line, _ in ours), ours
    other = "BackSplitTrainLib" if module == "BackSplitSegment" else "BackSplitSegmentLib"
    assert not [name for _, name in imported if name.startswith(other)]
    lazy = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) for n in ast.walk(n)
            if isinstance(n, ast.ImportFrom) and n.module and n.module.split(".")[0] in SHARED_IMPORTS]
    assert not lazy, [ast.unparse(n) for n in lazy]


def test_train_no_longer_depends_on_the_segment_module():
    """Train imports nothing of Segment and does not declare it as a dependency; it may name it only as the module
    to switch to after training (``slicer.util.selectModule``)."""
    source = (REPO / "BackSplitTrain" / "BackSplitTrain.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not any(name.startswith(("BackSplitSegment", "BackSplitSegmentLib")) for name in imported)
    assert not re.search(r"dependencies\s*=\s*\[[^\]]*BackSplitSegment", source)


def test_shared_package_is_not_a_module_and_imports_no_qt():
    for path in (REPO / "BackSplitShared").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not names & {"qt", "ctk", "BackSplitSegmentLib", "BackSplitTrainLib"}, (path, names)
        assert "ScriptedLoadableModule" not in path.read_text(encoding="utf-8"), path


def test_requirement_matches_the_package_extra():
    """One source of truth: the rule the Slicer modules install with is the one pyproject.toml's nnunet extra has."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        tomllib = pytest.importorskip("tomli")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extra = project["optional-dependencies"]["nnunet"]
    assert NNUNET_REQUIREMENT in extra


def test_requirements_without_skips_what_slicer_provides():
    kept = requirements_without(["torch>=2.1.2", "SimpleITK>=2.2", "numpy", "tqdm; extra == 'dev'",
                                 "acvl_utils>=0.2"])
    assert kept == ["numpy", "acvl_utils>=0.2"]
