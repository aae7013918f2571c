"""Every option of every subcommand (nested ones too, whatever modules exist in backsplit/commands) has a help text
that names its default; ``backsplit --version`` works."""

import argparse
import subprocess
import sys

from backsplit import __version__
from backsplit.cli import build_parser

SKIPPED = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)


def walk(parser: argparse.ArgumentParser, path: str):
    """(command path, action) for every action of ``parser`` and of every subparser below it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, f"{path} {name}")
        yield path, action


def meaningful_default(action: argparse.Action) -> bool:
    default = action.default
    return bool(action.option_strings) and default not in (None, False, "", [], argparse.SUPPRESS) \
        and not isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))


def test_every_option_has_help_with_its_default():
    missing, no_default = [], []
    actions = list(walk(build_parser(), "backsplit"))
    assert len({path for path, _ in actions}) > 5            # the subcommands were found
    for path, action in actions:
        if isinstance(action, SKIPPED):
            continue
        name = "/".join(action.option_strings) or action.dest
        if not (action.help or "").strip() or action.help == argparse.SUPPRESS:
            missing.append(f"{path} {name}")
        elif meaningful_default(action) and "default" not in action.help.lower() \
                and str(action.default) not in action.help:
            no_default.append(f"{path} {name} (default {action.default!r})")
    assert not missing, "options without help text: " + ", ".join(missing)
    assert not no_default, "help texts that do not state the default: " + ", ".join(no_default)


def test_version():
    result = subprocess.run([sys.executable, "-m", "backsplit", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == f"backsplit {__version__}"
