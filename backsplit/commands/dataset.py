"""``backsplit dataset add|versions|verify``: grow an exported dataset version by version."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("dataset", help="add cases to an exported dataset as a new version; list and verify "
                                              "versions",
                              description="Dataset versions: 'add' appends cases to a BackSplit dataset and its binary "
                                          "baseline dataset as a new version (the previous version is kept in "
                                          "backsplit_versions/<dataset>/v<N>/ next to it). A kept version has its "
                                          "own copies of the label files, so correcting a label file of the newest "
                                          "version in place leaves it as it was; image files are shared with newer "
                                          "versions through hard links: replace an image by writing a new file and "
                                          "renaming it over the old one, never by writing into it. 'versions' warns "
                                          "about a kept version's file modified after it was kept; 'verify' "
                                          "re-hashes every file.")
    sub = p.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)

    add = sub.add_parser("add", help="append cases as a new dataset version",
                         description="Append cases (checked like export: channels, geometry, segment names) to the "
                                     "newest version of a BackSplit dataset and its binary baseline dataset.")
    add.add_argument("dataset", type=Path, help="the BackSplit dataset folder (DatasetNNN_Name)")
    source = add.add_mutually_exclusive_group(required=True)
    source.add_argument("--segmentation", type=Path, help="one case: its .seg.nrrd (or labelmap with --names)")
    source.add_argument("--folder", type=Path,
                        help="folder of <case>.seg.nrrd (or DICOM SEG <case>.dcm) with <case>.nii.gz, "
                             "<case>_0000.nii.gz or a DICOM series folder <case>/")
    source.add_argument("--cases", type=Path, metavar="CSV",
                        help="case list: columns case_id, image (channels separated by ';'; a DICOM series: its "
                             "folder or one file), segmentation (.seg.nrrd, DICOM SEG or labelmap), [names]")
    add.add_argument("--image", type=Path, action="append", default=[],
                     help="with --segmentation: the image, repeated once per channel in the dataset's channel order")
    add.add_argument("--case-id", help="with --segmentation: the case id (default: the segmentation's file name)")
    add.add_argument("--names", type=Path,
                     help="name map for labelmaps: JSON {\"1\": \"kidney\"}, CSV value,name, or .ctbl")
    add.add_argument("--map", action="append", default=[], metavar="ALIAS=CLASS",
                     help="treat segment ALIAS as CLASS (repeatable); added to the dataset's stored rename map")
    add.add_argument("--ignore-segment", action="append", default=[], metavar="NAME",
                     help="leave this segment out on purpose (repeatable); unknown segments are otherwise refused")
    add.add_argument("--rename-existing", action="store_true",
                     help="a case id that exists already gets the next free <id>_<n> (default: refused)")
    add.add_argument("--allow-negative", action="store_true", help="keep cases without target voxels (recorded)")
    add.add_argument("--missing-as-absent", action="store_true",
                     help="a support segment missing from a case is recorded as absent instead of an error")
    add.add_argument("--quiet", action="store_true", help="no progress bar")
    add.set_defaults(func=run_add)

    versions = sub.add_parser("versions", help="list a dataset's versions and where each is kept (a kept version's "
                                               "file modified after it was kept is named)")
    versions.add_argument("dataset", type=Path, help="the dataset folder (DatasetNNN_Name)")
    versions.set_defaults(func=run_versions)

    verify = sub.add_parser("verify", help="re-hash the case files and compare with dataset.json")
    verify.add_argument("dataset", type=Path, help="the dataset folder (newest version, or a kept earlier one)")
    verify.set_defaults(func=run_verify)


def sources_from_args(args: argparse.Namespace) -> list:
    from backsplit.errors import InputError
    from backsplit.io.readers import FileCaseSource, cases_from_csv, cases_from_folder, read_name_map, strip_suffix

    name_map = read_name_map(args.names) if args.names else None
    if args.cases:
        return cases_from_csv(args.cases, name_map)
    if args.folder:
        return cases_from_folder(args.folder, name_map)
    if not args.image:
        raise InputError("--segmentation needs the case's image: give --image (once per channel)")
    case_id = args.case_id or strip_suffix(args.segmentation.name)
    return [FileCaseSource(case_id, list(args.image), args.segmentation, name_map)]


def run_add(args: argparse.Namespace) -> int:
    from backsplit.datasets.add import AddRequest, add_cases
    from backsplit.datasets.policy import ON_EXISTING_REFUSE, ON_EXISTING_RENAME
    from backsplit.labels.matching import parse_mapping
    from backsplit.runtime.progress import TextProgressBar, ignore_progress

    request = AddRequest(args.dataset, name_mapping=parse_mapping(args.map), ignore_segments=args.ignore_segment,
                         on_existing_id=ON_EXISTING_RENAME if args.rename_existing else ON_EXISTING_REFUSE,
                         allow_negative_cases=args.allow_negative,
                         missing_segments="absent" if args.missing_as_absent else "error")
    result = add_cases(sources_from_args(args), request,
                       progress=ignore_progress if args.quiet else TextProgressBar())
    print("\n".join(result.summary_lines()))
    return 0


def run_versions(args: argparse.Namespace) -> int:
    from backsplit.datasets.versions import list_versions

    for info in list_versions(args.dataset):
        print(info.line())
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from backsplit.datasets.versions import verify_files

    problems = verify_files(args.dataset)
    if problems:
        print("\n".join(problems))
        return 1
    print(f"{args.dataset}: every case file matches its recorded hash")
    return 0
