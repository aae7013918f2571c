"""``backsplit demo``: the main job on the shipped demo cases (synthetic CT from real KiTS23 label maps).

Stages: write the demo cases as files (CT .nii.gz + Slicer .seg.nrrd), export them as a BackSplit dataset and its
binary twin through the same reader a user's files go through, and print what was written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run the end-to-end demo on shipped KiTS23-based synthetic cases",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("demo-output"), help="working folder (default ./demo-output)")
    p.add_argument("--cases", type=int, default=12, help="number of demo cases (max 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo in the same folder")
    p.add_argument("--stop-after", choices=["export"], default=None, help="stop after this stage")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import DEMO_COLORS, DEMO_SUPPORTS, DEMO_TARGETS, write_demo_case_files
    from ..export import ExportRequest, export_dataset
    from ..progress import TextProgressBar
    from ..readers import cases_from_folder

    out = Path(args.out)
    cases_dir = out / "cases"
    print(f"[1] writing {args.cases} demo cases (synthetic CT from KiTS23 label maps) to {cases_dir}")
    write_demo_case_files(cases_dir, args.cases, args.seed)
    sources = cases_from_folder(cases_dir)
    request = ExportRequest(out_root=out / "nnUNet_raw", dataset_id=501, dataset_name="DemoKidneyCyst",
                            targets=list(DEMO_TARGETS), supports=list(DEMO_SUPPORTS), colors=DEMO_COLORS,
                            overwrite=args.overwrite)
    print(f"[2] exporting: targets {list(DEMO_TARGETS)}, support structures {list(DEMO_SUPPORTS)}")
    result = export_dataset(sources, request, progress=TextProgressBar())
    print("\n".join(result.summary_lines()))
    labels = json.loads((result.dataset_dir / "dataset.json").read_text())["labels"]
    print(f"    labels: {labels}")
    return 0
