"""The ``backsplit`` command line. Subcommands live in ``backsplit/commands/<name>.py``; each module defines
``register(subparsers)`` which adds its parser and sets ``func`` (a callable taking the parsed args, returning
an exit code)."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Optional, Sequence

from backsplit import __version__, commands
from backsplit.errors import BackSplitError, CancelledError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backsplit",
        description="BackSplit: lesion segmentation with the background split into support structures (nnU-Net v2).")
    parser.add_argument("--version", action="version", version=f"backsplit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from backsplit.io.itkmessages import (
        show_input_warnings_plainly,  # translated ITK warnings as 'backsplit: warning: ...'
    )

    show_input_warnings_plainly()
    try:
        return int(args.func(args) or 0)
    except CancelledError as exc:
        print(f"backsplit: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("backsplit: interrupted", file=sys.stderr)
        return 130
    except BackSplitError as exc:
        print(f"backsplit: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
