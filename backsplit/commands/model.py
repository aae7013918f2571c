"""``backsplit model list|show|export|import|trust|remove``: the models under the models location."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from backsplit.runtime import argtypes

MODELS_DIR_HELP = ("the models location (default: $BACKSPLIT_MODELS_DIR, else ~/BackSplit/models); every sub-folder "
                   "with a backsplit_model.json is a model")


def register(subparsers) -> None:
    p = subparsers.add_parser("model", help="list, show, export, import, trust or remove trained models",
                              description="The model manager: every model folder under the models location.")
    sub = p.add_subparsers(dest="model_command", metavar="ACTION", required=True)

    def action(name, help_text, func):
        q = sub.add_parser(name, help=help_text, description=help_text)
        q.add_argument("--models-dir", type=Path, help=MODELS_DIR_HELP)
        q.set_defaults(func=func)
        return q

    q = action("list", "list the models, newest first", run_list)
    q.add_argument("--channels", type=argtypes.count, help="only models taking this many input channels (default: all)")
    q = action("show", "every manifest field of one model", run_show)
    q.add_argument("model", help="model name (in the models location) or model folder")
    q.add_argument("--json", action="store_true", help="print the fields as JSON")
    q = action("export", "write a model as one zip with a checksum list", run_export)
    q.add_argument("model", help="model name or folder")
    q.add_argument("zip", type=Path, help="the zip file to write")
    q.add_argument("--overwrite", action="store_true", help="replace an existing zip file (default: refuse)")
    q = action("import", "verify a model zip's checksums and unpack it (marked untrusted until you trust it)",
               run_import)
    q.add_argument("zip", type=Path, help="a zip written by 'backsplit model export', or an nnU-Net model zip "
                                          "(nnUNetv2_export_model_to_zip: one model per configuration, named "
                                          "<DatasetNNN_Name>__<configuration>, classes derived from dataset.json)")
    q.add_argument("--name", help="import under this name (default: the name in the zip)")
    q.add_argument("--rename", action="store_true",
                   help="if the name exists, take the next free name <name>_<n> (default: refuse)")
    q.add_argument("--trust", action="store_true",
                   help="trust it right away (its checkpoints are pickles: they can run code; default: untrusted)")
    q = action("trust", "confirm that an imported model comes from a source you trust", run_trust)
    q.add_argument("model", help="model name or folder")
    q = action("remove", "delete a model folder (asks first; refused while a training or prediction uses it)",
               run_remove)
    q.add_argument("model", help="model name or folder")
    q.add_argument("--yes", action="store_true", help="do not ask (default: ask on the terminal)")


def _dir(args):
    from backsplit.models.location import models_dir

    return models_dir(args.models_dir)


def run_list(args: argparse.Namespace) -> int:
    from backsplit.models.catalog import list_models, models_for_channels

    entries = list_models(_dir(args))
    if args.channels is not None:
        entries = models_for_channels(entries, args.channels)
    if not entries:
        print(f"no models in {_dir(args)}")
        return 0
    for entry in entries:
        print(entry.line())
    return 0


def run_show(args: argparse.Namespace) -> int:
    from backsplit.models.catalog import find_model, in_use_by

    entry = find_model(_dir(args), args.model)
    fields = entry.fields()
    fields["in_use"] = in_use_by(entry) or None
    if args.json:
        print(json.dumps(fields, indent=2))
    else:
        for key, value in fields.items():
            print(f"{key:<16} {', '.join(map(str, value)) if isinstance(value, list) else value}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from backsplit.models.archive import export_model
    from backsplit.models.catalog import find_model

    entry = find_model(_dir(args), args.model)
    path = export_model(entry.folder, args.zip, overwrite=args.overwrite)
    print(f"exported '{entry.name}' to {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


def run_import(args: argparse.Namespace) -> int:
    from backsplit.models.archive import import_model
    from backsplit.models.nnunetzip import import_nnunet_zip, nnunet_models_in_zip
    from backsplit.models.trust import confirm_trust

    if nnunet_models_in_zip(args.zip):   # nnUNetv2_export_model_to_zip's layout: one model per configuration
        results = import_nnunet_zip(args.zip, _dir(args), name=args.name, rename_if_exists=args.rename)
        checked = "nnU-Net zip without checksums; description derived from its files: check the classes"
    else:
        results = [import_model(args.zip, _dir(args), name=args.name, rename_if_exists=args.rename)]
        checked = "checksums verified"
    for result in results:
        if args.trust:
            confirm_trust(result.folder)
        renamed = f" (the name '{result.renamed_from}' was taken)" if result.renamed_from else ""
        print(f"imported '{result.name}'{renamed} into {result.folder}: {result.files} files, {checked}")
        if result.skipped:
            print(f"left out {len(result.skipped)} file(s) local to the computer that made the zip (in-use markers, "
                  f"locks, trust record, resume checkpoint): {', '.join(result.skipped[:5])}")
        if not args.trust:
            print(f"the model is untrusted: its checkpoints are pickles that can run code; if you trust the source, "
                  f"run 'backsplit model trust {result.name}'")
    return 0


def run_trust(args: argparse.Namespace) -> int:
    from backsplit.models.catalog import find_model
    from backsplit.models.trust import confirm_trust

    entry = find_model(_dir(args), args.model)
    confirm_trust(entry.folder)
    print(f"'{entry.name}' is trusted")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    from backsplit.models.catalog import find_model
    from backsplit.models.remove import remove_model

    def ask(question: str) -> bool:
        if args.yes:
            return True
        if not sys.stdin.isatty():
            print(f"{question}\nnot removed: no terminal to ask on; add --yes", file=sys.stderr)
            return False
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")

    entry = find_model(_dir(args), args.model)
    remove_model(entry.folder, ask)
    print(f"removed '{entry.name}'")
    return 0
