"""``backsplit dataset add``: append cases to an exported BackSplit dataset and its binary twin as a new version.

Reuses export's pieces: the case checks, label merge and writing of ``casewriter.CaseWriter`` (shared with export),
the label schema stored in dataset.json, generated context classes and the dataset folder layout (``layout``).
Like export, the new version is built in a hidden folder next to the dataset (copies of the unchanged label files,
hard links to the unchanged image files, the new cases written) and moved into place at the end; the previous
version's folders are moved whole into ``backsplit_versions/<dataset>/v<N>/`` (see ``versions.py``). A bad case, a
cancel, a full disk or a Ctrl-C leaves both the dataset and its twin as they were.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional, Sequence

from backsplit.datasets import versions
from backsplit.datasets.casewriter import CaseWriter
from backsplit.datasets.folder import load_dataset_folder
from backsplit.datasets.layout import (
    CASE_FOLDERS,
    FILE_ENDING,
    deferred_interrupts,
    hash_file,
    link_or_copy,
    read_dataset_json,
    write_dataset_json,
)
from backsplit.datasets.policy import (
    ON_EXISTING_REFUSE,
    GeometryPolicy,
    assign_case_ids,
    header_geometry,
    sort_segments,
)
from backsplit.datasets.validation import (
    MISSING_ABSENT,
    MISSING_ERROR,
    check_case_ids,
    classes_absent_everywhere,
    known_segment_names,
)
from backsplit.errors import BackSplitError, CancelledError, InputError, OutputError
from backsplit.io.cases import CaseSource, check_unique_ids
from backsplit.io.niftiio import NiftiGzWriter
from backsplit.labels.context import ContextSpec
from backsplit.labels.schema import LabelSchema
from backsplit.runtime.progress import ProgressCallback, ProgressEvent, Stage, ignore_progress
from backsplit.runtime.steps import check_writable_folder, raise_write_error, run_to_result


@dataclass
class AddRequest:
    dataset_dir: Path                              # the BackSplit dataset (DatasetNNN_Name), newest version
    name_mapping: Mapping[str, str] = field(default_factory=dict)   # segment alias -> class, added to the stored map
    ignore_segments: Sequence[str] = ()            # segments to leave out on purpose
    on_existing_id: str = ON_EXISTING_REFUSE       # "refuse" or "rename" (-> <id>_<n>)
    allow_negative_cases: bool = False
    missing_segments: str = MISSING_ERROR          # "absent": a removed support segment is recorded as absent
    compression_level: int = 1


@dataclass
class AddResult:
    dataset_dir: Path
    binary_dataset_dir: Optional[Path]
    version: int
    parent_version: int
    case_ids: dict[str, str]                       # requested id -> id in the dataset
    previous_version_dir: Path                     # the nnU-Net raw root now holding the parent version
    negative_cases: list[str]
    absent_segments: dict[str, list[str]]
    unused_segments: dict[str, list[str]]          # case -> segments not used (generated classes, ignored)
    seconds: float

    def summary_lines(self) -> list[str]:
        lines = [f"{self.dataset_dir.name}: version {self.version} (parent {self.parent_version}), "
                 f"{len(self.case_ids)} case(s) added in {self.seconds:.1f} s"]
        for old, new in self.case_ids.items():
            lines.append(f"  added '{new}'" + (f" (the id '{old}' existed: new id given)" if old != new else ""))
        for case, classes in self.absent_segments.items():
            lines.append(f"  case '{case}': no segment for {', '.join(classes)} (recorded as absent)")
        for case, names in self.unused_segments.items():
            lines.append(f"  case '{case}': not used: {', '.join(names)} (generated classes are regenerated)")
        lines.append(f"Version {self.parent_version} is kept in {self.previous_version_dir}")
        return lines


@dataclass
class _Target:
    """What the new cases must fit, read from the dataset's newest version."""
    live: Path
    meta: dict
    twin: Optional[Path]
    twin_meta: Optional[dict]
    schema: LabelSchema                 # classes read from segments (generated context classes excluded)
    output_schema: LabelSchema          # every class written
    context: ContextSpec
    case_ids: list[str]
    policy: Optional[GeometryPolicy]


def _read_target(dataset_dir: Path) -> _Target:
    live = Path(dataset_dir).resolve()
    if versions.VERSIONS_FOLDER in live.parts:
        raise InputError("this is an earlier version kept for reference; add cases to the dataset's newest version "
                         "(the DatasetNNN_Name folder next to 'backsplit_versions')", path=str(live))
    loaded = load_dataset_folder(live)
    meta = loaded.meta
    section = meta.get("backsplit")
    if not section or not section.get("schema"):
        raise InputError("the dataset was not exported by BackSplit (dataset.json has no 'backsplit' section); "
                         "export it with BackSplit first", path=str(live))
    if section.get("variant") == "binary":
        raise InputError("this is the binary baseline dataset; add cases to the BackSplit dataset "
                         f"'{section.get('twin')}' (its binary baseline dataset follows)", path=str(live))
    twin, twin_meta = None, None
    if section.get("twin"):
        twin = live.parent / section["twin"]
        if not twin.is_dir():
            raise InputError(f"the binary baseline dataset '{section['twin']}' recorded in dataset.json is missing; "
                             "put it back next to the dataset (or export both again)", path=str(live))
        twin_meta = read_dataset_json(twin)
        if sorted(twin_meta.get("backsplit", {}).get("case_ids", [])) != sorted(section.get("case_ids", [])):
            raise InputError("the binary baseline dataset does not hold the same cases as the dataset; export both "
                             "again", path=str(twin))
    output_schema = LabelSchema.from_json(section["schema"])
    context_raw = section.get("context") or {"method": "none"}
    context = ContextSpec(context_raw.get("method", "none"), tuple(context_raw.get("ring_widths_mm", (5.0, 15.0))),
                          int(context_raw.get("clusters", 2)))
    generated = set(context.class_names())
    schema = LabelSchema(output_schema.targets, tuple(s for s in output_schema.supports if s.name not in generated))
    if section.get("geometry_policy"):
        raw = section["geometry_policy"]
        policy = GeometryPolicy(raw["orientation"], tuple(raw["median_spacing_mm"]), raw.get("spacing_factor", 3.0))
    else:
        policy = GeometryPolicy.from_geometries(header_geometry(live / "imagesTr" / f"{c}_0000{FILE_ENDING}")
                                                for c in loaded.case_ids)
    return _Target(live, meta, twin, twin_meta, schema, output_schema, context, loaded.case_ids, policy)


def _link_existing(source: Path, target: Path, subfolders: Sequence[str]) -> None:
    """Carry the unchanged case files into the new version: label files are copied (they are small, and they are
    the files people correct, often in place as SimpleITK's WriteImage to the same path does, which would change a
    hard-linked kept version too); image files are hard-linked (copied where links are impossible)."""
    for sub in subfolders:
        (target / sub).mkdir(parents=True, exist_ok=True)
        if (source / sub).is_dir():
            for item in sorted((source / sub).iterdir()):
                if item.is_file():
                    if sub == "labelsTr":
                        shutil.copy2(item, target / sub / item.name)
                    else:
                        link_or_copy(item, target / sub / item.name)


def iter_add(sources: Sequence[CaseSource], request: AddRequest,
             cancel: Callable[[], bool] = lambda: False) -> Iterator[ProgressEvent]:
    """Add cases step by step (one event per case; a GUI steps this from a timer). The final event carries the
    AddResult in ``event.data["result"]``. Raises InputError for a case that does not fit (nothing is written)."""
    from backsplit.training.lock import TrainingLock

    started = time.time()
    if not sources:
        raise InputError("no case to add; give at least one case")
    if request.missing_segments not in (MISSING_ERROR, MISSING_ABSENT):
        raise ValueError(f"missing_segments must be '{MISSING_ERROR}' or '{MISSING_ABSENT}'")
    check_unique_ids(sources)
    live = Path(request.dataset_dir).resolve()
    check_case_ids([s.case_id for s in sources], live.parent)
    if not live.is_dir():
        _read_target(live)                       # raises the clear error
    lock = TrainingLock(live.parent / f".backsplit-add-{live.name}.lock")   # one add per dataset at a time
    check_writable_folder(live.parent, writes=f"the new version of '{live.name}' and the lock file '{lock.path.name}'",
                          fix="make the folder writable (or copy the datasets to a writable folder) and add again; "
                              "the dataset is unchanged")
    try:
        lock.acquire()
    except BackSplitError:
        raise OutputError(f"another 'dataset add' is writing to '{live.name}'; wait for it to finish") from None
    except OSError as exc:
        raise OutputError(f"cannot write the lock file '{lock.path}' ({exc.strerror}); make the folder writable and "
                          "add again; the dataset is unchanged") from None
    try:
        target = _read_target(live)
        ids = assign_case_ids([s.case_id for s in sources], target.case_ids, request.on_existing_id)
        section = target.meta["backsplit"]
        mapping = {**section.get("name_mapping", {}), **dict(request.name_mapping)}
        absent_before = section.get("absent_segments", {})    # class counts of the dataset's own cases
        elsewhere = {c.name: sum(1 for case in target.case_ids if c.name not in absent_before.get(case, []))
                     for c in target.schema.classes}
        names = {s.case_id: known_segment_names(s) for s in sources}
        if all(n is not None for n in names.values()):      # from headers, before the first case is read
            classes_absent_everywhere(target.schema, names, mapping, elsewhere)
    except BaseException:
        lock.release()
        raise
    out_root = target.live.parent
    staging = Path(tempfile.mkdtemp(prefix=".backsplit-add-", dir=out_root))
    writer = NiftiGzWriter(level=request.compression_level)
    swap_state = {"half_done": False}   # True while a rename happened that was neither completed nor undone
    try:
        new_main = staging / target.live.name
        new_twin = staging / target.twin.name if target.twin else None
        _link_existing(target.live, new_main, ("imagesTr", "labelsTr"))
        if new_twin:
            _link_existing(target.twin, new_twin, ("labelsTr",))
            (new_twin / "imagesTr").mkdir()
        cases = CaseWriter(writer, target.schema, target.output_schema, target.context, mapping,
                           len(target.meta["channel_names"]), request.allow_negative_cases, request.missing_segments,
                           new_main, new_twin, present_elsewhere=elsewhere)
        unused: dict[str, list[str]] = {}
        total = len(sources)
        yield ProgressEvent("add", f"checking and writing {total} case(s)", 0, total)
        for index, source in enumerate(sources):
            if cancel():
                raise CancelledError("adding cases cancelled; the dataset is unchanged")
            requested = source.case_id
            loaded = source.load()   # a copy with the final id: an in-memory case of the caller stays as it was
            case = dataclasses.replace(loaded, case_id=ids[requested], segments=dict(loaded.segments))
            del loaded
            not_used = sort_segments(case.case_id, list(case.segments), target.schema, mapping,
                                     target.context.class_names(), request.ignore_segments)
            for name in not_used:
                case.segments.pop(name)
            if not_used:
                unused[case.case_id] = not_used
            if target.policy is not None:
                target.policy.check(case.geometry, case.case_id)
            cases.write(case)
            del case
            yield ProgressEvent("add", f"wrote case '{ids[requested]}'", index + 1, total, {"case": ids[requested]})
        cases.finish()
        negative, absent = cases.negative, cases.absent
        parent = versions.current_version(target.meta)
        update = _VersionUpdate(parent + 1, parent, list(ids.values()), negative, absent, mapping, cases.sources,
                                target.policy)
        _write_version_json(new_main, target.meta, update)
        if new_twin:
            _write_version_json(new_twin, target.twin_meta, update)
        snapshot = versions.snapshot_dir(target.live, target.meta, parent)
        with deferred_interrupts():
            _swap_in([(target.live, new_main)] + ([(target.twin, new_twin)] if new_twin else []), snapshot,
                     swap_state)
        result = AddResult(target.live, target.twin, parent + 1, parent, ids, snapshot, negative, absent, unused,
                           time.time() - started)
        yield ProgressEvent(Stage.DONE, f"{target.live.name}: version {parent + 1} with {total} new case(s)", total,
                            total, {"result": result})
    except OSError as exc:
        raise_write_error(exc, out_root, failed=f"adding cases to '{target.live}' failed",
                          fix="free space and add again", unchanged="the dataset is unchanged")
    finally:
        writer.close()
        if not swap_state["half_done"]:   # staging may hold the only copy of a version otherwise: never deleted then
            shutil.rmtree(staging, ignore_errors=True)
        lock.release()


def add_cases(sources: Sequence[CaseSource], request: AddRequest, progress: ProgressCallback = ignore_progress,
              cancel: Callable[[], bool] = lambda: False) -> AddResult:
    """Add every case as one new version and return where it is. See ``iter_add``."""
    return run_to_result(iter_add(sources, request, cancel), progress)


@dataclass
class _VersionUpdate:
    version: int
    parent: int
    added: list[str]
    negative: list[str]
    absent: dict[str, list[str]]
    mapping: dict[str, str]
    sources: dict[str, set[str]]
    policy: Optional[GeometryPolicy]


def _write_version_json(folder: Path, old_meta: dict, update: _VersionUpdate) -> None:
    """The new version's dataset.json: the old one with the new cases, version record and file hashes."""
    import json

    meta = json.loads(json.dumps(old_meta))
    section = meta["backsplit"]
    section["case_ids"] = list(section.get("case_ids", [])) + update.added
    meta["numTraining"] = len(section["case_ids"])
    section["negative_cases"] = list(section.get("negative_cases", [])) + update.negative
    section["absent_segments"] = {**section.get("absent_segments", {}), **update.absent}
    section["name_mapping"] = dict(update.mapping)
    for item in section.get("schema", {}).get("targets", []) + section.get("schema", {}).get("supports", []):
        if update.sources.get(item["name"]):
            item["sources"] = sorted(set(item.get("sources", [])) | update.sources[item["name"]])
    history = versions.version_history(old_meta)
    history.append({"version": update.version, "parent": update.parent, "created": versions.now(),
                    "how": "dataset add", "added_cases": update.added})
    section["versions"] = history
    section["version"] = update.version
    section["parent_version"] = update.parent
    if update.policy is not None:
        section["geometry_policy"] = update.policy.to_json()
    section["files"] = _carry_hashes(folder, old_meta.get("backsplit", {}).get("files") or {})
    write_dataset_json(folder, meta)


def _carry_hashes(folder: Path, recorded: dict) -> dict:
    """Hashes of every case file: recorded ones are kept when the size still matches (the files are hard links to
    the same bytes); new, resized or unrecorded files are hashed."""
    records = {}
    for sub in CASE_FOLDERS:
        for path in sorted((folder / sub).iterdir()):
            name = f"{sub}/{path.name}"
            old = recorded.get(name)
            if old and old.get("bytes") == path.stat().st_size:
                records[name] = dict(old)
            else:
                records[name] = {"sha256": hash_file(path), "bytes": path.stat().st_size}
    return records


def _swap_in(pairs: list[tuple[Path, Path]], snapshot: Path, state: dict) -> None:
    """Move each live folder into the snapshot root and its new version into place. Any failure or interruption
    (KeyboardInterrupt included) undoes the renames done so far, newest first; ``state["half_done"]`` stays True only
    when that undo failed too (the caller then keeps the staging folder, and the error says where everything is)."""
    if snapshot.exists():
        if snapshot.is_dir() and not any(snapshot.iterdir()):
            snapshot.rmdir()   # left empty by an add that was killed before its first rename
        else:
            raise OutputError(f"'{snapshot}' exists already (left by an interrupted add?); move it away and add "
                              "again")
    snapshot.mkdir(parents=True)
    done: list[tuple[Path, Path]] = []
    try:
        state["half_done"] = True
        for live, _ in pairs:
            os.replace(live, snapshot / live.name)
            done.append((snapshot / live.name, live))
        for live, new in pairs:
            os.replace(new, live)
            done.append((live, new))
        state["half_done"] = False
    except BaseException as exc:
        try:
            for moved_to, moved_from in reversed(done):
                os.replace(moved_to, moved_from)
            if not any(snapshot.iterdir()):
                snapshot.rmdir()
            state["half_done"] = False
        except BaseException as undo:
            where = ", ".join(f"'{a}' -> '{b}'" for a, b in done)
            raise OutputError(f"moving the new version into place failed ({exc!r}) and putting the folders back "
                              f"failed too ({undo!r}); nothing was deleted: moved so far {where}; move them back by "
                              "hand (the new version is in the staging folder next to the dataset)") from exc
        raise
