"""Readers of single scene nodes: a volume's geometry and voxels, a segmentation's segment names, colours,
terminology and one segment's mask on a volume's grid. Used by the one-shot case reader (``scene_cases``), the stepped
one (``case_read_steps``), the prediction and the support-structure panels.

Masks are produced by Slicer's own segmentation logic (``ExportSegmentsToLabelmapNode`` into the volume's geometry),
one segment at a time so overlapping segments keep all their voxels. Arrays are (k, j, i) as SimpleITK gives them;
geometry goes from Slicer's RAS to the engine's LPS (``Geometry.from_ijk_to_ras``). No Qt.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import slicer
import vtk

from backsplit.errors import InputError
from backsplit.io.geometry import Geometry
from backsplit.labels.terminology import specific_entry

from .scene_guard import temporary_nodes


def segmentations_logic():
    return slicer.modules.segmentations.logic()


def volume_geometry(volume_node) -> Geometry:
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    dims = volume_node.GetImageData().GetDimensions()
    return Geometry.from_ijk_to_ras(slicer.util.arrayFromVTKMatrix(matrix), dims[::-1])


def volume_array(volume_node, case_id: str, what: str, copy: bool = True) -> Optional[np.ndarray]:
    """The volume's voxels (k, j, i) as a new array, after checking it is a scalar volume not under a transform
    (``InputError`` naming the case otherwise); ``copy=False``: only the checks (returns None)."""
    if volume_node is None or volume_node.GetImageData() is None:
        raise InputError(f"the {what} volume has no image data; load or choose another volume", case=case_id)
    if volume_node.GetImageData().GetNumberOfScalarComponents() != 1:
        raise InputError(f"the {what} volume '{volume_node.GetName()}' has several components per voxel; BackSplit "
                         "needs scalar volumes (one volume per channel)", case=case_id)
    transform = volume_node.GetParentTransformNode()
    if transform is not None:
        raise InputError(f"the {what} volume '{volume_node.GetName()}' is under a transform; harden the transform "
                         "(Data module, right-click, Harden transform) before export", case=case_id)
    return np.array(slicer.util.arrayFromVolume(volume_node), copy=True) if copy else None


def segment_names(segmentation_node) -> list[str]:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]


def segment_mask(segmentation_node, segment_name: str, reference_volume, case_id: str) -> np.ndarray:
    """One segment as a boolean array (k, j, i) on the reference volume's grid (Slicer resamples when grids differ).

    Every node the export makes (labelmap, its display node, the colour table Slicer adds for it) is removed again;
    a failure raises ``InputError`` naming the case and the segment."""
    segmentation = segmentation_node.GetSegmentation()
    segment_id = segmentation.GetSegmentIdBySegmentName(segment_name)
    if not segment_id:
        raise InputError(f"the segmentation '{segmentation_node.GetName()}' has no such segment (it has: "
                         f"{', '.join(segment_names(segmentation_node)) or 'none'})", case=case_id,
                         segment=segment_name)
    if reference_volume is None or reference_volume.GetImageData() is None:
        raise InputError("the case's volume has no image data; load or choose another volume", case=case_id,
                         segment=segment_name)
    scene = segmentation_node.GetScene()
    with temporary_nodes(scene):
        labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__backsplit_export")
        return export_segment(segmentation_node, segment_id, labelmap, reference_volume, case_id, segment_name)


def export_segment(segmentation_node, segment_id: str, labelmap, reference_volume, case_id: str,
                   segment_name: str) -> np.ndarray:
    """``ExportSegmentsToLabelmapNode`` for one segment into ``labelmap``, checked by its return value and by the
    result's size and values (this call takes no message collection); returns the mask as a new boolean array."""
    ids = vtk.vtkStringArray()
    ids.InsertNextValue(segment_id)
    ok = segmentations_logic().ExportSegmentsToLabelmapNode(segmentation_node, ids, labelmap, reference_volume)
    if not ok or labelmap.GetImageData() is None:
        raise InputError("Slicer could not export the segment to the volume's geometry (see the application log "
                         "for Slicer's reason)", case=case_id, segment=segment_name)
    array = slicer.util.arrayFromVolume(labelmap)
    expected = tuple(reference_volume.GetImageData().GetDimensions()[::-1])
    if array.shape != expected:
        raise InputError(f"the exported segment has size {array.shape[::-1]} instead of the volume's "
                         f"{expected[::-1]}", case=case_id, segment=segment_name)
    mask = array > 0
    if array.dtype.kind not in "iub" or np.count_nonzero(array > 1):   # one segment exports as label 1
        raise InputError(f"the exported segment has label values other than 0 and 1 (up to {array.max()})",
                         case=case_id, segment=segment_name)
    return mask


def segment_terminology(segmentation_node) -> dict[str, str]:
    """Segment name -> the segment's Slicer terminology entry, for the segments that have a specific one."""
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
