"""The shape of the code: no import cycle, no private name used across modules, few top-level engine modules,
docs/ARCHITECTURE.md naming every engine module that exists (and nothing that does not), every module mapped to tests.

Imports are read with ``ast`` from the sources (module level and inside functions alike: a lazy import hides a cycle,
it does not remove it). Cycles are found with networkx (a well-kept graph library; nnU-Net's scikit-image brings it).
"""

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Python packages of the product: the engine, the Slicer modules' Lib packages and the shared Slicer package.
ROOTS = {"backsplit": REPO / "backsplit"}
for folder in ("BackSplitSegment", "BackSplitTrain", "BackSplitShared"):
    for package in sorted((REPO / folder).glob("*Lib")) + sorted((REPO / folder).glob("BackSplitShared")):
        if (package / "__init__.py").exists():
            ROOTS[package.name] = package
SCRIPTS = {p.stem: p for p in (REPO / "BackSplitSegment", REPO / "BackSplitTrain") for p in [p / f"{p.name}.py"]}


def product_modules() -> dict:
    """Module name -> source path for every product module (packages as ``pkg`` for their ``__init__``)."""
    modules = dict(SCRIPTS)
    for name, root in ROOTS.items():
        for path in root.rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            parts = (name,) + path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def imported_names(path: Path, module: str, is_package: bool):
    """(imported module, imported name or None, line) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                yield base, alias.name, node.lineno


def import_graph():
    import networkx as nx

    modules = product_modules()
    graph = nx.DiGraph()
    private = []
    for module, path in modules.items():
        graph.add_node(module)
        for target, name, line in imported_names(path, module, path.name == "__init__.py"):
            if name and f"{target}.{name}" in modules:  # ``from pkg import submodule``
                target, name = f"{target}.{name}", None
            if target not in modules or target == module:
                continue
            if not (module.startswith(target + ".") and modules[target].name == "__init__.py"):
                graph.add_edge(module, target, line=line)
            if name and name.startswith("_") and not name.startswith("__"):
                private.append(f"{path.relative_to(REPO)}:{line} imports {target}.{name}")
    return graph, private


def test_no_import_cycle_anywhere():
    import networkx as nx

    graph, _ = import_graph()
    cycles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert not cycles, f"import cycles (lazy imports included): {cycles}"


def test_no_private_name_imported_or_read_across_modules():
    graph, private = import_graph()
    modules = product_modules()
    # ``module._name`` reads through an imported module object
    for path in modules.values():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in modules:
                        aliases[alias.asname or alias.name] = alias.name
            elif isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    if f"{node.module}.{alias.name}" in modules:
                        aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                private.append(f"{path.relative_to(REPO)}:{node.lineno} reads {aliases[node.value.id]}.{node.attr}")
    assert not private, "private names used across modules:\n" + "\n".join(private)


def test_engine_top_level_stays_small():
    top = sorted(p.name for p in (REPO / "backsplit").glob("*.py"))
    assert len(top) <= 8, f"backsplit/ has {len(top)} top-level modules (group them into subpackages): {top}"


def test_no_product_file_over_the_size_limit():
    big = [f"{p.relative_to(REPO)}: {n}" for p in product_modules().values()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > 420]
    assert not big, f"files over ~400 lines: {big}"


def architecture_text() -> str:
    return (REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")


def test_architecture_names_only_files_that_exist():
    text = architecture_text()
    named = set(re.findall(r"`((?:backsplit|BackSplit\w+|Testing|benchmarks|scripts)/[\w/.-]+\.py)`", text))
    assert named, "docs/ARCHITECTURE.md names no file?"
    def exists(name):  # ``BackSplitSegmentLib/x.py`` is written without its module folder
        lib = name.split("/")[0]
        return (REPO / name).exists() or (lib.endswith("Lib") and (REPO / lib[:-3] / name).exists())

    missing = sorted(n for n in named if not exists(n))
    assert not missing, f"docs/ARCHITECTURE.md names files that do not exist: {missing}"


def test_architecture_names_every_product_module():
    text = architecture_text()
    unnamed = []
    for path in product_modules().values():
        relative = str(path.relative_to(REPO))
        if path.name == "__init__.py":
            continue  # packages are named by their folder
        if f"`{relative}`" not in text and f"`{path.name}`" not in text and f"`{path.stem}`" not in text:
            unnamed.append(relative)
    assert not unnamed, f"docs/ARCHITECTURE.md does not name: {unnamed}"


def test_module_test_index_is_current():
    """Testing/MODULES.md maps each module to the tests that import it; regenerate with scripts/module_tests.py."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(REPO / "scripts" / "module_tests.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("doc", ["HELPERS.md"])
def test_internal_working_rules_are_not_shipped_in_docs(doc):
    assert not (REPO / "docs" / doc).exists()


def test_architecture_module_tables_are_current():
    """The module tables of docs/ARCHITECTURE.md come from the docstrings: scripts/architecture_modules.py."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(REPO / "scripts" / "architecture_modules.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, "docs/ARCHITECTURE.md is stale: run python scripts/architecture_modules.py"


def text_file_calls_without_encoding(path: Path) -> list:
    """``open(...)`` in text mode, ``Path.read_text``/``write_text`` without ``encoding=``: their text depends on the
    locale (a C library switched it to C in the middle of a test run; Windows and some Slicer builds are not UTF-8).
    ``Distribution.read_text`` (importlib.metadata) has no encoding argument and is skipped by its receiver name."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call) or any(k.arg == "encoding" for k in node.keywords):
            continue
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in ("read_text", "write_text"):
            if not (isinstance(func.value, ast.Name) and func.value.id in ("dist", "distribution")):
                found.append(f"{path.relative_to(REPO)}:{node.lineno} {func.attr}")
        elif isinstance(func, ast.Name) and func.id == "open":
            keywords = {k.arg: k.value for k in node.keywords}
            mode = node.args[1] if len(node.args) > 1 else keywords.get("mode")
            if not (isinstance(mode, ast.Constant) and "b" in str(mode.value)):
                found.append(f"{path.relative_to(REPO)}:{node.lineno} open")
    return found


def test_product_text_files_name_their_encoding():
    folders = ["backsplit", "BackSplitSegment", "BackSplitTrain", "BackSplitShared", "benchmarks", "scripts"]
    found = [hit for folder in folders for path in sorted((REPO / folder).rglob("*.py"))
             for hit in text_file_calls_without_encoding(path)]
    assert not found, "name encoding='utf-8' (text files must not depend on the locale):\n" + "\n".join(found)
