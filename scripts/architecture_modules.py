"""Rewrite the module tables of docs/ARCHITECTURE.md (between the ``modules:start``/``modules:end`` markers) from the
docstrings of the product's modules: one table per package, the first paragraph of each module's docstring.

``python scripts/architecture_modules.py`` writes; ``--check`` exits 1 when the tables are stale.
"""

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "ARCHITECTURE.md"
START, END = "<!-- modules:start -->", "<!-- modules:end -->"
FOLDERS = ["backsplit", "BackSplitShared", "BackSplitSegment/BackSplitSegmentLib", "BackSplitTrain/BackSplitTrainLib"]


def first_paragraph(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return " ".join(doc.split("\n\n")[0].split()).replace("|", "\\|")


def tables() -> str:
    out = []
    for folder in FOLDERS:
        packages = {}
        for path in sorted((REPO / folder).rglob("*.py")):
            if "__pycache__" in path.parts or path.name == "__init__.py":
                continue
            packages.setdefault(path.parent, []).append(path)
        for package, files in packages.items():
            init = package / "__init__.py"
            out += ["", f"### `{package.relative_to(REPO)}/`"]
            if init.exists() and first_paragraph(init):
                out += [first_paragraph(init)]
            out += ["", "| module | job |", "|---|---|"]
            out += [f"| `{p.relative_to(REPO)}` | {first_paragraph(p)} |" for p in files]
    for module in ("BackSplitSegment", "BackSplitTrain"):
        path = REPO / module / f"{module}.py"
        out += ["", f"### `{module}/`", "", "| module | job |", "|---|---|",
                f"| `{path.relative_to(REPO)}` | {first_paragraph(path)} |"]
    return "\n".join(out) + "\n"


def render(text: str) -> str:
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{tables()}{END}{tail}"


if __name__ == "__main__":
    text = DOC.read_text(encoding="utf-8")
    new = render(text)
    if "--check" in sys.argv:
        sys.exit(0 if new == text else 1)
    DOC.write_text(new, encoding="utf-8")
    print(f"wrote the module tables of {DOC.relative_to(REPO)}")
