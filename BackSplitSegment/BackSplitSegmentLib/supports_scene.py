"""Generated support structures into the scene: new segments in a case's segmentation node, on the volume's exact
grid, tagged as generated with the model; the user's segments are never changed (a generated class named like one
of them is suffixed, ' (generated)', or refused). The panel's *Undo last case* removes exactly the segments the
node's last generation added: each generation gets an id, stored on the node (attribute ``BackSplit.LastGeneration``)
and on each segment it added (tag ``BackSplit.GenerationId``); the user's segments, and their edits made after the
generation, are never touched. Nothing is kept in memory: the record lives and dies with the node (a scene close
removes it; a node that reuses an old node ID has no record). Slicer's scene undo (Edit > Undo) is not used: a stock
Slicer never turns the scene's undo flag on (no ``SetUndoFlag`` in v5.12.3 Base/Applications/Modules), and enabling
undo on the segmentation node alone would break its display and storage references (``vtkMRMLNode.h`` v5.12.3:447-455).

Two ways to run the organ model: the engine in a child process (``generation_run.start_generation``: an nnU-Net
model folder or the TotalSegmentator command, fed with the volumes in short timer steps; Cancel ends the process
tree), or the TotalSegmentator extension's own logic (``run_totalsegmentator_extension``), which BackSplit asks for
and never installs.
"""

from __future__ import annotations

import importlib.util
import uuid
from typing import Iterator, Optional, Sequence

import numpy as np
import slicer
import vtk
from vtk.util import numpy_support

from backsplit.errors import InputError
from backsplit.io.handover import crop_box
from backsplit.supports.generate import resolve_names
from backsplit.supports.runners import GENERATED_TAG, MODEL_TAG
from backsplit.supports.suggest import SuggestCase

from .scene_cases import SceneCase
from .scene_nodes import segment_names, volume_geometry

TOTALSEGMENTATOR_MISSING = (
    "The TotalSegmentator extension is not installed. Install it from the Extensions Manager (View > Extensions "
    "Manager, search 'TotalSegmentator'), restart Slicer, then open the TotalSegmentator module once and press Apply "
    "so that it sets up its Python package (it asks before installing). BackSplit never installs it for you.")
TOTALSEGMENTATOR_NOT_SET_UP = (
    "The TotalSegmentator extension is installed but its Python package is not set up yet: open the "
    "TotalSegmentator module and press Apply once (it asks before installing), then come back.")

LAST_GENERATION_ATTRIBUTE = "BackSplit.LastGeneration"
GENERATION_TAG = "BackSplit.GenerationId"


def segment_tag(segment, tag: str) -> str:
    """The segment's tag ``tag`` as text ("" when it has none)."""
    value = vtk.mutable("")
    return str(value) if segment.GetTag(tag, value) else ""


def undo_last_case(segmentation_node) -> bool:
    """Remove the segments the node's last generation added (those still carrying its id; the user's segments and
    their later edits stay as they are) and forget that generation. Returns False when the node has no generation
    to undo (none ran on it, it was undone already, or it is a new node that reuses an old node ID)."""
    generation = segmentation_node.GetAttribute(LAST_GENERATION_ATTRIBUTE) or ""
    if not generation:
        return False
    segmentation = segmentation_node.GetSegmentation()
    ids = [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())
           if segment_tag(segmentation.GetNthSegment(i), GENERATION_TAG) == generation]
    was_modifying = segmentation_node.StartModify()
    try:
        for segment_id in ids:
            segmentation.RemoveSegment(segment_id)
        segmentation_node.RemoveAttribute(LAST_GENERATION_ATTRIBUTE)
    finally:
        segmentation_node.EndModify(was_modifying)
    return bool(ids)


def add_generated_segments(segmentation_node, volume, masks: dict[str, np.ndarray], *, model: str,
                           colors: Optional[dict] = None, terminology: Optional[dict] = None,
                           on_conflict: str = "suffix") -> dict[str, str]:
    """Add masks (z, y, x on ``volume``'s grid) as new segments, all at once (scripts, the extension's path; the
    panel steps ``generated_class_steps``); returns model class -> segment name. One generation for *Undo last
    case* (``undo_last_case``). Raises InputError (nothing added) when a mask is not on the volume's grid or a
    name clashes with 'refuse'."""
    shape = tuple(volume_geometry(volume).shape)
    for cls, mask in masks.items():
        if tuple(mask.shape) != shape:
            raise InputError(f"the generated '{cls}' has size {mask.shape[::-1]} but the volume "
                             f"'{volume.GetName()}' has {shape[::-1]}")
    crops, entries = {}, []
    for cls, mask in masks.items():
        crops[cls] = crop_box(np.asarray(mask, bool))
        entries.append({"name": cls, "color": list((colors or {}).get(cls, (0.6, 0.6, 0.6))),
                        "terminology": (terminology or {}).get(cls, "")})
    steps = generated_class_steps(segmentation_node, volume, entries, lambda entry: crops[entry["name"]], model=model,
                                  on_conflict=on_conflict)
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def generated_class_steps(segmentation_node, volume, entries: Sequence[dict], load_crop, *, model: str,
                          on_conflict: str = "suffix", case: Optional[str] = None) -> Iterator[str]:
    """Add generated classes to ``segmentation_node`` one per ``next()`` (a bounded piece for a timer tick: no pass
    over the volume); returns (``StopIteration.value``) model class -> segment name.

    ``entries``: dicts with ``name``, ``color`` (RGB 0..1) and ``terminology``, in order; ``load_crop(entry)``:
    ``((k0, j0, i0), mask cropped to the class, bool or 0/1)`` on ``volume``'s grid, or None for an empty class.
    Where Slicer would not keep such a labelmap as it is (a parent transform on either node, or a segmentation
    whose source representation is not a binary labelmap), the class goes through
    ``slicer.util.updateSegmentBinaryLabelmapFromArray`` as before (one class per step still). Each segment is
    tagged with the generation (``GENERATION_TAG``), the node records it after the first one. Raises InputError
    naming ``case`` when a node left the scene (a scene close) between two steps, or for a refused name."""
    case = case or volume.GetName()
    names = resolve_names(segment_names(segmentation_node), [e["name"] for e in entries], on_conflict,
                          volume.GetName())
    generation = uuid.uuid4().hex
    segmentation = segmentation_node.GetSegmentation()
    for entry in entries:
        if volume.GetScene() is None or segmentation_node.GetScene() is None:
            raise InputError("the scene was closed before its generated segments could be added", case=case)
        cls, color = entry["name"], list(entry.get("color") or (0.6, 0.6, 0.6))
        crop = load_crop(entry)
        was_modifying = segmentation_node.StartModify()
        try:
            segment_id = _add_class(segmentation_node, volume, _free_id(segmentation, names[cls]), names[cls],
                                    color, crop)
            segment = segmentation.GetSegment(segment_id)
            segment.SetTag(GENERATED_TAG, "1")
            segment.SetTag(MODEL_TAG, model)
            segment.SetTag(GENERATION_TAG, generation)
            if entry.get("terminology"):
                segment.SetTag(segment.GetTerminologyEntryTagName(), entry["terminology"])
            # also after a failure part-way: Undo last case then removes what was added
            segmentation_node.SetAttribute(LAST_GENERATION_ATTRIBUTE, generation)
        finally:
            segmentation_node.EndModify(was_modifying)
        yield f"case '{case}': added '{names[cls]}'"
    return names


def _add_class(segmentation_node, volume, segment_id: str, name: str, color, crop) -> str:
    """One generated class as a new segment (see ``generated_class_steps``); returns its segment ID."""
    segmentation = segmentation_node.GetSegmentation()
    binary = slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
    direct = segmentation.GetSourceRepresentationName() == binary and \
        volume.GetParentTransformNode() is segmentation_node.GetParentTransformNode()
    if crop is None or not direct:
        segment_id = segmentation.AddEmptySegment(segment_id, name, color)
        if crop is not None:
            (k0, j0, i0), mask = crop
            full = np.zeros(tuple(volume_geometry(volume).shape), np.uint8)
            full[k0:k0 + mask.shape[0], j0:j0 + mask.shape[1], i0:i0 + mask.shape[2]] = mask
            slicer.util.updateSegmentBinaryLabelmapFromArray(full, segmentation_node, segment_id, volume)
        return segment_id
    (k0, j0, i0), mask = crop
    image = slicer.vtkOrientedImageData()
    image.SetExtent(i0, i0 + mask.shape[2] - 1, j0, j0 + mask.shape[1] - 1, k0, k0 + mask.shape[0] - 1)
    ijk_to_ras = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(ijk_to_ras)
    image.SetImageToWorldMatrix(ijk_to_ras)
    image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(
        np.ascontiguousarray(mask, np.uint8).reshape(-1), deep=True, array_type=vtk.VTK_UNSIGNED_CHAR))
    segment = slicer.vtkSegment()
    segment.SetName(name)
    segment.SetColor(*color[:3])
    segment.AddRepresentation(binary, image)
    if not segmentation.AddSegment(segment, segment_id):
        raise InputError("Slicer could not add the generated segment (see the application log for Slicer's reason)",
                         segment=name)
    return segment_id


def _free_id(segmentation, name: str) -> str:
    base = "".join(ch if ch.isalnum() else "_" for ch in name) or "segment"
    candidate, n = base, 2
    while segmentation.GetSegment(candidate) is not None:
        candidate, n = f"{base}_{n}", n + 1
    return candidate


def generated_segments(segmentation_node) -> list[str]:
    """Names of the node's segments tagged as generated."""
    segmentation = segmentation_node.GetSegmentation()
    names = []
    for i in range(segmentation.GetNumberOfSegments()):
        value = vtk.mutable("")
        if segmentation.GetNthSegment(i).GetTag(GENERATED_TAG, value) and str(value) == "1":
            names.append(segmentation.GetNthSegment(i).GetName())
    return names


# ---- the TotalSegmentator extension (asked for, never installed) ------------------------------------------------
def totalsegmentator_extension_logic():
    """The extension's logic, or InputError saying how to install it (through the Extensions Manager)."""
    if not hasattr(slicer.modules, "totalsegmentator"):
        raise InputError(TOTALSEGMENTATOR_MISSING)
    if importlib.util.find_spec("totalsegmentator") is None:
        raise InputError(TOTALSEGMENTATOR_NOT_SET_UP)
    from TotalSegmentator import TotalSegmentatorLogic

    return TotalSegmentatorLogic()


def run_totalsegmentator_extension(case: SceneCase, *, subset: Sequence[str] = (), fast: bool = False,
                                   cpu: bool = False, task: str = "total", on_conflict: str = "suffix",
                                   logic=None) -> dict[str, str]:
    """Run the extension's ``process(volume, segmentation, fast, cpu, task, subset)`` into a temporary node, then
    add its segments (TotalSegmentator's names and terminology kept) to the case's node as one undo step."""
    logic = logic or totalsegmentator_extension_logic()
    scene = slicer.mrmlScene
    temp = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "__backsplit_totalsegmentator")
    try:
        logic.process(case.volume, temp, fast, cpu, task, list(subset) or None)
        segmentation = temp.GetSegmentation()
        masks, colors, terms = {}, {}, {}
        for i in range(segmentation.GetNumberOfSegments()):
            segment, segment_id = segmentation.GetNthSegment(i), segmentation.GetNthSegmentID(i)
            name = segment.GetName()
            masks[name] = slicer.util.arrayFromSegmentBinaryLabelmap(temp, segment_id, case.volume) > 0
            colors[name] = tuple(segment.GetColor())
            value = vtk.mutable("")
            if segment.GetTag(segment.GetTerminologyEntryTagName(), value) and str(value):
                terms[name] = str(value)
        return add_generated_segments(case.segmentation, case.volume, masks,
                                      model=f"TotalSegmentator extension task {task}{' (fast)' if fast else ''}",
                                      colors=colors, terminology=terms, on_conflict=on_conflict)
    finally:
        display = temp.GetDisplayNode()
        if display is not None:
            scene.RemoveNode(display)
        scene.RemoveNode(temp)


# ---- suggestions from the scene -----------------------------------------------------------------------------------
def suggest_cases_from_scene(cases: Sequence[SceneCase]):
    """The cases for ``backsplit.supports.suggest``, one at a time, read at once (scripts; the panel uses
    ``start_suggest``)."""
    for case in cases:
        loaded = case.load()
        yield SuggestCase(case.case_id, tuple(loaded.geometry.spacing[::-1]), loaded.segments)


def start_suggest(cases: Sequence[SceneCase], options, python: Optional[str] = None, read_budget_s: float = 0.04):
    """The panel's *Suggest*: a ``HandoverJob`` (step it from a timer) that reads the cases from the scene in short
    steps and ranks them in a child process (``backsplit.supports.suggest_worker``); when finished,
    ``suggest_worker.report_from_json(job.data["report"])`` is the report. Raises InputError without cases."""
    from backsplit.supports.suggest_worker import SuggestProcess

    from .case_handover import HandoverJob

    if not cases:
        raise InputError("add cases first: there is nothing to rank")
    listed = [[c.case_id, f"case '{c.case_id}'"] for c in cases]
    return HandoverJob([c.source() for c in cases],
                       lambda root: SuggestProcess(options, listed, root, python).start(), read_budget_s)

