"""``backsplit export``: turn cases on disk into a BackSplit nnU-Net dataset and its binary baseline dataset."""

from __future__ import annotations

import argparse
from pathlib import Path

from backsplit.labels.matching import parse_mapping, split_names
from backsplit.runtime import argtypes


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export cases (images + .seg.nrrd or labelmaps) as a BackSplit nnU-Net dataset",
        description="Export cases as a BackSplit nnU-Net v2 raw dataset (targets 1..T, support structures T+1..T+S; "
                    "a voxel in several segments takes the earliest class) plus its binary baseline dataset.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--cases", type=Path, metavar="CSV",
                        help="case list: columns case_id, image (channels separated by ';'; a DICOM series: its "
                             "folder or one file), segmentation (.seg.nrrd, DICOM SEG or labelmap), [names]")
    source.add_argument("--folder", type=Path,
                        help="folder of <case>.seg.nrrd (or DICOM SEG <case>.dcm) with <case>.nii.gz, "
                             "<case>_0000.nii.gz or a DICOM series folder <case>/")
    p.add_argument("--targets", required=True, help="target (lesion) segment names, comma separated, in priority order")
    p.add_argument("--supports", default="",
                   help="support structure segment names, comma separated, in priority order (default: none)")
    p.add_argument("--map", action="append", default=[], metavar="ALIAS=CLASS",
                   help="treat segment ALIAS as CLASS (repeatable), e.g. --map 'renal cyst=cyst' (default: none)")
    p.add_argument("--names", type=Path,
                   help="name map for labelmaps: JSON {\"1\": \"kidney\"}, CSV value,name, or .ctbl")
    p.add_argument("--channels", default="CT", help="channel names, comma separated (default CT)")
    p.add_argument("--out", type=Path, required=True, help="folder receiving the datasets (e.g. nnUNet_raw)")
    p.add_argument("--id", type=argtypes.dataset_id, required=True, dest="dataset_id", help="dataset id (1-999)")
    p.add_argument("--name", required=True, help="dataset name (letters, digits, - and _)")
    p.add_argument("--binary-id", type=argtypes.dataset_id,
                   help="dataset id of the binary baseline dataset (default id+1)")
    p.add_argument("--no-binary", action="store_true", help="do not write the binary baseline dataset")
    p.add_argument("--allow-negative", action="store_true", help="keep cases without target voxels (recorded)")
    p.add_argument("--missing-as-absent", action="store_true",
                   help="a support segment missing from a case is treated as absent (reported) instead of an error")
    p.add_argument("--context", default="none", metavar="METHOD",
                   help="generated context added as support structures (CoLab): rings[:W1,W2,...] = shells "
                        "around the targets up to W mm (default 5,15), kmeans[:T] = T intensity clusters of the body "
                        "(default 2); painted on background only (default none)")
    p.add_argument("--overwrite", action="store_true", help="replace existing datasets with the same ids")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from backsplit.datasets.export import ExportRequest, export_dataset
    from backsplit.io.readers import cases_from_csv, cases_from_folder, read_name_map
    from backsplit.labels.context import ContextSpec
    from backsplit.runtime.progress import TextProgressBar, ignore_progress

    name_map = read_name_map(args.names) if args.names else None
    sources = cases_from_csv(args.cases, name_map) if args.cases else cases_from_folder(args.folder, name_map)
    request = ExportRequest(
        out_root=args.out, dataset_id=args.dataset_id, dataset_name=args.name,
        targets=split_names(args.targets), supports=split_names(args.supports),
        name_mapping=parse_mapping(args.map), channel_names=split_names(args.channels) or ["CT"],
        binary_twin=not args.no_binary, binary_dataset_id=args.binary_id,
        allow_negative_cases=args.allow_negative,
        missing_segments="absent" if args.missing_as_absent else "error", overwrite=args.overwrite,
        context=ContextSpec.parse(args.context))
    result = export_dataset(sources, request, progress=ignore_progress if args.quiet else TextProgressBar())
    print("\n".join(result.summary_lines()))
    return 0
