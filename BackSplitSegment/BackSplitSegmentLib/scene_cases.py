"""From the Slicer scene to the engine's cases: a volume (+ extra channel volumes) and a segmentation node.

Masks are produced by Slicer's own segmentation logic (``ExportSegmentsToLabelmapNode`` into the volume's geometry),
one segment at a time so overlapping segments keep all their voxels; a segmentation on another grid than the volume
is resampled by Slicer. Arrays are (k, j, i) as SimpleITK gives them; geometry goes from Slicer's RAS to the engine's
LPS. Nothing here starts a process or touches Qt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import slicer
import vtk

from backsplit.cases import Case, LazyCaseSource
from backsplit.errors import InputError
from backsplit.geometry import Geometry

from .vtk_errors import vtk_errors_raise


def segmentations_logic():
    return slicer.modules.segmentations.logic()


def volume_geometry(volume_node) -> Geometry:
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    dims = volume_node.GetImageData().GetDimensions()
    return Geometry.from_ijk_to_ras(slicer.util.arrayFromVTKMatrix(matrix), dims[::-1])


def volume_array(volume_node, case_id: str, what: str) -> np.ndarray:
    if volume_node is None or volume_node.GetImageData() is None:
        raise InputError(f"the {what} volume has no image data; load or choose another volume", case=case_id)
    if volume_node.GetImageData().GetNumberOfScalarComponents() != 1:
        raise InputError(f"the {what} volume '{volume_node.GetName()}' has several components per voxel; BackSplit "
                         "needs scalar volumes (one volume per channel)", case=case_id)
    transform = volume_node.GetParentTransformNode()
    if transform is not None:
        raise InputError(f"the {what} volume '{volume_node.GetName()}' is under a transform; harden the transform "
                         "(Data module, right-click, Harden transform) before export", case=case_id)
    return np.array(slicer.util.arrayFromVolume(volume_node), copy=True)


def segment_names(segmentation_node) -> list[str]:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]


def segment_mask(segmentation_node, segment_name: str, reference_volume, case_id: str) -> np.ndarray:
    """One segment as a boolean array on the reference volume's grid (Slicer resamples when grids differ)."""
    segmentation = segmentation_node.GetSegmentation()
    segment_id = segmentation.GetSegmentIdBySegmentName(segment_name)
    if not segment_id:
        raise InputError(f"the segmentation '{segmentation_node.GetName()}' has no such segment (it has: "
                         f"{', '.join(segment_names(segmentation_node)) or 'none'})", case=case_id,
                         segment=segment_name)
    scene = segmentation_node.GetScene()
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__backsplit_export")
    try:
        ids = vtk.vtkStringArray()
        ids.InsertNextValue(segment_id)
        with vtk_errors_raise("exporting the segment", case=case_id, segment=segment_name):
            ok = segmentations_logic().ExportSegmentsToLabelmapNode(segmentation_node, ids, labelmap,
                                                                    reference_volume)
        if not ok:
            raise InputError("Slicer could not export the segment to the volume's geometry", case=case_id,
                             segment=segment_name)
        array = slicer.util.arrayFromVolume(labelmap)
        expected = tuple(reference_volume.GetImageData().GetDimensions()[::-1])
        if array.shape != expected:
            raise InputError(f"the exported segment has size {array.shape[::-1]} instead of the volume's "
                             f"{expected[::-1]}", case=case_id, segment=segment_name)
        return array > 0
    finally:
        display = labelmap.GetDisplayNode()
        if display is not None:
            scene.RemoveNode(display)
        scene.RemoveNode(labelmap)


def segment_terminology(segmentation_node) -> dict[str, str]:
    """Segment name -> the segment's Slicer terminology entry, for the segments that have a specific one."""
    import vtk

    from backsplit.terminology import specific_entry

    segmentation = segmentation_node.GetSegmentation()
    entries = {}
    for i in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(i)
        value = vtk.mutable("")
        if segment.GetTag(segment.GetTerminologyEntryTagName(), value) and specific_entry(str(value)):
            entries[segment.GetName()] = str(value)
    return entries


def segment_colors(segmentation_node) -> dict[str, tuple[float, float, float]]:
    segmentation = segmentation_node.GetSegmentation()
    colors = {}
    for i in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(i)
        colors[segment.GetName()] = tuple(float(c) for c in segment.GetColor())
    return colors


@dataclass
class SceneCase:
    """One row of the panel's case list: node references, read only when the case is exported."""
    case_id: str
    volume: object                                  # vtkMRMLScalarVolumeNode (channel 0)
    segmentation: object                            # vtkMRMLSegmentationNode
    extra_channels: Sequence[object] = field(default_factory=list)
    segment_names: Optional[Sequence[str]] = None   # only these segments (default: all in the node)

    def load(self) -> Case:
        return case_from_scene(self.case_id, self.volume, self.segmentation, self.extra_channels, self.segment_names)

    def source(self) -> LazyCaseSource:
        name = self.volume.GetName() if self.volume is not None else "?"
        return LazyCaseSource(self.case_id, self.load, f"case '{self.case_id}' (volume '{name}')")


def case_from_scene(case_id: str, volume, segmentation_node, extra_channels: Sequence = (),
                    names: Optional[Sequence[str]] = None) -> Case:
    """Read one case from the scene into the engine's ``Case`` (channels must share the volume's geometry)."""
    if segmentation_node is None:
        raise InputError("no segmentation is chosen for the case; choose its segmentation node", case=case_id)
    channels = [volume_array(volume, case_id, "main")]
    geometry = volume_geometry(volume)
    for index, extra in enumerate(extra_channels, start=1):
        array = volume_array(extra, case_id, f"channel {index}")
        problems = geometry.differences(volume_geometry(extra))
        if problems:
            raise InputError(f"channel {index} ('{extra.GetName()}') is not on the grid of the main volume "
                             f"('{volume.GetName()}'): {'; '.join(problems)}; resample it to the main volume "
                             "(Resample Scalar/Vector/DWI Volume module)", case=case_id)
        channels.append(array)
    wanted = list(names) if names is not None else segment_names(segmentation_node)
    masks = {name: segment_mask(segmentation_node, name, volume, case_id) for name in wanted}
    colors = segment_colors(segmentation_node)
    entries = segment_terminology(segmentation_node)
    return Case(case_id, channels, geometry, masks, {n: colors[n] for n in wanted if n in colors},
                description=f"case '{case_id}' (volume '{volume.GetName()}')",
                terminology={n: entries[n] for n in wanted if n in entries})


def reference_volume_of(segmentation_node):
    """The volume a segmentation was drawn on (its reference geometry volume), if it is still in the scene."""
    node = segmentation_node.GetNodeReference(segmentation_node.GetReferenceImageGeometryReferenceRole()) \
        if hasattr(segmentation_node, "GetReferenceImageGeometryReferenceRole") else None
    if node is None:
        node = segmentation_node.GetNodeReference("referenceImageGeometryRef")
    return node


def cases_in_scene(scene) -> list[SceneCase]:
    """Every segmentation node paired with its reference volume: the 'add all loaded cases' button."""
    cases = []
    used: set[str] = set()
    for segmentation_node in slicer.util.getNodesByClass("vtkMRMLSegmentationNode", scene):
        volume = reference_volume_of(segmentation_node)
        if volume is None or not volume.IsA("vtkMRMLScalarVolumeNode") or volume.IsA("vtkMRMLLabelMapVolumeNode"):
            continue
        case_id = unique_case_id(volume.GetName(), used)
        used.add(case_id)
        cases.append(SceneCase(case_id, volume, segmentation_node))
    return cases


def unique_case_id(name: str, used: set[str]) -> str:
    base = "".join(ch if ch not in '/\\:*?"<>|' else "_" for ch in name).strip() or "case"
    candidate, n = base, 2
    while candidate in used:
        candidate, n = f"{base}_{n}", n + 1
    return candidate


def segment_names_in_cases(cases: Sequence[SceneCase]) -> list[str]:
    """Segment names found across the listed cases, first spelling kept, compared ignoring case."""
    seen: dict[str, str] = {}
    for case in cases:
        if case.segmentation is None:
            continue
        for name in segment_names(case.segmentation):
            seen.setdefault(name.strip().casefold(), name)
    return list(seen.values())
