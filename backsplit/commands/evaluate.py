"""``backsplit evaluate``: Dice, HD95, NSD, precision, recall and lesion counts of predictions against references."""

from __future__ import annotations

import argparse
from pathlib import Path

from backsplit.evaluation.metrics import LESION_MATCH_HELP
from backsplit.runtime import argtypes


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="evaluate predicted labelmaps against reference labelmaps",
                              description=__doc__)
    folder_arguments(p, "folder of predicted <case>.nii.gz", "folder of reference <case>.nii.gz (same grids)")
    p.add_argument("--model", type=Path, required=True,
                   help="model folder or dataset folder whose labels the predictions use")
    p.add_argument("--reference-labels", type=Path, help="dataset folder whose labels the references use "
                                                         "(default: same as --model)")
    p.add_argument("--nsd-tolerance", type=argtypes.positive_mm, default=2.0, help="NSD tolerance in mm (default 2)")
    p.add_argument("--lesion-match", default="overlap", metavar="overlap|iou:T|dice:T", help=LESION_MATCH_HELP)
    p.add_argument("--out", type=Path, required=True, help="CSV file (a JSON summary is written beside it)")
    p.set_defaults(func=run)


def folder_arguments(parser: argparse.ArgumentParser, predictions_help: str, references_help: str) -> None:
    """PREDICTIONS REFERENCES as positionals (BackSplit's order) or named (--predictions/--references, in any order;
    nnUNetv2_evaluate_folder takes the references first). ``chosen_folders`` reads them back."""
    parser.add_argument("predictions", type=Path, nargs="?", help=f"{predictions_help} (or --predictions)")
    parser.add_argument("references", type=Path, nargs="?", help=f"{references_help} (or --references)")
    parser.add_argument("--predictions", dest="predictions_named", type=Path, metavar="FOLDER",
                        help="the predictions folder, named (instead of the first argument)")
    parser.add_argument("--references", dest="references_named", type=Path, metavar="FOLDER",
                        help="the references folder, named (instead of the second argument); the order differs from "
                             "nnUNetv2_evaluate_folder (references first), and folders given the other way round "
                             "are refused")


def chosen_folders(args: argparse.Namespace) -> tuple[Path, Path]:
    """(predictions, references) from ``folder_arguments``: named options win; one folder named and the other given
    as the only positional also works. Raises InputError when a folder is missing or given twice."""
    from backsplit.errors import InputError

    positional = [p for p in (args.predictions, args.references) if p is not None]
    named = {"predictions": args.predictions_named, "references": args.references_named}
    for what in ("predictions", "references"):
        if named[what] is None:
            if not positional:
                raise InputError(f"no {what} folder; give PREDICTIONS REFERENCES, or --predictions and --references")
            named[what] = positional.pop(0)
    if positional:
        raise InputError(f"'{positional[0]}' is one folder too many: give the folders as PREDICTIONS REFERENCES or "
                         "with --predictions/--references, not both")
    return named["predictions"], named["references"]


def run(args: argparse.Namespace) -> int:
    from backsplit.evaluation.evaluate import (
        evaluate_folders,
        schema_from_model_or_dataset,
        summary_lines,
        write_evaluation,
    )

    schema = schema_from_model_or_dataset(args.model)
    reference_schema = schema_from_model_or_dataset(args.reference_labels) if args.reference_labels else None
    predictions, references = chosen_folders(args)
    rows = evaluate_folders(predictions, references, schema, args.nsd_tolerance, reference_schema,
                            getattr(args, "lesion_match", "overlap"))
    csv_path, json_path = write_evaluation(rows, args.out)
    for line in summary_lines(rows):  # every mean says how many cases it covers and which were left out, and why
        print(line)
    print(f"written: {csv_path}, {json_path}")
    return 0
