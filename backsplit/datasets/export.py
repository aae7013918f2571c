"""Write a BackSplit nnU-Net v2 raw dataset and its binary twin.

Layout (both datasets side by side in ``out_root``, e.g. nnU-Net's ``nnUNet_raw``)::

    Dataset501_Kidney/        imagesTr/<case>_0000.nii.gz  labelsTr/<case>.nii.gz  dataset.json
    Dataset502_KidneyBinary/  same images (hard links where possible), labels with support classes -> 0

Both datasets are written into a hidden temporary folder inside ``out_root`` and moved into place only when every
case has been read, checked and written, so a failure (bad case, cancel, full disk) leaves nothing half-written and
never touches an existing dataset. An existing dataset id is replaced only with ``overwrite=True``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional, Sequence

from backsplit.datasets.casewriter import CaseWriter
from backsplit.datasets.layout import (
    dataset_folder_name,
    dataset_json,
    deferred_interrupts,
    existing_datasets,
    move_into_place,
    write_dataset_json,
)
from backsplit.datasets.validation import (
    MISSING_ABSENT,
    MISSING_ERROR,
    check_case_ids,
    classes_absent_everywhere,
    known_segment_names,
)
from backsplit.datasets.versions import stamp_first_version
from backsplit.errors import CancelledError, InputError, OutputError
from backsplit.io.cases import CaseSource, check_unique_ids
from backsplit.io.niftiio import NiftiGzWriter
from backsplit.labels.context import ContextSpec
from backsplit.labels.schema import LabelSchema
from backsplit.runtime.progress import ProgressCallback, ProgressEvent, Stage, ignore_progress
from backsplit.runtime.steps import raise_write_error, run_to_result


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
    require_every_class: bool = True            # refuse a target/support that no case has (off: derived study data)

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
        """The dataset's folder name, ``DatasetNNN_Name`` (InputError for an invalid id or name)."""
        return dataset_folder_name(self.dataset_id, self.dataset_name)

    @property
    def binary_id(self) -> int:
        """The twin's dataset id: ``binary_dataset_id``, else ``dataset_id + 1``."""
        return self.binary_dataset_id if self.binary_dataset_id is not None else self.dataset_id + 1

    @property
    def binary_folder_name(self) -> str:
        """The twin's folder name, ``DatasetNNN_<name>Binary`` (InputError for an invalid id or name)."""
        return dataset_folder_name(self.binary_id, f"{self.dataset_name}Binary")

    def check_names(self) -> None:
        """Raise InputError when the dataset's or the twin's id/name cannot be an nnU-Net dataset folder (the twin's
        is checked even with ``binary_twin`` off, as before), or when the twin would get the dataset's own id."""
        dataset_folder_name(self.dataset_id, self.dataset_name)
        dataset_folder_name(self.binary_id, f"{self.dataset_name}Binary")
        if self.binary_twin and self.binary_id == self.dataset_id:
            raise InputError("the binary baseline dataset needs its own dataset id; choose another binary dataset id")


@dataclass
class ExportResult:
    dataset_dir: Path
    binary_dataset_dir: Optional[Path]
    case_ids: list[str]
    negative_cases: list[str]
    absent_segments: dict[str, list[str]]       # case -> classes absent in it
    seconds: float

    def summary_lines(self) -> list[str]:
        """What the CLI prints after the export: folders, case counts, time (s), cases with absent segments."""
        lines = [f"BackSplit dataset: {self.dataset_dir}"]
        if self.binary_dataset_dir:
            lines.append(f"Binary baseline:   {self.binary_dataset_dir}")
        lines.append(f"Cases: {len(self.case_ids)} ({len(self.negative_cases)} negative) in {self.seconds:.1f} s")
        for case, classes in self.absent_segments.items():
            lines.append(f"  case '{case}': no segment for {', '.join(classes)} (treated as absent)")
        return lines


def check_output(request: ExportRequest) -> None:
    """Refuse up front what would fail late: existing ids, an unwritable folder, id clashes."""
    out_root = Path(request.out_root)
    ids = [request.dataset_id] + ([request.binary_id] if request.binary_twin else [])
    request.check_names()
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
    check_case_ids([s.case_id for s in sources], Path(request.out_root))
    if request.require_every_class:   # from headers, before the first case is read; finish() checks the cases read
        names = {s.case_id: known_segment_names(s) for s in sources}
        if all(n is not None for n in names.values()):
            classes_absent_everywhere(schema, names, request.name_mapping)
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
        cases = CaseWriter(writer, schema, output_schema, request.context, request.name_mapping,
                           len(request.channel_names), request.allow_negative_cases, request.missing_segments,
                           main_dir, twin_dir, check_absent=request.require_every_class)
        total = len(sources)
        yield ProgressEvent("export", f"checking and writing {total} case(s)", 0, total)
        for index, source in enumerate(sources):
            if cancel():
                raise CancelledError("export cancelled; nothing was written")
            case = source.load()
            if case.case_id != source.case_id:
                case.case_id = source.case_id
            cases.write(case)
            del case
            yield ProgressEvent("export", f"wrote case '{source.case_id}'", index + 1, total,
                                {"case": source.case_id})
        # The last steps in short ticks (a panel drives this generator from a timer): compression, json, moves.
        while cases.busy:
            yield ProgressEvent("export", "finishing: compressing the last files", total, total)
        cases.finish()
        yield ProgressEvent("export", "finishing: writing dataset.json", total, total)
        used_sources = dict(cases.sources)
        for name in request.context.class_names():
            used_sources[name] = {f"generated ({request.context.method})"}
        case_ids = [s.case_id for s in sources]
        common = {"case_ids": case_ids, "negative_cases": cases.negative, "absent_segments": cases.absent,
                  "sources": {k: sorted(v) for k, v in used_sources.items()}, "source_colors": cases.source_colors,
                  "source_terminology": cases.source_terminology}
        write_dataset_json(main_dir, dataset_json(request, output_schema, "backsplit", common,
                                                  twin_dir.name if twin_dir else None))
        if twin_dir:
            write_dataset_json(twin_dir, dataset_json(request, output_schema.binary(), "binary", common,
                                                      main_dir.name))
        records: dict = {}   # version 1 + case file hashes; the twin's images are hard links: hashed once
        for folder in [main_dir] + ([twin_dir] if twin_dir else []):
            yield ProgressEvent("export", f"finishing: recording the version of {folder.name}", total, total)
            records = stamp_first_version(folder, {k: v for k, v in records.items() if k.startswith("imagesTr/")})
        yield ProgressEvent("export", "finishing: moving the datasets into place", total, total)
        with deferred_interrupts():   # a Ctrl-C cannot leave the dataset in place without its twin
            final_main = move_into_place(main_dir, out_root, request.dataset_id, request.overwrite)
            final_twin = (move_into_place(twin_dir, out_root, request.binary_id, request.overwrite) if twin_dir
                          else None)
        result = ExportResult(final_main, final_twin, case_ids, cases.negative, cases.absent, time.time() - started)
        yield ProgressEvent(Stage.DONE, f"exported {total} case(s) to {final_main.name}", total, total,
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


__all__ = ["ExportRequest", "ExportResult", "export_dataset", "iter_export", "check_output"]
