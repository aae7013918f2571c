"""Generated support structures into the scene: new segments in a case's segmentation node, on the volume's exact
grid, tagged as generated with the model; the user's segments are never changed (a generated class named like one
of them is suffixed, ' (generated)', or refused). The panel's *Undo last case* removes exactly the segments the
node's last generation added: each generation gets an id, stored on the node (attribute ``BackSplit.LastGeneration``)
and on each segment it added (tag ``BackSplit.GenerationId``); the user's segments, and their edits made after the
generation, are never touched. Nothing is kept in memory: the record lives and dies with the node (a scene close
removes it; a node that reuses an old node ID has no record). Slicer's scene undo (Edit > Undo) is not used: a stock
Slicer never turns the scene's undo flag on (no ``SetUndoFlag`` in v5.12.3 Base/Applications/Modules), and enabling
undo on the segmentation node alone would break its display and storage references (``vtkMRMLNode.h`` v5.12.3:447-455).

Two ways to run the organ model: the engine in a child process (``start_generation``: an nnU-Net model folder or the
TotalSegmentator command; Cancel ends the process tree), or the TotalSegmentator extension's own logic
(``run_totalsegmentator_extension``), which BackSplit asks for and never installs.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import slicer
import vtk

from backsplit.errors import InputError
from backsplit.io.readers import read_seg_nrrd
from backsplit.supports.generate import read_segment_tags, resolve_names
from backsplit.supports.runners import GENERATED_TAG, MODEL_TAG, NnUNetModelRunner
from backsplit.supports.suggest import SuggestCase
from backsplit.supports.worker import GenerationProcess, GenerationRequest

from .prediction_run import write_inputs
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


def _segment_tag(segment, tag: str) -> str:
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
           if _segment_tag(segmentation.GetNthSegment(i), GENERATION_TAG) == generation]
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
    """Add masks (z, y, x on ``volume``'s grid) as new segments; returns model class -> segment name. One undo
    step for *Undo last case* (``undo_last_case``). Raises InputError (nothing added) when a mask is not on the
    volume's grid or a name clashes with 'refuse'."""
    shape = tuple(volume_geometry(volume).shape)
    for cls, mask in masks.items():
        if tuple(mask.shape) != shape:
            raise InputError(f"the generated '{cls}' has size {mask.shape[::-1]} but the volume "
                             f"'{volume.GetName()}' has {shape[::-1]}")
    names = resolve_names(segment_names(segmentation_node), list(masks), on_conflict, volume.GetName())
    generation = uuid.uuid4().hex
    segmentation = segmentation_node.GetSegmentation()
    was_modifying = segmentation_node.StartModify()
    added = False
    try:
        for cls, mask in masks.items():
            color = (colors or {}).get(cls, (0.6, 0.6, 0.6))
            segment_id = segmentation.AddEmptySegment(_free_id(segmentation, names[cls]), names[cls], list(color))
            slicer.util.updateSegmentBinaryLabelmapFromArray(np.ascontiguousarray(mask, np.uint8), segmentation_node,
                                                             segment_id, volume)
            segment = segmentation.GetSegment(segment_id)
            segment.SetTag(GENERATED_TAG, "1")
            segment.SetTag(MODEL_TAG, model)
            segment.SetTag(GENERATION_TAG, generation)
            added = True
            if (terminology or {}).get(cls):
                segment.SetTag(segment.GetTerminologyEntryTagName(), terminology[cls])
    finally:
        if added:  # also after a failure part-way: Undo last case then removes what was added
            segmentation_node.SetAttribute(LAST_GENERATION_ATTRIBUTE, generation)
        segmentation_node.EndModify(was_modifying)
    return names


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


# ---- the engine in a child process ------------------------------------------------------------------------------
@dataclass
class GenerationJob:
    process: GenerationProcess
    cases: dict[str, SceneCase]
    work_dir: Path
    on_conflict: str = "suffix"
    imported: dict[str, dict[str, str]] = field(default_factory=dict)  # case -> class -> segment name
    failed: dict[str, str] = field(default_factory=dict)

    def close(self) -> None:
        """End the child without waiting (the GUI thread never joins it: audit F7) and remove the input folder."""
        if self.process.is_running():
            self.process.cancel(wait=False)
        shutil.rmtree(self.work_dir, ignore_errors=True)


def start_generation(cases: Sequence[SceneCase], *, model_dir: Optional[Path] = None, classes: Sequence[str] = (),
                     device: str = "auto", task: str = "total", fast: bool = False, executable: Optional[str] = None,
                     on_conflict: str = "suffix", python: Optional[str] = None) -> GenerationJob:
    """Write each case's channels to a temporary folder and start the generation child process."""
    if not cases:
        raise InputError("add cases first: there is nothing to run the organ model on")
    if model_dir is not None:  # clear errors (not a model, channel count) before anything starts
        runner = NnUNetModelRunner(Path(model_dir), classes=list(classes) or None)
        for case in cases:
            runner.check_channels(1 + len(case.extra_channels), case.case_id)
    work = Path(tempfile.mkdtemp(prefix="backsplit-supports-"))
    try:
        inputs = []
        for case in cases:
            folder = work / "inputs" / case.case_id
            folder.mkdir(parents=True)
            inputs.append([case.case_id, write_inputs(case.volume, case.extra_channels, folder)])
        request = GenerationRequest(inputs, str(work / "out"), str(model_dir) if model_dir else None, list(classes),
                                    device, task, fast, executable)
        process = GenerationProcess(request, python=python).start()
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return GenerationJob(process, {c.case_id: c for c in cases}, work, on_conflict)


def import_events(job: GenerationJob, events) -> list[str]:
    """Add the segments of every case the child finished (events from ``job.process.poll_events()``) to its
    segmentation node, one undo step per case; returns messages for the panel."""
    messages = []
    for event in events:
        if event.stage != "generate" or not event.data.get("case"):
            continue
        case_id, status = event.data["case"], event.data.get("status")
        if status == "failed":
            job.failed[case_id] = event.data.get("error", "")
            messages.append(f"case '{case_id}' failed: {job.failed[case_id]}")
            continue
        if status != "done" or case_id in job.imported:
            continue
        case = job.cases[case_id]
        if case.volume.GetScene() is None or case.segmentation.GetScene() is None:   # a scene close removed them
            job.failed[case_id] = "the scene was closed before its generated segments could be added"
            messages.append(f"case '{case_id}': {job.failed[case_id]}")
            continue
        try:   # per case: one unreadable file or grid mismatch must not drop the other cases of the batch (F3)
            content = read_seg_nrrd(Path(event.data["file"]), case_id)
            if content.geometry.differences(volume_geometry(case.volume)):
                raise InputError("the generated segments are not on the volume's grid", case=case_id)
            model = next((t.get(MODEL_TAG, "") for t in read_segment_tags(Path(event.data["file"])).values()), "")
            job.imported[case_id] = add_generated_segments(case.segmentation, case.volume, content.masks, model=model,
                                                           colors=content.colors, terminology=content.terminology,
                                                           on_conflict=job.on_conflict)
        except Exception as exc:  # noqa: BLE001 - recorded per case, shown in the panel's summary
            job.failed[case_id] = str(exc)
            messages.append(f"case '{case_id}': {exc}")
            continue
        messages.append(f"case '{case_id}': added {', '.join(job.imported[case_id].values())}")
    return messages


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
    """The panel's cases for ``backsplit.supports.suggest``, one at a time (masks read through Slicer's logic)."""
    for case in cases:
        loaded = case.load()
        yield SuggestCase(case.case_id, tuple(loaded.geometry.spacing[::-1]), loaded.segments)
