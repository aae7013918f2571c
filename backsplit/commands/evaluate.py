"""``backsplit evaluate``: Dice, HD95, NSD, precision, recall and lesion counts of predictions against references."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="evaluate predicted labelmaps against reference labelmaps",
                              description=__doc__)
    p.add_argument("predictions", type=Path, help="folder of predicted <case>.nii.gz")
    p.add_argument("references", type=Path, help="folder of reference <case>.nii.gz (same grids)")
    p.add_argument("--model", type=Path, required=True,
                   help="model folder or dataset folder whose labels the predictions use")
    p.add_argument("--reference-labels", type=Path, help="dataset folder whose labels the references use "
                                                         "(default: same as --model)")
    p.add_argument("--nsd-tolerance", type=float, default=2.0, help="NSD tolerance in mm (default 2)")
    p.add_argument("--out", type=Path, required=True, help="CSV file (a JSON summary is written beside it)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from backsplit.evaluation.evaluate import (
        evaluate_folders,
        schema_from_model_or_dataset,
        summary_lines,
        write_evaluation,
    )

    schema = schema_from_model_or_dataset(args.model)
    reference_schema = schema_from_model_or_dataset(args.reference_labels) if args.reference_labels else None
    rows = evaluate_folders(args.predictions, args.references, schema, args.nsd_tolerance, reference_schema)
    csv_path, json_path = write_evaluation(rows, args.out)
    for line in summary_lines(rows):  # every mean says how many cases it covers and which were left out, and why
        print(line)
    print(f"written: {csv_path}, {json_path}")
    return 0
