"""Cases handed from the Slicer process to a child process through files, so that no whole-volume work runs in
Slicer's process (its Python threads barely run while Slicer idles: PythonQt keeps the GIL; docs/ARCHITECTURE.md).

The parent (a panel's timer) reads a case from the scene in short steps into ``CaseParts`` (the volumes' voxels, each
segment as a full mask or as a labelmap layer to compare with its label value) and writes them with
``write_parts_steps``, slab by slab (each step about ``budget_s`` seconds), into ``<root>/case0003.partial/`` which is
renamed to ``<root>/case0003/`` when complete. The child's ``HandedCase.load()`` emits a ``handover`` event asking
for the case, waits for the folder, reads it back (``np.fromfile``: the same bytes), removes it, emits that it took
the case, and assembles the ``Case`` (``CaseParts.assemble``: numpy only). The parent reads ahead only as far as the
child has asked (``handover`` events), so at most a case or two lies on disk.

A file ``<root>/cancel``, a removed ``<root>`` or a parent that went away (``parent_alive``) ends the
wait with ``CancelledError``. The other way, a child's generated segments are written cropped per class
(``write_class_crops``) so that the panel adds one class per timer tick without a pass over the volume. The folder
formats (a JSON index + one ``.bin`` file per array, raw C-order bytes of the recorded dtype and shape) are private
to the two sides of one run, never kept.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

import numpy as np

from backsplit.errors import CancelledError
from backsplit.io.cases import Case
from backsplit.io.geometry import Geometry
from backsplit.runtime.progress import ProgressEvent, Stage

HANDOVER = "handover"               # the stage of the child's "asked for / took case N" events
CANCEL_FILE = "cancel"
SLAB_BYTES = 4 * 1024 * 1024        # written between two looks at the clock
CANCEL_TEXT = "cancelled; nothing was written"


@dataclass
class SegmentPiece:
    """One segment: a full mask (from Slicer's export) or a labelmap crop to compare with ``label_value`` and place
    at ``slices`` (k, j, i) of the volume's grid."""
    name: str
    mask: Optional[np.ndarray] = None
    layer: Optional[int] = None                  # index into CaseParts.layers
    label_value: int = 1
    slices: tuple = ()
    route: str = "labelmap"                      # labelmap | slicer export


@dataclass
class CaseParts:
    """What the GUI thread read for one case; ``assemble()`` makes the ``Case`` (any process, numpy only). Arrays
    are (z, y, x); ``channels`` keep the volume's dtype, masks are bool."""
    case_id: str
    channels: list[np.ndarray]
    geometry: Geometry
    pieces: list[SegmentPiece]
    layers: list[np.ndarray] = field(default_factory=list)
    colors: dict = field(default_factory=dict)
    terminology: dict = field(default_factory=dict)
    description: str = ""

    def assemble(self) -> Case:
        shape = tuple(self.geometry.shape)
        masks = {}
        for piece in self.pieces:
            if piece.mask is not None:
                masks[piece.name] = piece.mask
                continue
            mask = np.zeros(shape, bool)
            if piece.layer is not None:
                np.equal(self.layers[piece.layer], piece.label_value, out=mask[piece.slices])
            masks[piece.name] = mask
        self.layers = []
        return Case(self.case_id, self.channels, self.geometry, masks, self.colors, description=self.description,
                    terminology=self.terminology)


def case_folder(root: Path, index: int) -> Path:
    """Where case ``index`` (0-based) of a run lies once complete."""
    return Path(root) / f"case{index:04d}"


def request_cancel(root: Path) -> bool:
    """Ask the child to stop at its next look (``handover_cancelled``); nothing is waited for. False when the
    request could not be written into an existing folder (a full or read-only disk): the child would not see it."""
    try:
        (Path(root) / CANCEL_FILE).touch()
    except OSError:   # the folder is already gone: the child stops as well
        return not Path(root).is_dir()
    return True


def handover_cancelled(root: Path, parent_pid: Optional[int] = None) -> bool:
    """True once the parent asked to stop, removed the folder, or went away (a crashed Slicer)."""
    root = Path(root)
    if not root.is_dir() or (root / CANCEL_FILE).exists():
        return True
    return parent_pid is not None and not parent_alive(parent_pid)


def parent_alive(parent_pid: int) -> bool:
    """Whether the process ``parent_pid`` (Slicer, which started the run) still exists. Not "is it my parent":
    inside Slicer the child runs under ``PythonSlicer``, a CTKAppLauncher that starts the real Python as its own
    child (Slicer ``CMake/SlicerBlockInstallPython.cmake`` v5.10.0:135; AppLauncher ``ctkAppLauncher.cpp``:713), so
    the worker's parent is the launcher. POSIX: ``kill(pid, 0)`` (no signal is sent); Windows: psutil (a BackSplit
    runtime dependency: a portable process table); without psutil the parent is taken as alive (the cancel file
    and the folder still end the wait)."""
    if os.name != "nt":
        if os.getppid() == parent_pid:
            return True
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:      # exists, owned by someone else (a reused pid: taken as alive)
            return True
        return True
    try:
        import psutil
    except ImportError:
        return True
    return psutil.pid_exists(parent_pid)


def _slices_json(slices: tuple) -> list:
    return [[s.start, s.stop] for s in slices]


def write_parts_steps(parts: CaseParts, root: Path, index: int, budget_s: float = 0.04) -> Iterator[str]:
    """Write ``parts`` for the child, yielding a status text after about ``budget_s`` seconds of writing (at least
    one slab of ``SLAB_BYTES``); the case appears (atomic rename) only when complete. Raises OSError as the disk
    does (the caller names the folder)."""
    partial = Path(root) / f"case{index:04d}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()                 # not the root: a run that ended removed it, and it must not come back
    arrays = list(parts.channels) + list(parts.layers) + [p.mask for p in parts.pieces if p.mask is not None]
    records, mask_files, file_index = [], {}, len(parts.channels) + len(parts.layers)
    for piece in parts.pieces:
        if piece.mask is not None:
            mask_files[piece.name] = file_index
            file_index += 1
    message = f"handing case '{parts.case_id}' to the worker"
    started = time.perf_counter()
    for number, array in enumerate(arrays):
        array = np.ascontiguousarray(array)
        records.append({"dtype": array.dtype.str, "shape": list(array.shape)})
        flat = array.reshape(-1)
        step = max(1, SLAB_BYTES // max(1, array.dtype.itemsize))
        with open(partial / f"{number}.bin", "wb") as out:
            for start in range(0, flat.size, step):
                flat[start:start + step].tofile(out)
                if time.perf_counter() - started >= budget_s:
                    yield message
                    started = time.perf_counter()
    meta = {"case_id": parts.case_id, "description": parts.description, "colors": parts.colors,
            "terminology": parts.terminology, "arrays": records, "channels": len(parts.channels),
            "layers": len(parts.layers),
            "geometry": {"spacing": list(parts.geometry.spacing), "origin": list(parts.geometry.origin),
                         "direction": list(parts.geometry.direction), "shape": list(parts.geometry.shape)},
            "pieces": [{"name": p.name, "layer": p.layer, "label_value": p.label_value,
                        "slices": _slices_json(p.slices), "route": p.route, "mask": mask_files.get(p.name)}
                       for p in parts.pieces]}
    (partial / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    os.replace(partial, case_folder(root, index))
    yield message


def read_parts(folder: Path) -> CaseParts:
    """The ``CaseParts`` written by ``write_parts_steps`` into ``folder`` (the same arrays, byte for byte)."""
    folder = Path(folder)
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    arrays = [np.fromfile(folder / f"{n}.bin", dtype=np.dtype(r["dtype"])).reshape(r["shape"])
              for n, r in enumerate(meta["arrays"])]
    n_channels, n_layers = meta["channels"], meta["layers"]
    g = meta["geometry"]
    geometry = Geometry(tuple(g["spacing"]), tuple(g["origin"]), tuple(g["direction"]), tuple(g["shape"]))
    pieces = [SegmentPiece(p["name"], arrays[p["mask"]] if p["mask"] is not None else None, p["layer"],
                           p["label_value"], tuple(slice(a, b) for a, b in p["slices"]), p["route"])
              for p in meta["pieces"]]
    colors = {name: tuple(color) for name, color in meta["colors"].items()}
    return CaseParts(meta["case_id"], arrays[:n_channels], geometry, pieces, arrays[n_channels:n_channels + n_layers],
                     colors, meta["terminology"], meta["description"])


@dataclass
class HandedCase:
    """A ``CaseSource`` in the child: ``load()`` asks the parent for case ``index`` (a ``handover`` event), waits
    for its folder under ``root`` (polling every ``poll_s`` seconds; ``CancelledError`` when the run is cancelled,
    see ``handover_cancelled``), reads it, removes it and assembles the ``Case``."""
    case_id: str
    description: str
    index: int
    root: Path
    emit: Callable[[ProgressEvent], None]
    parent_pid: Optional[int] = None
    poll_s: float = 0.02

    def load(self) -> Case:
        self.emit(ProgressEvent(HANDOVER, f"waiting for case '{self.case_id}'", data={"want": self.index}))
        folder = case_folder(self.root, self.index)
        while not folder.is_dir():
            if handover_cancelled(self.root, self.parent_pid):
                raise CancelledError(CANCEL_TEXT)
            time.sleep(self.poll_s)
        parts = read_parts(folder)
        shutil.rmtree(folder, ignore_errors=True)
        self.emit(ProgressEvent(HANDOVER, f"took case '{self.case_id}'", data={"took": self.index}))
        return parts.assemble()


# ---- the other way: a child's segments, cropped per class, for a stepped import into the scene ------------------
CROPS_INDEX = "crops.json"


def crop_box(mask: np.ndarray) -> Optional[tuple[tuple[int, int, int], np.ndarray]]:
    """(first voxel (k, j, i), the mask cropped to its bounding box, C-contiguous) or None for an empty mask."""
    planes = np.flatnonzero(mask.any(axis=(1, 2)))
    if planes.size == 0:
        return None
    k0, k1 = int(planes[0]), int(planes[-1]) + 1
    slab = mask[k0:k1]
    rows, columns = np.flatnonzero(slab.any(axis=(0, 2))), np.flatnonzero(slab.any(axis=(0, 1)))
    j0, j1, i0, i1 = int(rows[0]), int(rows[-1]) + 1, int(columns[0]), int(columns[-1]) + 1
    return (k0, j0, i0), np.ascontiguousarray(slab[:, j0:j1, i0:i1], dtype=bool)


def write_class_crops(folder: Path, masks: dict, geometry: Geometry, colors: Optional[dict] = None,
                      terminology: Optional[dict] = None, model: str = "") -> Path:
    """Write each mask (z, y, x, bool, on ``geometry``) cropped to its bounding box, for ``read_class_crops``: one
    ``<n>.bin`` (uint8) per non-empty class and ``crops.json`` (names in order, start, shape, voxel count, colour,
    terminology, the model). Returns ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    classes = []
    for number, (name, mask) in enumerate(masks.items()):
        box = crop_box(np.asarray(mask, bool))
        entry = {"name": name, "color": list((colors or {}).get(name, (0.6, 0.6, 0.6))),
                 "terminology": (terminology or {}).get(name, ""), "start": None, "shape": None, "voxels": 0}
        if box is not None:
            start, crop = box
            crop.astype(np.uint8).tofile(folder / f"{number}.bin")
            entry.update(start=list(start), shape=list(crop.shape), voxels=int(np.count_nonzero(crop)),
                         file=f"{number}.bin")
        classes.append(entry)
    index = {"classes": classes, "model": model,
             "geometry": {"spacing": list(geometry.spacing), "origin": list(geometry.origin),
                          "direction": list(geometry.direction), "shape": list(geometry.shape)}}
    (folder / CROPS_INDEX).write_text(json.dumps(index), encoding="utf-8")
    return folder


def read_class_crops(folder: Path) -> tuple[list[dict], Geometry, str]:
    """The index written by ``write_class_crops``: (classes, geometry, model); each class a dict with ``name``,
    ``color``, ``terminology``, ``voxels`` and, when not empty, ``start`` (k, j, i) and ``shape``."""
    index = json.loads((Path(folder) / CROPS_INDEX).read_text(encoding="utf-8"))
    g = index["geometry"]
    geometry = Geometry(tuple(g["spacing"]), tuple(g["origin"]), tuple(g["direction"]), tuple(g["shape"]))
    return index["classes"], geometry, index.get("model", "")


def read_class_crop(folder: Path, entry: dict) -> Optional[np.ndarray]:
    """One class's crop (uint8 0/1, shape ``entry['shape']``), or None for an empty class."""
    if not entry.get("file"):
        return None
    return np.fromfile(Path(folder) / entry["file"], dtype=np.uint8).reshape(entry["shape"])


__all__ = ["CaseParts", "SegmentPiece", "HandedCase", "write_parts_steps", "read_parts", "case_folder",
           "request_cancel", "handover_cancelled", "HANDOVER", "crop_box", "write_class_crops", "read_class_crops",
           "read_class_crop"]


def handed_cases(cases: Iterable, root: Path, emit: Callable[[ProgressEvent], None],
                 parent_pid: Optional[int] = None) -> list[HandedCase]:
    """The child's ``HandedCase`` per ``[case_id, description]`` entry, in hand-over order (index = position)."""
    return [HandedCase(case_id, description, index, Path(root), emit, parent_pid)
            for index, (case_id, description) in enumerate(cases)]


def relay_until_done(events: Iterator[ProgressEvent], root: Path, parent_pid: Optional[int],
                     emit: Callable[[ProgressEvent], None], result_to_json: Callable, cancelled: str) -> ProgressEvent:
    """Run an engine generator fed with handed cases (export, dataset add) in a hand-over child: relay its events,
    look for a cancel between two of them, and return its ``done`` event with ``data["result"]`` as JSON
    (``result_to_json``). The generator is closed on every path (the engine removes its staging folder) and the
    hand-over folder ``root`` is removed. Raises ``CancelledError(cancelled)``, the engine's own errors, or
    RuntimeError when the generator ends without a ``done`` event."""
    try:
        try:
            for event in events:
                if event.stage == Stage.DONE:
                    data = dict(event.data, result=result_to_json(event.data["result"]))
                    return ProgressEvent(Stage.DONE, event.message, event.current, event.total, data)
                if handover_cancelled(root, parent_pid):
                    raise CancelledError(cancelled)
                emit(event)
        finally:
            events.close()
        raise RuntimeError("the work ended without its result")
    finally:
        shutil.rmtree(root, ignore_errors=True)
