"""``backsplit compare``: two evaluations (e.g. binary vs BackSplit) side by side, as a table and a PNG."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("compare", help="compare two evaluations side by side (table + picture)",
                              description=__doc__)
    p.add_argument("evaluation_a", type=Path, help="CSV from backsplit evaluate (first model)")
    p.add_argument("evaluation_b", type=Path, help="CSV from backsplit evaluate (second model)")
    p.add_argument("--names", nargs=2, default=["binary", "BackSplit"], metavar=("A", "B"),
                   help="labels of the two result tables in the report (default: binary BackSplit)")
    p.add_argument("--out", type=Path, required=True, help="PNG picture (the table is printed and saved as .txt)")
    p.add_argument("--case", help="case for the slice view (needs --images, --references, --predictions-a/-b)")
    p.add_argument("--images", type=Path, help="folder with <case>_0000.nii.gz or <case>.nii.gz")
    p.add_argument("--references", type=Path, help="folder of reference labelmaps for the slice view (default: none)")
    p.add_argument("--predictions-a", type=Path,
                   help="folder of model A's predicted labelmaps for the slice view (default: none)")
    p.add_argument("--predictions-b", type=Path,
                   help="folder of model B's predicted labelmaps for the slice view (default: none)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from backsplit.errors import InputError
    from backsplit.evaluation.compare import comparison_picture, comparison_table, slice_view_for_case
    from backsplit.evaluation.evaluate import read_evaluation

    rows_a, rows_b = read_evaluation(args.evaluation_a), read_evaluation(args.evaluation_b)
    table = comparison_table(rows_a, rows_b, args.names)
    view = None
    slice_options = {"--case": args.case, "--images": args.images, "--references": args.references,
                     "--predictions-a": args.predictions_a, "--predictions-b": args.predictions_b}
    missing = [name for name, value in slice_options.items() if not value]
    if len(missing) < len(slice_options) and missing:  # a slice view asked for, not all of its inputs given
        raise InputError(f"the slice view needs {', '.join(slice_options)}; missing: {', '.join(missing)}")
    evaluated = list(dict.fromkeys(r.case_id for r in rows_a))
    if args.case and args.case not in evaluated:
        raise InputError(f"case '{args.case}' is not in '{args.evaluation_a}'; evaluated cases: "
                         f"{', '.join(evaluated) or 'none'}")
    if not missing:
        image = args.images / f"{args.case}_0000.nii.gz"
        if not image.is_file():
            image = args.images / f"{args.case}.nii.gz"
        value = next(r.value for r in rows_a if r.case_id == args.case)
        view = slice_view_for_case(args.case, image, args.references / f"{args.case}.nii.gz",
                                   args.predictions_a / f"{args.case}.nii.gz",
                                   args.predictions_b / f"{args.case}.nii.gz", value)
    comparison_picture(rows_a, rows_b, args.names, args.out, view)
    Path(args.out).with_suffix(".txt").write_text(table + "\n", encoding="utf-8")
    print(table)
    print(f"picture: {args.out}")
    return 0
