"""``backsplit demo``: the main job, end to end, on the shipped demo cases (synthetic CT from real KiTS23 labels).

  1. write demo cases as a user's files (CT .nii.gz + Slicer .seg.nrrd): training cases and held-out test cases
  2. export the training cases as a BackSplit dataset (target cyst; support structures tumor, kidney) and its
     binary baseline dataset, and the test cases as a reference dataset
  3. train the BackSplit model and the binary baseline side by side with identical settings (short run)
  4. predict the held-out cases with both models (a labelmap without support structures costs nothing extra)
  5. evaluate both against the references and print the comparison; write the comparison picture

The images are synthetic, the budget is a few minutes of CPU: the numbers say what this short run reached, not what
BackSplit reaches on real CT with a full training.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from backsplit.runtime import argtypes


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run the end-to-end demo on shipped KiTS23-based synthetic cases",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("demo-output"), help="working folder (default ./demo-output)")
    p.add_argument("--cases", type=argtypes.count, default=12,
                   help="training cases (the shipped 20 minus --test-cases at most; default 12)")
    p.add_argument("--test-cases", type=argtypes.count, default=4,
                   help="held-out cases for prediction and evaluation (default 4)")
    p.add_argument("--epochs", type=argtypes.count, default=8, help="training epochs (default 8)")
    p.add_argument("--iterations", type=argtypes.count, default=100, help="training iterations per epoch (default 100)")
    p.add_argument("--batch-size", type=argtypes.non_negative_int, default=12,
                   help="batch size (default 12: nnU-Net plans 58 slices for these small images; on a CPU, more "
                        "optimiser steps of smaller batches learn the small lesions within minutes; 0 = planned)")
    p.add_argument("--configuration", default="2d", choices=["2d", "3d_fullres"],
                   help="nnU-Net configuration (default 2d: fastest)")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"],
                   help="where to train and predict; auto picks cuda, then mps, then cpu (default auto)")
    p.add_argument("--seed", type=argtypes.seed, default=0,
                   help="random seed of the cases and the training (default 0)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo in the same folder")
    p.add_argument("--stop-after", choices=["export", "train"], default=None, help="stop after this stage")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from backsplit.demo.pipeline import DemoSettings, run_demo

    return run_demo(DemoSettings(out=Path(args.out), cases=args.cases, test_cases=args.test_cases, epochs=args.epochs,
                                 iterations=args.iterations, batch_size=args.batch_size,
                                 configuration=args.configuration, device=args.device, seed=args.seed,
                                 overwrite=args.overwrite, stop_after=args.stop_after), say=print)
