"""``backsplit supports``: support structures without drawing them.

``generate``: run an organ model (an nnU-Net v2 model folder, or TotalSegmentator) over a case list and write a new
``<case>.seg.nrrd`` per case (your segments + the generated ones) and ``cases.csv`` into an output folder.
``suggest``: rank candidate support structures for a target (host organ, neighbour, false-positive prone, coverage).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from backsplit.errors import InputError
from backsplit.runtime import argtypes


def _case_arguments(p) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--cases", type=Path, metavar="CSV",
                        help="case list: columns case_id, image (channels separated by ';'; a DICOM series: its "
                             "folder or one file), segmentation (.seg.nrrd, DICOM SEG or labelmap), [names]")
    source.add_argument("--folder", type=Path,
                        help="folder of <case>.seg.nrrd (or DICOM SEG <case>.dcm) with <case>.nii.gz, "
                             "<case>_0000.nii.gz or a DICOM series folder <case>/")
    p.add_argument("--names", type=Path,
                   help="name map for labelmaps: JSON {\"1\": \"kidney\"}, CSV value,name, or .ctbl")


def register(subparsers) -> None:
    parser = subparsers.add_parser("supports", help="generate support structures with an organ model; rank them",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="supports_command", metavar="ACTION")

    g = sub.add_parser("generate", help="run an organ model over the cases; new <case>.seg.nrrd per case",
                       description="Run an organ model on every case and write <out>/<case>.seg.nrrd with your "
                                   "segments plus the generated ones (tagged as generated, with the model), and "
                                   "<out>/cases.csv for 'backsplit export --cases'. Input files are never changed; a "
                                   "rerun skips finished cases.")
    _case_arguments(g)
    model = g.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", type=Path, help="an nnU-Net v2 model folder (BackSplit model, your organ model, or "
                                                  "a TotalSegmentator task folder on disk)")
    model.add_argument("--totalsegmentator", action="store_true", help="run the installed TotalSegmentator command")
    g.add_argument("--out", type=Path, required=True, help="output folder (not inside the input folder)")
    g.add_argument("--classes", default="", help="only these classes, comma separated (TotalSegmentator: its "
                                                 "roi_subset); default all")
    g.add_argument("--task", default="total", help="TotalSegmentator task (default total)")
    g.add_argument("--fast", action="store_true", help="TotalSegmentator's fast (3 mm) model")
    g.add_argument("--executable", help="path of the TotalSegmentator command (default: found on PATH)")
    g.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N or mps")
    g.add_argument("--orientation", help="orientation code the nnU-Net model was trained in (e.g. RAS), for plain "
                                         "nnU-Net folders; default: none (RAS for TotalSegmentator folders)")
    g.add_argument("--no-mirroring", action="store_true", help="nnU-Net model: no test-time mirroring (faster)")
    g.add_argument("--on-conflict", default="suffix", choices=["suffix", "refuse"],
                   help="a generated class named like one of your segments: 'suffix' (default) writes it as "
                        "'<name> (generated)' and keeps yours; 'refuse' fails that case")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    g.set_defaults(func=run_generate)

    s = sub.add_parser("suggest", help="rank candidate support structures for a target, with reasons",
                       description="Rank the segments found in the cases as support structures for a target (paper "
                                   "Appendix B): host organ, neighbour within --distance mm, false-positive prone "
                                   "(with --predictions of a binary model), and coverage (missing/empty cases).")
    _case_arguments(s)
    s.add_argument("--target", required=True, help="the target (lesion) segment name")
    s.add_argument("--candidates", default="", help="candidate segment names, comma separated (default: all others)")
    s.add_argument("--predictions", type=Path, help="folder of a binary model's predictions (<case>.nii.gz or "
                                                    "<case>.seg.nrrd from backsplit predict) for false-positive prone")
    s.add_argument("--distance", type=argtypes.positive_mm, default=10.0, help="neighbour distance in mm (default 10)")
    s.add_argument("--host-fraction", type=argtypes.fraction, default=0.5,
                   help="share of the target voxels inside a structure for a host organ case (default 0.5)")
    s.add_argument("--min-share", type=argtypes.fraction, default=0.5,
                   help="share of the target cases a host/neighbour role needs (default 0.5)")
    s.add_argument("--accept", action="store_true", help="print the support list made from the top suggestions "
                                                         "(smaller structures first) as --supports for export")
    s.add_argument("--top", type=argtypes.count, help="how many suggestions --accept takes (default all with a role)")
    s.add_argument("--planned-steps", type=argtypes.count, metavar="STEPS",
                   help="the training you plan, in optimiser steps (epochs x iterations per epoch; default: "
                        "backsplit train's default, 50 x 250): --accept warns when the support list is longer than "
                        "advised for it")
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=run_suggest)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _sources(args):
    from backsplit.io.readers import cases_from_csv, cases_from_folder, read_name_map

    name_map = read_name_map(args.names) if args.names else None
    return cases_from_csv(args.cases, name_map) if args.cases else cases_from_folder(args.folder, name_map)


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def run_generate(args: argparse.Namespace) -> int:
    from backsplit.runtime.progress import TextProgressBar, ignore_progress
    from backsplit.supports.generate import GenerateRequest, generate_supports, input_folders_of
    from backsplit.supports.runners import NnUNetModelRunner, TotalSegmentatorRunner

    sources = _sources(args)
    folders = input_folders_of(sources) + ([args.folder] if args.folder else [])
    if args.totalsegmentator:
        runner = TotalSegmentatorRunner(task=args.task, roi_subset=_names(args.classes) or None, fast=args.fast,
                                        device=args.device, executable=args.executable)
    else:
        if args.fast or args.executable:
            raise InputError("--fast and --executable are TotalSegmentator options; use them with --totalsegmentator")
        runner = NnUNetModelRunner(args.model, device=args.device, classes=_names(args.classes) or None,
                                   use_mirroring=not args.no_mirroring, orientation=args.orientation)
    _warn_other_run(Path(args.out), runner)
    outcomes = generate_supports(sources, runner, GenerateRequest(args.out, args.on_conflict, folders),
                                 progress=ignore_progress if args.quiet else TextProgressBar())
    failed = [o for o in outcomes if o.status == "failed"]
    for o in outcomes:
        renamed = f" (renamed: {', '.join(f'{k} -> {v}' for k, v in o.renamed.items())})" if o.renamed else ""
        detail = o.error if o.status == "failed" else "already generated by an earlier run" \
            if o.status == "skipped" else f"{len(o.generated)} segment(s){renamed}"
        print(f"{o.case_id:24s} {o.status:8s} {detail}")
    print(f"{len(outcomes) - len(failed)} of {len(outcomes)} case(s) in {args.out} (case list: "
          f"{Path(args.out) / 'cases.csv'}); model: {runner.description}")
    if failed:
        print(f"{len(failed)} case(s) failed; fix them and run again (finished cases are skipped)", file=sys.stderr)
    return 1 if failed else 0


def run_suggest(args: argparse.Namespace) -> int:
    from backsplit.runtime.progress import TextProgressBar, ignore_progress
    from backsplit.supports.sources import suggest_cases
    from backsplit.supports.suggest import SuggestOptions, format_table, suggest

    if args.distance <= 0 or not 0 < args.host_fraction <= 1 or not 0 < args.min_share <= 1:
        raise InputError("--distance must be > 0 mm, --host-fraction and --min-share in (0, 1]")
    if args.top is not None and args.top < 1:
        raise InputError(f"--top must be at least 1 (got {args.top})")
    if args.planned_steps is not None and args.planned_steps < 1:
        raise InputError(f"--planned-steps must be at least 1 optimiser step (got {args.planned_steps})")
    sources = _sources(args)
    options = SuggestOptions(args.target, _names(args.candidates) or None, args.distance, args.host_fraction,
                             args.min_share)
    quiet = args.quiet or args.json
    report = suggest(suggest_cases(sources, args.predictions, args.target), options,
                     progress=ignore_progress if quiet else TextProgressBar(), total=len(sources))
    if args.json:
        print(json.dumps(report.to_json(args.top), indent=2, ensure_ascii=False))
        return 0
    print(format_table(report, args.top))
    if args.accept:
        accepted = report.accepted(args.top)
        if not accepted:
            print("no candidate has a role: nothing to accept", file=sys.stderr)
            return 1
        print(f"--supports \"{','.join(accepted)}\"")
        warning = report.budget_warning(_planned_steps(args), args.top)
        if warning:
            print(f"warning: {warning}", file=sys.stderr)
    return 0


def _planned_steps(args) -> int:
    """``--planned-steps``, or the budget of ``backsplit train``'s defaults (its epochs x iterations per epoch)."""
    from backsplit.training.options import TrainOptions

    if args.planned_steps is not None:
        return int(args.planned_steps)
    defaults = TrainOptions(dataset_dir=".", work_dir=".")
    return int(defaults.epochs) * int(defaults.iterations_per_epoch)


def _warn_other_run(out_dir: Path, runner) -> None:
    """A rerun skips finished cases; say so when they were made with another model or other classes."""
    try:
        earlier = json.loads((out_dir / "supports.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    classes = runner.class_names()
    if not any(out_dir.glob("*.seg.nrrd")) or (earlier.get("model"), earlier.get("classes")) == (runner.description,
                                                                                                   classes):
        return
    print(f"note: '{out_dir}' holds cases made with {earlier.get('model')} (classes: "
          f"{', '.join(earlier.get('classes') or [])}); those cases are skipped, not made again with "
          f"{runner.description} (classes: {', '.join(classes)}): choose another --out to generate them anew",
          file=sys.stderr)
