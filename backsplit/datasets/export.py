"""Write a BackSplit nnU-Net v2 raw dataset and its binary twin.

Layout (both datasets side by side in ``out_root``, e.g. nnU-Net's ``nnUNet_raw``)::

    Dataset501_Kidney/        imagesTr/<case>_0000.nii.gz  labelsTr/<case>.nii.gz  dataset.json
    Dataset502_KidneyBinary/  same images (hard links where possible), labels with support classes -> 0

Both datasets are written into a hidden temporary folder inside ``out_root`` and moved into place only when every
case has been read, checked and written, so a failure (bad case, cancel, full disk) leaves nothing half-written and
never touches an existing dataset. An existing dataset id is replaced only with ``overwrite=True``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional, Sequence

import numpy as np

from backsplit import __version__
from backsplit.io.cases import CaseSource, check_unique_ids
from backsplit.labels.context import ContextSpec, add_context
from backsplit.errors import BackSplitError, CancelledError, InputError, OutputError
from backsplit.io.niftiio import NiftiGzWriter
from backsplit.runtime.progress import ProgressCallback, ProgressEvent, ignore_progress
from backsplit.runtime.steps import raise_write_error, run_to_result
from backsplit.labels.schema import LabelSchema
from backsplit.labels.terminology import class_terminology
from backsplit.datasets.validation import MISSING_ABSENT, MISSING_ERROR, case_labels, check_case_ids

FILE_ENDING = ".nii.gz"
FORMAT_VERSION = 1


@dataclass
class ExportRequest:
    out_root: Path                              # folder that receives the dataset folders (e.g. nnUNet_raw)
    dataset_id: int
    dataset_name: str
    targets: Sequence[str]                      # class names, in priority order
    supports: Sequence[str] = ()
    name_mapping: Mapping[str, str] = field(default_factory=dict)  # segment alias -> class name
    channel_names: Sequence[str] = ("CT",)      # nnU-Net uses "CT" for CT normalisation, others get z-score
    colors: Mapping[str, Sequence[float]] = field(default_factory=dict)
    binary_twin: bool = True
    binary_dataset_id: Optional[int] = None     # default: dataset_id + 1
    allow_negative_cases: bool = False
    missing_segments: str = MISSING_ERROR       # or "absent": a missing support segment is reported, not an error
    overwrite: bool = False
    compression_level: int = 1                 # zlib level for .nii.gz (1 is fast and nearly as small)
    context: ContextSpec = field(default_factory=ContextSpec)  # generated context classes (rings, k-means)

    @property
    def schema(self) -> LabelSchema:
        """The classes read from the cases' segments."""
        return LabelSchema.create(list(self.targets), list(self.supports), self.colors)

    @property
    def output_schema(self) -> LabelSchema:
        """The classes written: the schema plus generated context classes after the support structures."""
        if not self.context.enabled:
            return self.schema
        return LabelSchema.create(list(self.targets), list(self.supports) + self.context.class_names(), self.colors)

    @property
    def folder_name(self) -> str:
        return dataset_folder_name(self.dataset_id, self.dataset_name)

    @property
    def binary_id(self) -> int:
        return self.binary_dataset_id if self.binary_dataset_id is not None else self.dataset_id + 1

    @property
    def binary_folder_name(self) -> str:
        return dataset_folder_name(self.binary_id, f"{self.dataset_name}Binary")


@dataclass
class ExportResult:
    dataset_dir: Path
    binary_dataset_dir: Optional[Path]
    case_ids: list[str]
    negative_cases: list[str]
    absent_segments: dict[str, list[str]]       # case -> classes absent in it
    seconds: float

    def summary_lines(self) -> list[str]:
        lines = [f"BackSplit dataset: {self.dataset_dir}"]
        if self.binary_dataset_dir:
            lines.append(f"Binary twin:       {self.binary_dataset_dir}")
        lines.append(f"Cases: {len(self.case_ids)} ({len(self.negative_cases)} negative) in {self.seconds:.1f} s")
        for case, classes in self.absent_segments.items():
            lines.append(f"  case '{case}': no segment for {', '.join(classes)} (treated as absent)")
        return lines


def dataset_folder_name(dataset_id: int, name: str) -> str:
    if not 1 <= int(dataset_id) <= 999:
        raise InputError(f"dataset id {dataset_id} is out of range; nnU-Net ids are 1 to 999")
    name = name.strip()
    if not name or any(ch in name for ch in '/\\:*?"<>| ') or name.startswith("."):
        raise InputError(f"the dataset name '{name}' cannot be a folder name for nnU-Net; use letters, digits, '-' "
                         "and '_' (no spaces)")
    return f"Dataset{int(dataset_id):03d}_{name}"


def existing_datasets(out_root: Path, dataset_id: int) -> list[Path]:
    if not out_root.is_dir():
        return []
    prefix = f"Dataset{int(dataset_id):03d}_"
    return sorted(p for p in out_root.iterdir() if p.name.startswith(prefix) and p.is_dir())


def check_output(request: ExportRequest) -> None:
    """Refuse up front what would fail late: existing ids, an unwritable folder, id clashes."""
    out_root = Path(request.out_root)
    ids = [request.dataset_id] + ([request.binary_id] if request.binary_twin else [])
    request.folder_name, request.binary_folder_name  # validate names and ids
    if request.binary_twin and request.binary_id == request.dataset_id:
        raise InputError("the binary twin needs its own dataset id; choose another binary dataset id")
    if not request.overwrite:
        for dataset_id in ids:
            found = existing_datasets(out_root, dataset_id)
            if found:
                raise OutputError(f"dataset id {dataset_id} already exists in '{out_root}' ({found[0].name}); "
                                  "choose another id, or allow overwriting it (--overwrite)")
    try:
        out_root.mkdir(parents=True, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=".backsplit-probe-", dir=out_root)
        os.rmdir(probe)
    except OSError as exc:
        raise OutputError(f"the output folder '{out_root}' is not writable ({exc.strerror}); choose another "
                          "folder") from None


def iter_export(sources: Sequence[CaseSource], request: ExportRequest,
                cancel: Callable[[], bool] = lambda: False) -> Iterator[ProgressEvent]:
    """Export step by step: yields one event per case written; the final event carries the ExportResult in
    ``event.data["result"]``. A GUI steps this iterator from a timer; ``export_dataset`` runs it to the end."""
    started = time.time()
    if not sources:
        raise InputError("the case list is empty; add at least one case")
    schema = request.schema
    output_schema = request.output_schema  # checks generated class names against the user's
    if request.missing_segments not in (MISSING_ERROR, MISSING_ABSENT):
        raise ValueError(f"missing_segments must be '{MISSING_ERROR}' or '{MISSING_ABSENT}'")
    check_unique_ids(sources)
    check_case_ids([s.case_id for s in sources])
    check_output(request)
    out_root = Path(request.out_root)
    staging = Path(tempfile.mkdtemp(prefix=".backsplit-export-", dir=out_root))
    writer = NiftiGzWriter(level=request.compression_level)
    try:
        main_dir = staging / request.folder_name
        twin_dir = staging / request.binary_folder_name if request.binary_twin else None
        for folder in [main_dir] + ([twin_dir] if twin_dir else []):
            (folder / "imagesTr").mkdir(parents=True)
            (folder / "labelsTr").mkdir()
        negative: list[str] = []
        absent: dict[str, list[str]] = {}
        used_sources: dict[str, set[str]] = {c.name: set() for c in output_schema.classes}
        source_colors: dict[str, list[float]] = {}
        source_terminology: dict[str, str] = {}
        total = len(sources)
        yield ProgressEvent("export", f"checking and writing {total} case(s)", 0, total)
        for index, source in enumerate(sources):
            if cancel():
                raise CancelledError("export cancelled; nothing was written")
            case = source.load()
            if case.case_id != source.case_id:
                case.case_id = source.case_id
            checked = case_labels(case, schema, mapping=request.name_mapping,
                                  expected_channels=len(request.channel_names),
                                  allow_negative=request.allow_negative_cases, missing=request.missing_segments)
            if checked.negative:
                negative.append(case.case_id)
            if checked.absent_classes:
                absent[case.case_id] = checked.absent_classes
            for cls, names in checked.sources.items():
                used_sources[cls].update(names)
                for name in names:
                    if name in case.colors and cls not in source_colors:
                        source_colors[cls] = [round(float(c), 4) for c in case.colors[name]]
                    if name in case.terminology and cls not in source_terminology:
                        source_terminology[cls] = case.terminology[name]
            labels = add_context(checked.labels, case.channels[0], case.geometry.spacing[::-1], len(schema.targets),
                                 len(schema.classes) + 1, request.context)
            _write_case(writer, case, labels, output_schema, main_dir, twin_dir)
            del case, checked, labels
            yield ProgressEvent("export", f"wrote case '{source.case_id}'", index + 1, total,
                                {"case": source.case_id})
        # The last steps in short ticks (a panel drives this generator from a timer): compression, json, moves.
        while any(not future.done() for future in writer._pending):
            yield ProgressEvent("export", "finishing: compressing the last files", total, total)
        writer.wait()
        _link_twin_images(main_dir, twin_dir)
        yield ProgressEvent("export", "finishing: writing dataset.json", total, total)
        for name in request.context.class_names():
            used_sources[name] = {f"generated ({request.context.method})"}
        case_ids = [s.case_id for s in sources]
        common = {"case_ids": case_ids, "negative_cases": negative, "absent_segments": absent,
                  "sources": {k: sorted(v) for k, v in used_sources.items()}, "source_colors": source_colors,
                  "source_terminology": source_terminology}
        _write_dataset_json(main_dir, request, output_schema, "backsplit", common,
                            twin_dir.name if twin_dir else None)
        if twin_dir:
            _write_dataset_json(twin_dir, request, output_schema.binary(), "binary", common, main_dir.name)
        from backsplit.datasets.versions import stamp_first_version  # dataset version 1 + case file hashes (dataset add)

        records: dict = {}   # the twin's images are hard links of the dataset's: hashed once
        for folder in [main_dir] + ([twin_dir] if twin_dir else []):
            yield ProgressEvent("export", f"finishing: recording the version of {folder.name}", total, total)
            records = stamp_first_version(folder, {k: v for k, v in records.items() if k.startswith("imagesTr/")})
        yield ProgressEvent("export", "finishing: moving the datasets into place", total, total)
        final_main = _move_into_place(main_dir, out_root, request.dataset_id, request.overwrite)
        final_twin = _move_into_place(twin_dir, out_root, request.binary_id, request.overwrite) if twin_dir else None
        result = ExportResult(final_main, final_twin, case_ids, negative, absent, time.time() - started)
        yield ProgressEvent("done", f"exported {total} case(s) to {final_main.name}", total, total,
                            {"result": result})
    except OSError as exc:
        raise_write_error(exc, out_root, failed=f"writing the dataset into '{out_root}' failed",
                          fix="free space or choose another output folder", unchanged="nothing was written")
    finally:
        writer.close()
        shutil.rmtree(staging, ignore_errors=True)


def export_dataset(sources: Sequence[CaseSource], request: ExportRequest,
                   progress: ProgressCallback = ignore_progress,
                   cancel: Callable[[], bool] = lambda: False) -> ExportResult:
    """Export every case and return where the datasets are. See ``iter_export``."""
    return run_to_result(iter_export(sources, request, cancel), progress)


def _image_to_write(channel: np.ndarray) -> np.ndarray:
    if channel.dtype == bool:
        return channel.astype(np.uint8)
    if channel.dtype == np.float64:
        return channel.astype(np.float32)
    if channel.dtype == np.int64 and channel.size and channel.min() >= np.iinfo(np.int32).min \
            and channel.max() <= np.iinfo(np.int32).max:
        return channel.astype(np.int32)
    return channel


def _write_case(writer: NiftiGzWriter, case, labels: np.ndarray, schema: LabelSchema, main_dir: Path,
                twin_dir: Optional[Path]) -> None:
    for index, channel in enumerate(case.channels):
        name = f"{case.case_id}_{index:04d}{FILE_ENDING}"
        writer.write(_image_to_write(channel), case.geometry, main_dir / "imagesTr" / name)
    writer.write(labels, case.geometry, main_dir / "labelsTr" / f"{case.case_id}{FILE_ENDING}")
    if twin_dir:
        writer.write(schema.fold_to_binary(labels) if schema.supports else labels, case.geometry,
                     twin_dir / "labelsTr" / f"{case.case_id}{FILE_ENDING}")


def _link_twin_images(main_dir: Path, twin_dir: Optional[Path]) -> None:
    """The twin's images are the same files: hard links where the file system allows, else copies."""
    if twin_dir:
        for image in sorted((main_dir / "imagesTr").iterdir()):
            _link_or_copy(image, twin_dir / "imagesTr" / image.name)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def dataset_json(request: ExportRequest, schema: LabelSchema, variant: str, common: dict,
                 twin: Optional[str]) -> dict:
    """The dataset.json content: nnU-Net's keys plus a ``backsplit`` section with class roles and sources."""
    roles = schema.to_json()
    for item in roles["targets"] + roles["supports"]:
        item["sources"] = common["sources"].get(item["name"], []) or item["sources"]
        if item["name"] in common.get("source_colors", {}):
            item["source_color"] = common["source_colors"][item["name"]]
        entry = class_terminology(item["name"], common.get("source_terminology", {}))
        if entry:  # what Slicer shows for the predicted segment (from the source segment, or a well-known name)
            item["terminology"] = entry
    return {
        "channel_names": {str(i): name for i, name in enumerate(request.channel_names)},
        "labels": schema.labels_json(),
        "numTraining": len(common["case_ids"]),
        "file_ending": FILE_ENDING,
        "overwrite_image_reader_writer": "SimpleITKIO",
        "name": request.dataset_name if variant == "backsplit" else f"{request.dataset_name}Binary",
        "description": ("BackSplit dataset: background split into support structures" if variant == "backsplit"
                        else "Binary baseline (support structures folded into background) of a BackSplit dataset"),
        "backsplit": {
            "format_version": FORMAT_VERSION,
            "variant": variant,
            "schema": roles,
            "twin": twin,
            "case_ids": common["case_ids"],
            "negative_cases": common["negative_cases"],
            "absent_segments": common["absent_segments"],
            "name_mapping": dict(request.name_mapping),
            "context": request.context.to_json(),
            "created_by": f"backsplit {__version__}",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    }


def _write_dataset_json(folder: Path, request: ExportRequest, schema: LabelSchema, variant: str, common: dict,
                        twin: Optional[str]) -> None:
    content = dataset_json(request, schema, variant, common, twin)
    (folder / "dataset.json").write_text(json.dumps(content, indent=2, ensure_ascii=False), encoding="utf-8")


def _move_into_place(folder: Path, out_root: Path, dataset_id: int, overwrite: bool) -> Path:
    target = out_root / folder.name
    old = existing_datasets(out_root, dataset_id)
    if old and not overwrite:  # appeared while we were writing
        raise OutputError(f"dataset id {dataset_id} appeared in '{out_root}' during the export ({old[0].name}); "
                          "nothing was overwritten, export again with another id")
    trash = None
    if old:
        trash = Path(tempfile.mkdtemp(prefix=".backsplit-replaced-", dir=out_root))
        for path in old:
            os.replace(path, trash / path.name)
    try:
        os.replace(folder, target)
    except OSError:
        if trash:  # put the old dataset back
            for path in trash.iterdir():
                os.replace(path, out_root / path.name)
        raise
    if trash:
        shutil.rmtree(trash, ignore_errors=True)
    return target


def read_dataset_json(dataset_dir: Path) -> dict:
    """Read and sanity-check an exported dataset's dataset.json (raises InputError with the file name)."""
    path = Path(dataset_dir) / "dataset.json"
    if not path.is_file():
        raise InputError("this folder is not an nnU-Net dataset (no dataset.json); choose the DatasetNNN_Name "
                         "folder written by BackSplit export", path=str(dataset_dir))
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"dataset.json cannot be parsed ({exc}); export the dataset again", path=str(path)) from None
    for key in ("channel_names", "labels", "numTraining", "file_ending"):
        if key not in content:
            raise InputError(f"dataset.json has no '{key}'; export the dataset again", path=str(path))
    return content


__all__ = ["ExportRequest", "ExportResult", "export_dataset", "iter_export", "dataset_json", "read_dataset_json",
           "dataset_folder_name", "BackSplitError"]
