"""``backsplit context``: look at learned context (``backsplit train --context learned``).

``show``: run the task generator of a learned-context training on training cases and write, per case, the labelmap
it proposes (targets and support structures as in the reference; background near the targets split into learned
context; far background 0) as ``<case>.nii.gz`` on the case's own grid and ``<case>.seg.nrrd`` with named segments
(load it in Slicer on the case's image), plus ``learned_context.json``. The generator is kept only in the training
work folder: exported model folders do not have it. (Rings and k-means context are chosen at export: ``backsplit
export --context``.)
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("context", help="look at learned context (show what the task generator learned)",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="context_command", metavar="ACTION")
    s = sub.add_parser("show", help="write the learned context of training cases as labelmaps and .seg.nrrd "
                                    "segmentations",
                       description="Run the task generator of a learned-context training (backsplit train --context "
                                   "learned) on training cases and write <out>/<case>.nii.gz, <out>/<case>.seg.nrrd "
                                   "and <out>/learned_context.json. Nothing in the dataset or work folder changes.")
    s.add_argument("--work-dir", type=Path, required=True,
                   help="the training work folder (--work-dir of backsplit train, holding nnUNet_results/), or a "
                        "results folder, fold folder or checkpoint file inside it; not an exported model folder "
                        "(the generator is stripped from those)")
    s.add_argument("--dataset", type=Path, required=True,
                   help="the dataset folder (DatasetNNN_Name) the training used: the cases' images and references")
    s.add_argument("--out", type=Path, required=True,
                   help="output folder: new or empty (not inside the dataset folder)")
    s.add_argument("--cases", default="",
                   help="case ids, comma separated (default: every training case of the dataset)")
    s.add_argument("--fold", help="the fold whose generator to use (0-4 or all); needed only when several folds "
                                  "were trained (default: the only one)")
    s.add_argument("--configuration", help="nnU-Net configuration (2d, 3d_fullres, ...); needed only when several "
                                           "were trained with learned context (default: the only one)")
    s.add_argument("--checkpoint", default="final", choices=["final", "latest"],
                   help="checkpoint_final.pth (finished training) or checkpoint_latest.pth (a training still "
                        "running or interrupted); default final")
    s.add_argument("--extent", default="margin", choices=["margin", "label"],
                   help="which background voxels get learned context: 'margin' those within the margin m (mm) of "
                        "a target, where the soft label is the generator's alone; 'label' those whose soft label "
                        "(the generator's, fading into background with tau beyond m) is highest for a learned "
                        "context structure (a little beyond m); default margin")
    s.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"],
                   help="where the generator runs; auto picks cuda, then mps, then cpu (default auto)")
    s.add_argument("--mirroring", action="store_true",
                   help="test-time mirroring of the generator (4x (2d) to 8x (3d) more network passes; default off)")
    s.add_argument("--overwrite", action="store_true",
                   help="write into a non-empty --out, replacing files of the same names (default: refuse)")
    s.add_argument("--quiet", action="store_true", help="no progress bar, only the result table (default: progress "
                                                        "on stderr)")
    s.set_defaults(func=run_show)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def run_show(args: argparse.Namespace) -> int:
    from backsplit.runtime.progress import TextProgressBar, ignore_progress
    from backsplit.training.colab.show_cases import ShowRequest, show_learned_context

    request = ShowRequest(work_dir=str(args.work_dir), dataset_dir=str(args.dataset), out_dir=str(args.out),
                          cases=[c.strip() for c in args.cases.split(",") if c.strip()], fold=args.fold,
                          checkpoint=args.checkpoint, configuration=args.configuration, extent=args.extent,
                          device=args.device, use_mirroring=bool(args.mirroring), overwrite=bool(args.overwrite))
    shown = show_learned_context(request, progress=ignore_progress if args.quiet else TextProgressBar())
    for case in shown:
        volumes = ", ".join(f"{name} {ml:g} ml" for name, ml in case.context_ml.items())
        print(f"{case.case_id:24s} {volumes}")
    print(f"{len(shown)} case(s) in {args.out} (<case>.nii.gz, <case>.seg.nrrd, learned_context.json)")
    return 0
