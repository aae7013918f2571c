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

# The commands in the order of the work, with one example each (`backsplit --help` lists them in this order; a
# command module not named here is still found and listed last). docs/cli-reference.md follows the same order.
WORKFLOW = (
    ("export", "backsplit export --folder cases/ --targets cyst --supports tumor,kidney --out nnUNet_raw --id 501 "
               "--name Kidney"),
    ("train", "backsplit train nnUNet_raw/Dataset501_Kidney --work-dir work --with-binary --model-dir models/Kidney"),
    ("predict", "backsplit predict models/Kidney test_images/ --out pred/backsplit --probabilities"),
    ("evaluate", "backsplit evaluate pred/backsplit test_refs/ --model models/Kidney --out backsplit.csv"),
    ("compare", "backsplit compare binary.csv backsplit.csv --names binary BackSplit --out comparison.png"),
    ("calibrate", "backsplit calibrate pred/validation val_refs/ --labels models/Kidney --out rule.json"),
    ("supports", "backsplit supports suggest --folder cases/ --target cyst"),
    ("dataset", "backsplit dataset add nnUNet_raw/Dataset501_Kidney --folder new_cases/"),
    ("model", "backsplit model list"),
    ("context", "backsplit context show --work-dir work --dataset nnUNet_raw/Dataset501_Kidney --out context/"),
    ("study", "backsplit study nnUNet_raw/Dataset501_Kidney --out study/ --arms binary,backsplit"),
    ("demo", "backsplit demo --out demo-output"),
)
WORKFLOW_ORDER = tuple(name for name, _ in WORKFLOW)


def epilog() -> str:
    """The examples block of ``backsplit --help``: one line per command, in workflow order."""
    width = max(len(name) for name in WORKFLOW_ORDER)
    return ("examples, in the order of the work (backsplit COMMAND --help for every option):\n"
            + "\n".join(f"  {name:<{width}}  {example}" for name, example in WORKFLOW))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backsplit", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=epilog(),
        description="BackSplit: lesion segmentation with the background split into support structures (nnU-Net v2).\n"
                    "Export cases, train a BackSplit model and its binary baseline, predict, evaluate, compare.")
    parser.add_argument("--version", action="version", version=f"backsplit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    found = [info.name for info in pkgutil.iter_modules(commands.__path__)]   # discovery: every module registers
    rank = {name: i for i, name in enumerate(WORKFLOW_ORDER)}
    for name in sorted(found, key=lambda n: (rank.get(n, len(rank)), n)):
        importlib.import_module(f"{commands.__name__}.{name}").register(subparsers)
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
    except Exception as exc:  # noqa: BLE001 - the handler of last resort: one line, the log path, exit 1 or 70
        from backsplit.runtime.lastresort import last_resort

        return last_resort(exc, sys.argv[1:] if argv is None else list(argv))


if __name__ == "__main__":
    sys.exit(main())
