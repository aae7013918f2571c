"""``backsplit calibrate``: choose the case-level rule's minimum lesion volume on validation cases.

The case decision calls a lesion present when the voxels whose lesion probability reaches the
threshold add up to at least a minimum volume. Given the predictions of labelled validation cases (the folder written
by ``backsplit predict``, with its summary.json) and their reference labelmaps, this picks the largest minimum volume
that keeps the chosen sensitivity, prints sensitivity and specificity on those cases, and writes the rule as JSON for
``backsplit predict --rule``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from backsplit.commands.evaluate import chosen_folders, folder_arguments
from backsplit.runtime import argtypes


def register(subparsers) -> None:
    p = subparsers.add_parser("calibrate", help="calibrate the lesion present/absent rule on validation cases",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    folder_arguments(p, "folder written by backsplit predict (with summary.json)",
                     "folder of reference <case>.nii.gz labelmaps")
    p.add_argument("--labels", type=Path, required=True,
                   help="model or dataset folder whose label values the references use (targets = lesion)")
    p.add_argument("--sensitivity", type=argtypes.sensitivity, default=0.95, help="sensitivity to keep (default 0.95)")
    p.add_argument("--out", type=Path, help="write the rule here as JSON (for backsplit predict --rule)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from backsplit.errors import InputError
    from backsplit.evaluation.evaluate import check_labelmap, check_not_swapped, schema_from_model_or_dataset
    from backsplit.evaluation.summary import calibrate_min_volume, decision_counts
    from backsplit.io.imagefile import read_image

    args.predictions, args.references = chosen_folders(args)
    check_not_swapped(args.predictions, args.references, "calibrate")
    summary_path = args.predictions / "summary.json"
    if not summary_path.is_file():
        raise InputError("the predictions folder has no summary.json; give the folder written by backsplit predict",
                         path=str(args.predictions))
    summaries = json.loads(summary_path.read_text(encoding="utf-8"))
    thresholds = {float(s["threshold"]) for s in summaries}
    if len(thresholds) != 1:
        raise InputError("the predictions were made with different probability thresholds; predict them again with "
                         "one --threshold", path=str(summary_path))
    targets = schema_from_model_or_dataset(args.labels).target_values
    scores, positives, missing = [], [], []
    for summary in summaries:
        reference = args.references / f"{summary['case_id']}.nii.gz"
        if not reference.is_file():
            missing.append(summary["case_id"])
            continue
        labels, _ = read_image(reference, summary["case_id"], "reference")  # the checks every reader makes
        check_labelmap(labels, "reference", summary["case_id"], reference)  # a CT given as reference: refused
        scores.append(float(summary["lesion_score_ml"]))
        positives.append(bool(np.isin(labels, list(targets)).any()))
    if missing:
        raise InputError(f"no reference labelmap for case(s) {', '.join(missing)}; every predicted case needs "
                         "<case>.nii.gz in the references folder", path=str(args.references))
    if not any(positives):
        raise InputError("none of the reference cases has a lesion; calibration needs cases with lesions",
                         path=str(args.references))
    if not 0 < args.sensitivity <= 1:
        raise InputError("--sensitivity must be above 0 and at most 1")
    min_volume = calibrate_min_volume(scores, positives, args.sensitivity)
    threshold = thresholds.pop()
    counts = decision_counts(scores, positives, min_volume)
    print(f"{len(scores)} cases ({sum(positives)} with a lesion), probability threshold {threshold:g}")
    print(f"minimum lesion volume for sensitivity >= {args.sensitivity:g}: {min_volume:.4f} ml")
    specificity = (f"{counts['specificity']:.3f}" if counts["true_negative"] + counts["false_positive"] else
                   "undefined (no case without a lesion: add lesion-free validation cases to check false alarms)")
    print(f"on these cases: sensitivity {counts['sensitivity']:.3f}, specificity {specificity} "
          f"(TP {counts['true_positive']}, FN {counts['false_negative']}, TN {counts['true_negative']}, "
          f"FP {counts['false_positive']})")
    if counts["sensitivity"] < args.sensitivity:
        print("note: some lesion cases have no voxel above the threshold; no minimum volume reaches the sensitivity "
              "asked for (lower --threshold when predicting)")
    rule = {"threshold": threshold, "min_volume_ml": min_volume, "sensitivity_target": args.sensitivity,
            "calibration": {k: (None if isinstance(v, float) and v != v else v) for k, v in counts.items()},
            "cases": len(scores)}  # undefined specificity: JSON null (NaN is not JSON)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(args.out.name + ".partial")
        tmp.write_text(json.dumps(rule, indent=2), encoding="utf-8")
        tmp.replace(args.out)
        print(f"rule written: {args.out} (use: backsplit predict ... --rule {args.out})")
    else:
        print(f"use: backsplit predict ... --threshold {threshold:g} --min-volume {min_volume:.4f}")
    return 0
