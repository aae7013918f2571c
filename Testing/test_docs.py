"""The user docs stay complete and consistent (issue 22): every command and option of ``backsplit`` is in
docs/cli-reference.md and that file is what scripts/gen_cli_reference.py makes from the parser; no retired word of
docs/glossary.md in the README and docs; every relative link and picture exists; the README is short and install-first.

Pure text checks plus the real argparse parser: nothing mocked, no Qt, no nnU-Net run.
"""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
GLOSSARY = DOCS / "glossary.md"
CLI_REFERENCE = DOCS / "cli-reference.md"
UI_FILES = (ROOT / "BackSplitSegment" / "Resources" / "UI" / "BackSplitSegment.ui",
            ROOT / "BackSplitTrain" / "Resources" / "UI" / "BackSplitTrain.ui")

# Checked for retired words: README, docs/*.md, docs/cli-reference.md whole (= every --help text), `backsplit --help`,
# both .ui files and the panels' _() / translate() strings. glossary.md names them on purpose; docs/results/ and
# CHANGELOG.md are dated records.
RETIRED_WORDS_NOT_CHECKED = ("glossary.md",)
# To add to the retired-word check once their owners have reworded them (each still holds retired words today):
RETIRED_WORDS_LATER = (
    "docs/ARCHITECTURE.md",                                    # the lead's
)
LATER_DOCS = ("ARCHITECTURE.md",)
PANEL_SOURCES = ("BackSplitSegment", "BackSplitTrain")  # their *.py and *Lib/*.py; Testing/ left out


def generator():
    """scripts/gen_cli_reference.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("gen_cli_reference", ROOT / "scripts" / "gen_cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def user_docs() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def retired_words() -> list[str]:
    """The left column of the table under '## Retired words' in docs/glossary.md (the list's only home)."""
    text = GLOSSARY.read_text(encoding="utf-8").split("## Retired words", 1)[1]
    rows = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    return [row for row in rows if row and row != "retired"]


def ui_strings() -> set[str]:
    """Every string of the panels' .ui files: a doc may quote a panel label exactly while the panel still has it."""
    return {s.text for ui in UI_FILES for s in ET.parse(ui).getroot().iter("string") if s.text}


def hits(text: str, words: list[str]) -> list[str]:
    found = []
    for word in words:
        flags = 0 if word.isupper() else re.IGNORECASE   # 'GT' only in capitals
        for match in re.finditer(rf"\b{re.escape(word)}\b", text, flags):
            found.append(f"line {text.count(chr(10), 0, match.start()) + 1}: {word}")
    return found


def test_every_command_and_option_documented():
    gen = generator()
    parser = gen.build_parser()
    text = CLI_REFERENCE.read_text(encoding="utf-8")
    assert gen.undocumented(text, parser) == []
    assert gen.render(parser, text) == text, ("docs/cli-reference.md differs from the parser's help: run "
                                              "python scripts/gen_cli_reference.py")


def test_exit_codes_match_cli():
    source = (ROOT / "backsplit" / "cli.py").read_text(encoding="utf-8")
    main = next(node for node in ast.parse(source).body if isinstance(node, ast.FunctionDef) and node.name == "main")
    returned = {node.value.value for node in ast.walk(main)
                if isinstance(node, ast.Return) and isinstance(node.value, ast.Constant)}
    documented = {int(code) for code, _ in generator().EXIT_CODES}
    assert returned | {0} <= documented
    from backsplit.runtime import lastresort  # the handler of last resort's statuses (internal error: 70)

    assert {v for k, v in vars(lastresort).items() if k.startswith("EXIT_")} <= documented


@pytest.mark.parametrize("path", user_docs(), ids=lambda p: p.name)
def test_no_retired_words(path):
    if path.name in RETIRED_WORDS_NOT_CHECKED or path.name in LATER_DOCS:
        pytest.skip(f"{path.name}: not checked (see RETIRED_WORDS_NOT_CHECKED / RETIRED_WORDS_LATER)")
    text = path.read_text(encoding="utf-8")
    assert hits(text, retired_words()) == [], f"{path.name}: retired words (docs/glossary.md says what to write)"


def callee(call: ast.Call) -> str:
    """'_' for _(...), 'translate' for translate(...) and slicer.app.translate(...)."""
    return getattr(call.func, "id", None) or getattr(call.func, "attr", "")


def panel_strings() -> dict[str, list[str]]:
    """The text of every ``_(...)`` and ``translate(...)`` call of the panels' Python files (what Slicer shows), by
    file: string constants and the literal parts of f-strings."""
    found = {}
    for folder in PANEL_SOURCES:
        for source in sorted((ROOT / folder).rglob("*.py")):
            if "Testing" in source.relative_to(ROOT).parts:
                continue
            calls = [node for node in ast.walk(ast.parse(source.read_text(encoding="utf-8")))
                     if isinstance(node, ast.Call) and callee(node) in ("_", "translate")]
            found[str(source.relative_to(ROOT))] = [part.value for call in calls for part in ast.walk(call)
                                                    if isinstance(part, ast.Constant) and isinstance(part.value, str)]
    return found


@pytest.mark.parametrize("ui", UI_FILES, ids=lambda p: p.name)
def test_no_retired_words_in_panels(ui):
    texts = [s.text for s in ET.parse(ui).getroot().iter("string") if s.text]
    assert [h for text in texts for h in hits(text, retired_words())] == [], f"{ui.name}: retired words"


def test_no_retired_words_in_panel_messages():
    strings = panel_strings()
    assert len(strings) >= 10 and sum(map(len, strings.values())) >= 50   # the walk found the panels' messages
    bad = {name: [h for text in texts for h in hits(text, retired_words())] for name, texts in strings.items()}
    assert {name: found for name, found in bad.items() if found} == {}


def test_backsplit_help_in_workflow_order_with_examples(capsys):
    """``backsplit --help`` lists every command module (found by discovery) in workflow order, one example each."""
    from backsplit import cli, commands

    parser = generator().build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    text = capsys.readouterr().out
    assert hits(text, retired_words()) == []
    modules = {info.name for info in pkgutil.iter_modules(commands.__path__)}
    listed = list(generator().subcommands(parser))
    assert set(listed) == modules and listed[:len(cli.WORKFLOW_ORDER)] == list(cli.WORKFLOW_ORDER)
    examples = text.split("examples, in the order of the work", 1)[1]
    for name in cli.WORKFLOW_ORDER:
        assert re.search(rf"^  {name} +backsplit {name} ", examples, re.MULTILINE), f"no example for {name}"


def test_glossary_lists_retired_words():
    assert len(retired_words()) >= 10
    assert "binary twin" in retired_words()


LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|<img[^>]*\bsrc=\"([^\"]+)\"")


@pytest.mark.parametrize("path", user_docs(), ids=lambda p: p.name)
def test_relative_links_and_pictures_exist(path):
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
    missing = []
    for match in LINK.finditer(text):
        target = (match.group(1) or match.group(2)).split("#", 1)[0]
        if not target or re.match(r"[a-z]+:", target):
            continue
        if not (path.parent / target).exists():
            missing.append(target)
    assert missing == [], f"{path.name}: links to files that do not exist"


def test_readme_short_and_install_first():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 170
    install = next(i for i, line in enumerate(lines) if line.startswith("## Install"))
    first_command = next(i for i, line in enumerate(lines) if line.startswith("```"))
    tutorial = next(i for i, line in enumerate(lines) if line.startswith("## Tutorial"))
    assert install < first_command and install < tutorial
    assert any("not for clinical use" in line.lower() for line in lines)


def test_docs_pages_listed_in_index():
    index = (DOCS / "README.md").read_text(encoding="utf-8")
    for page in DOCS.glob("*.md"):
        if page.name != "README.md":
            assert f"({page.name})" in index, f"docs/README.md does not list {page.name}"
