"""Rewrite the file lists of backsplit/CMakeLists.txt from the package on disk (Testing/test_static.py checks them)."""

from pathlib import Path

root = Path(__file__).resolve().parent.parent / "backsplit"
scripts = sorted(str(p.relative_to(root)) for p in root.rglob("*.py") if "__pycache__" not in p.parts)
data = sorted(str(p.relative_to(root)) for p in (root / "data").rglob("*") if p.is_file())
text = (root / "CMakeLists.txt").read_text(encoding="utf-8")
for variable, entries in (("BACKSPLIT_PYTHON_SCRIPTS", scripts), ("BACKSPLIT_PYTHON_RESOURCES", data)):
    start = text.index(f"set({variable}\n") + len(f"set({variable}\n")
    end = text.index("  )", start)
    text = text[:start] + "".join(f"  {entry}\n" for entry in entries) + text[end:]
(root / "CMakeLists.txt").write_text(text, encoding="utf-8")
print(f"{len(scripts)} scripts, {len(data)} data files")
