"""``backsplit predict``: run a trained BackSplit model on image files; writes labelmaps and a case summary."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backsplit.runtime import argtypes


def register(subparsers) -> None:
    p = subparsers.add_parser("predict", help="predict lesions (and support structures) with a trained model",
                              description=__doc__)
    p.add_argument("model", type=Path,
                   help="model folder (with backsplit_model.json, or a plain nnU-Net v2 model folder "
                        "<Trainer>__<Plans>__<configuration>: classes derived, with a warning)")
    p.add_argument("input", type=Path,
                   help="an image file, or a folder of them (<case>_0000.nii.gz for channels); a DICOM series (its "
                        "folder or one of its files; in a folder of inputs, each sub-folder with a series is a case)")
    p.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    p.add_argument("--lesion-only", action="store_true",
                   help="write support structures as background (default: every class is written)")
    p.add_argument("--probabilities", action="store_true",
                   help="also write <case>_lesion_probability.nii.gz: P(lesion) as uint8 scaled by 1/255 in the "
                        "NIfTI header (readers get 0-1 back, within 0.002); default: not written")
    p.add_argument("--format", default="nii.gz", choices=["nii.gz", "seg.nrrd"], dest="output_format",
                   help="labelmap file format: nii.gz (labels.json names the values) or seg.nrrd (a Slicer "
                        "segmentation with names and colours); default nii.gz")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"],
                   help="where the network runs; auto picks cuda, then mps, then cpu (default auto)")
    p.add_argument("--threshold", type=argtypes.fraction, default=0.5,
                   help="lesion probability threshold of the case decision, 0-1 (default 0.5)")
    p.add_argument("--min-volume", type=argtypes.non_negative_ml, default=0.0,
                   help="minimum lesion volume in ml for 'lesion present' (default 0)")
    p.add_argument("--rule", type=Path, help="decision rule written by backsplit calibrate (replaces --threshold and "
                                             "--min-volume; default: none)")
    p.add_argument("--folds", "-f", nargs="+", metavar="FOLD",
                   help="predict with these folds of the model only (e.g. 0 1, or all), as nnU-Net's -f (default: "
                        "every fold of the model, ensembled)")
    p.add_argument("--checkpoint", "-chk", type=_checkpoint_name, metavar="final|best",
                   help="which checkpoint of each fold: final (checkpoint_final.pth) or best (checkpoint_best.pth, "
                        "the best pseudo-Dice during training); default final")
    p.add_argument("--step-size", type=_step_size, default=0.5, metavar="S",
                   help="sliding-window step as a fraction of the patch size, 0 < S <= 1 (default 0.5 as nnU-Net; "
                        "1: tiles without overlap, about 4x (2d) to 8x (3d) fewer tiles)")
    p.add_argument("--no-mirroring", "--disable-tta", action="store_true",
                   help="skip test-time mirroring: 4x (2d) to 8x (3d) fewer network passes, usually a slightly "
                        "lower Dice (default: mirroring on)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing outputs in --out (default: refuse and stop)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or estimate, only the result table "
                                                        "(default: progress on stderr)")
    p.add_argument("--verbose", action="store_true",
                   help="also show nnU-Net's and torch's own messages (default: they go to <out>/backsplit.log)")
    p.add_argument("--no-estimate", action="store_true",
                   help="skip the up-front estimate (it times 3 network tiles, seconds; default: estimate first)")
    p.add_argument("--estimate-only", action="store_true",
                   help="print the expected duration (and faster choices) and stop without predicting")
    p.add_argument("--trust-model", action="store_true",
                   help="load an imported model not yet trusted, for this run only (its checkpoints are pickles that "
                        "can run code; default: refuse until 'backsplit model trust')")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from backsplit.evaluation.summary import DecisionRule, read_rule
    from backsplit.inference.files import PartialPredictionError, discover_inputs, predict_files
    from backsplit.inference.model import read_model_info
    from backsplit.models.trust import require_trusted
    from backsplit.runtime.progress import TextProgressBar, ignore_progress
    from backsplit.runtime.quiet import ThirdPartyOutput
    from backsplit.runtime.steps import check_writable_folder

    require_trusted(args.model, args.trust_model)   # before anything unpickles its checkpoints
    info = read_model_info(args.model, args.checkpoint, folds=args.folds)
    for warning in info.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    rule = read_rule(args.rule) if args.rule else DecisionRule(args.threshold, args.min_volume)
    inputs = discover_inputs(args.input, len(info.channel_names))
    check_writable_folder(args.out, writes="the labelmaps, the summary and backsplit.log",
                          fix="choose another output folder (--out)")   # before the log file is opened there
    output = ThirdPartyOutput(Path(args.out) / "backsplit.log", verbose=args.verbose)
    bar = ignore_progress if args.quiet else TextProgressBar(output.console())
    partial = None
    with output:
        try:
            summaries = predict_files(args.model, inputs, args.out, device=args.device, lesion_only=args.lesion_only,
                                      probabilities=args.probabilities, output_format=args.output_format,
                                      rule=rule, overwrite=args.overwrite,
                                      use_mirroring=not args.no_mirroring, progress=bar,
                                      estimate=not (args.no_estimate or args.quiet), estimate_only=args.estimate_only,
                                      folds=args.folds, checkpoint=args.checkpoint, step_size=args.step_size)
        except PartialPredictionError as exc:  # the other cases are written: show them, then the failures
            partial, summaries = exc, exc.summaries
    if args.estimate_only:
        return 0
    print(f"{'case':24s} {'lesions':>7s} {'volume ml':>10s} {'largest ml':>10s} {'max p':>6s}  present")
    for s in summaries:
        p = "-" if s.max_lesion_probability is None else f"{s.max_lesion_probability:.2f}"
        print(f"{s.case_id:24s} {s.lesion_count:7d} {s.lesion_volume_ml:10.2f} {s.largest_lesion_ml:10.2f} {p:>6s}  "
              f"{'yes' if s.lesion_present else 'no'}")
    print(f"written to {args.out} (labelmaps, labels.json, summary.csv, summary.json)")
    if partial is not None:
        print(f"backsplit: error: {partial}", file=sys.stderr)
        return 1
    return 0


def _checkpoint_name(value: str) -> str:
    names = {"final": "checkpoint_final.pth", "best": "checkpoint_best.pth"}
    name = names.get(value, value)
    if name not in names.values():
        raise argparse.ArgumentTypeError(f"'{value}' is not a checkpoint nnU-Net writes; choose final or best "
                                         "(checkpoint_final.pth / checkpoint_best.pth)")
    return name


def _step_size(value: str) -> float:
    try:
        step = float(value)
    except ValueError:
        step = float("nan")
    if not 0 < step <= 1:
        raise argparse.ArgumentTypeError(f"step size '{value}' is not a number in 0 < S <= 1 (default 0.5)")
    return step
