"""Run an organ model over a case list: a new ``<case>.seg.nrrd`` per case in an output folder, holding the user's
segments (unchanged: voxels, names, colours, terminology) plus the generated ones, each tagged
``BackSplit.Generated:1`` and ``BackSplit.Model:<model>``.

Rules: the input files are never written; the output folder may not be (inside) a folder the cases come from; each
file is written aside (``.<case>.partial.seg.nrrd``) then moved, so an existing ``<case>.seg.nrrd`` is a finished
case and a rerun skips it; a case that fails is reported and the others go on; a full disk stops the run with the
finished cases kept (the partial file removed). A generated class whose name is already a user segment's (ignoring
case and repeated spaces) is **suffixed** by default (``liver`` -> ``liver (generated)``; the user's segment is kept
as it is), or the case is refused with ``on_conflict="refuse"``. ``cases.csv`` in the output folder lists the
finished cases (original images, new segmentations) for ``backsplit export --cases`` and ``supports suggest``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np

from backsplit.errors import BackSplitError, CancelledError, InputError, OutputError
from backsplit.io.cases import Case, CaseSource, check_unique_ids
from backsplit.io.geometry import Geometry
from backsplit.runtime.exits import is_disk_full
from backsplit.runtime.progress import ProgressCallback, ProgressEvent, ignore_progress
from backsplit.supports.runners import GENERATED_TAG, MODEL_TAG, GeneratedSegments, OrganModelRunner

CONFLICT_POLICIES = ("suffix", "refuse")
GENERATED_SUFFIX = "generated"
MANIFEST = "supports.json"
CASE_LIST = "cases.csv"


@dataclass
class CaseOutcome:
    case_id: str
    status: str                     # "done", "skipped" (finished by an earlier run), "failed"
    path: Optional[str] = None
    generated: list[str] = field(default_factory=list)   # segment names written for the model's classes
    renamed: dict[str, str] = field(default_factory=dict)  # model class -> segment name, where suffixed
    error: str = ""
    seconds: float = 0.0


SegFileWriter = Callable[[Path, Geometry, dict, dict, dict, dict], None]


def write_case_file(path: Path, geometry: Geometry, masks: dict, colors: dict, terminology: dict, tags: dict) -> None:
    from backsplit.io.segfile import write_seg_nrrd

    write_seg_nrrd(path, geometry, masks, colors, terminology, tags)


@dataclass
class GenerateRequest:
    out_dir: Path
    on_conflict: str = "suffix"                     # or "refuse"
    input_folders: Sequence[Path] = ()              # folders the cases come from; the output may not be inside one
    include_user_segments: bool = True              # False: only the generated segments (the Slicer worker)
    writer: SegFileWriter = write_case_file         # injectable (tests simulate a full disk)


def name_key(name: str) -> str:
    """Segment names are matched ignoring case and repeated spaces (as ``backsplit export`` does)."""
    return " ".join(name.split()).casefold()


def resolve_names(user_names: Iterable[str], generated: Iterable[str], policy: str, case_id: str) -> dict[str, str]:
    """Model class -> segment name. A class named like a user segment gets ' (generated)' (then ' (generated 2)',
    ...) with ``policy='suffix'``; ``'refuse'`` raises InputError naming the clashing segments."""
    if policy not in CONFLICT_POLICIES:
        raise InputError(f"on_conflict '{policy}' is not one of {', '.join(CONFLICT_POLICIES)}")
    taken = {name_key(n) for n in user_names}
    clashes = [g for g in generated if name_key(g) in taken]
    if clashes and policy == "refuse":
        raise InputError(f"the organ model's class(es) {', '.join(repr(c) for c in clashes)} have the name of a "
                         "segment the case already has; rename the user segment, or let BackSplit suffix the "
                         "generated one (on_conflict suffix)", case=case_id)
    names = {}
    for cls in generated:
        name, n = cls, 1
        while name_key(name) in taken:
            name = f"{cls} ({GENERATED_SUFFIX}{'' if n == 1 else f' {n}'})"
            n += 1
        taken.add(name_key(name))
        names[cls] = name
    return names


def input_folders_of(sources: Sequence[CaseSource]) -> list[Path]:
    folders = set()
    for source in sources:
        for path in [*(getattr(source, "images", None) or []), getattr(source, "segmentation", None)]:
            if path:
                folders.add(Path(path).resolve().parent)
    return sorted(folders)


def check_output_folder(out_dir: Path, input_folders: Iterable[Path]) -> None:
    """Refuse an output folder that is, or lies inside, a folder the cases come from."""
    out = Path(out_dir).resolve()
    for folder in input_folders:
        folder = Path(folder).resolve()
        if out == folder or folder in out.parents:
            raise OutputError(f"the output folder '{out_dir}' is inside the input folder '{folder}': the new case "
                              "files would mix with the user's own; choose a folder outside it")


def combine(case: Case, generated: GeneratedSegments, names: dict[str, str], include_user: bool):
    """Masks, colours, terminology and tags of the new file: the user's segments first, then the generated ones."""
    masks, colors, terminology, tags = {}, {}, {}, {}
    if include_user:
        masks.update(case.segments)
        colors.update({n: c for n, c in case.colors.items() if n in case.segments})
        terminology.update({n: t for n, t in case.terminology.items() if n in case.segments})
    for cls, mask in generated.masks.items():
        if tuple(mask.shape) != tuple(case.geometry.shape):
            raise InputError(f"the organ model's '{cls}' has size {mask.shape[::-1]}, not the image's "
                             f"{tuple(case.geometry.shape)[::-1]}", case=case.case_id)
        name = names[cls]
        masks[name] = np.asarray(mask, bool)
        if cls in generated.colors:
            colors[name] = generated.colors[cls]
        if cls in generated.terminology:
            terminology[name] = generated.terminology[cls]
        tags[name] = {GENERATED_TAG: "1", MODEL_TAG: generated.model.replace("|", "/")}
    return masks, colors, terminology, tags


def read_segment_tags(path: Path) -> dict[str, dict[str, str]]:
    """Segment name -> its tags (``SegmentN_Tags`` 'key:value|...') from a ``.seg.nrrd`` header (no voxels read)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    keys = set(reader.GetMetaDataKeys())
    tags, index = {}, 0
    while f"Segment{index}_Name" in keys:
        text = reader.GetMetaData(f"Segment{index}_Tags") if f"Segment{index}_Tags" in keys else ""
        tags[reader.GetMetaData(f"Segment{index}_Name")] = dict(item.split(":", 1) for item in text.split("|")
                                                                if ":" in item)
        index += 1
    return tags


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name[:-len('.seg.nrrd')]}.partial.seg.nrrd")


def _write_text_aside(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_case_list(out_dir: Path, sources: Sequence[CaseSource]) -> Path:
    """``cases.csv`` of the finished cases: original image paths (absolute) and the new segmentation files."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["case_id", "image", "segmentation"])
    for source in sources:
        target = Path(out_dir) / f"{source.case_id}.seg.nrrd"
        images = getattr(source, "images", None) or []
        if target.is_file() and images:
            writer.writerow([source.case_id, ";".join(str(Path(p).resolve()) for p in images), target.name])
    path = Path(out_dir) / CASE_LIST
    _write_text_aside(path, buffer.getvalue())
    return path


def generate_supports(sources: Sequence[CaseSource], runner: OrganModelRunner, request: GenerateRequest,
                      progress: ProgressCallback = ignore_progress,
                      cancel: Callable[[], bool] = lambda: False) -> list[CaseOutcome]:
    """Run ``runner`` on every case (one at a time) and write ``<out_dir>/<case>.seg.nrrd``; see the module doc.

    Raises InputError/OutputError before any case for a bad request (output inside an input folder, channel count
    the model cannot take), OutputError when the disk is full (finished cases kept), CancelledError on cancel."""
    check_unique_ids(sources)
    out_dir = Path(request.out_dir)
    check_output_folder(out_dir, list(request.input_folders) or input_folders_of(sources))
    if request.on_conflict not in CONFLICT_POLICIES:
        raise InputError(f"on_conflict '{request.on_conflict}' is not one of {', '.join(CONFLICT_POLICIES)}")
    for source in sources:
        images = getattr(source, "images", None)
        if images:
            runner.check_channels(len(images), source.case_id)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for stale in out_dir.glob(".*.partial*"):  # left by a killed run
            stale.unlink()
    except OSError as exc:
        raise OutputError(f"the output folder '{out_dir}' cannot be used ({exc})") from None
    manifest_path = out_dir / MANIFEST
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    manifest.update({"model": runner.description, "classes": runner.class_names(), "on_conflict": request.on_conflict})
    manifest.setdefault("cases", {})
    total = len(sources)
    pending = [s for s in sources if not (out_dir / f"{s.case_id}.seg.nrrd").is_file()]
    if pending:
        runner.prepare(progress)
    outcomes: list[CaseOutcome] = []
    for index, source in enumerate(sources):
        if cancel():
            raise CancelledError(f"generation cancelled; {sum(o.status != 'failed' for o in outcomes)} finished "
                                 f"case(s) kept in {out_dir}")
        target = out_dir / f"{source.case_id}.seg.nrrd"
        if target.is_file():
            outcome = CaseOutcome(source.case_id, "skipped", str(target))
        else:
            outcome = _one_case(source, runner, request, target, cancel)
            manifest["cases"][source.case_id] = {k: v for k, v in asdict(outcome).items() if k != "case_id"}
            try:
                _write_text_aside(manifest_path, json.dumps(manifest, indent=2, ensure_ascii=False))
                write_case_list(out_dir, sources)
            except OSError as exc:
                if is_disk_full(exc):
                    raise OutputError(f"the disk is full while writing the case list; the finished cases are kept "
                                      f"in '{out_dir}': free space and run again (finished cases are skipped)"
                                      ) from None
                raise
        outcomes.append(outcome)
        text = {"done": f"{len(outcome.generated)} segment(s) added", "skipped": "already generated (skipped)",
                "failed": f"FAILED: {outcome.error}"}[outcome.status]
        progress(ProgressEvent("generate", f"case '{source.case_id}': {text}", index + 1, total,
                               {"case": source.case_id, "status": outcome.status, "file": outcome.path,
                                "segments": outcome.generated, "renamed": outcome.renamed, "error": outcome.error}))
    if not pending:
        write_case_list(out_dir, sources)  # a rerun with everything finished still leaves a complete case list
    return outcomes


def _one_case(source: CaseSource, runner: OrganModelRunner, request: GenerateRequest, target: Path,
              cancel: Callable[[], bool]) -> CaseOutcome:
    started = time.time()
    partial = _partial(target)
    try:
        case = source.load()
        generated = runner.segment(case, [Path(p) for p in (getattr(source, "images", None) or [])], cancel)
        names = resolve_names(case.segments if request.include_user_segments else (), list(generated.masks),
                              request.on_conflict, case.case_id)
        masks, colors, terminology, tags = combine(case, generated, names, request.include_user_segments)
        request.writer(partial, case.geometry, masks, colors, terminology, tags)
        os.replace(partial, target)
        return CaseOutcome(case.case_id, "done", str(target), [names[c] for c in generated.masks],
                           {c: n for c, n in names.items() if c != n}, seconds=time.time() - started)
    except CancelledError:
        partial.unlink(missing_ok=True)
        raise
    except OSError as exc:
        partial.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise OutputError(f"the disk is full (case '{source.case_id}'); the finished cases are kept in "
                              f"'{target.parent}' and the partial file was removed: free space and run again "
                              "(finished cases are skipped)") from None
        return CaseOutcome(source.case_id, "failed", error=f"{type(exc).__name__}: {exc}",
                           seconds=time.time() - started)
    except BackSplitError as exc:
        partial.unlink(missing_ok=True)
        return CaseOutcome(source.case_id, "failed", error=str(exc), seconds=time.time() - started)
    except Exception as exc:  # noqa: BLE001 - one case's unexpected failure must not lose the others
        partial.unlink(missing_ok=True)
        traceback.print_exc()
        return CaseOutcome(source.case_id, "failed", error=f"{type(exc).__name__}: {exc}",
                           seconds=time.time() - started)
