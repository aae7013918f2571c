"""Predictions into the scene: a new segmentation node on the input volume's exact grid, built by Slicer's own
segmentation logic from a labelmap with an explicit colour table (so names, colours and label values are
deterministic), each segment tagged with its role; and the lesion probability as a coloured overlay volume."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import slicer
import vtk

from backsplit.errors import InputError
from backsplit.geometry import Geometry
from backsplit.schema import SUPPORT, ClassSpec

from .vtk_errors import vtk_errors_raise

ROLE_TAG = "BackSplit.Role"


def _set_ijk_to_ras(node, geometry: Geometry) -> None:
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(geometry.ijk_to_ras()))


def colour_table(classes: Sequence[ClassSpec], name: str):
    """A colour table whose entry v is class v (0 background): names and colours from the manifest."""
    table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLColorTableNode", name)
    table.SetTypeToUser()
    table.HideFromEditorsOn()
    table.SetNumberOfColors(len(classes) + 1)
    table.SetColor(0, "background", 0.0, 0.0, 0.0, 0.0)
    for value, spec in enumerate(classes, start=1):
        table.SetColor(value, spec.name, *spec.color, 1.0)
    return table


def import_labels(labels: np.ndarray, geometry: Geometry, classes: Sequence[ClassSpec], name: str,
                  reference_volume=None):
    """Create a segmentation node from a label array (values 1..n = ``classes``) on ``geometry``."""
    scene = slicer.mrmlScene
    if labels.shape != tuple(geometry.shape):
        raise InputError(f"the prediction has size {labels.shape[::-1]} but the volume has {geometry.shape[::-1]}")
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", f"{name} labels")
    table = colour_table(classes, f"{name} colours")
    try:
        slicer.util.updateVolumeFromArray(labelmap, np.ascontiguousarray(labels.astype(np.int16)))
        _set_ijk_to_ras(labelmap, geometry)
        labelmap.CreateDefaultDisplayNodes()
        labelmap.GetDisplayNode().SetAndObserveColorNodeID(table.GetID())
        segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
        segmentation.CreateDefaultDisplayNodes()
        if reference_volume is not None:
            segmentation.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
        with vtk_errors_raise("importing the prediction"):
            ok = slicer.modules.segmentations.logic().ImportLabelmapToSegmentationNode(labelmap, segmentation)
        if not ok:
            raise InputError("Slicer could not import the predicted labelmap")
        segments = segmentation.GetSegmentation()
        by_name = {segments.GetNthSegment(i).GetName(): segments.GetNthSegment(i)
                   for i in range(segments.GetNumberOfSegments())}
        for spec in classes:
            segment = by_name.get(spec.name)
            if segment is None:  # class absent from this prediction: keep an empty segment so the list is complete
                segment_id = segments.AddEmptySegment(spec.name, spec.name, list(spec.color))
                segment = segments.GetSegment(segment_id)
            segment.SetColor(*spec.color)
            segment.SetTag(ROLE_TAG, spec.role)
            if spec.terminology:  # standard meaning (e.g. SNOMED CT 'Kidney'), shown and kept by Slicer
                segment.SetTag(segment.GetTerminologyEntryTagName(), spec.terminology)
        return segmentation
    finally:
        scene.RemoveNode(labelmap)
        scene.RemoveNode(table)


def segment_roles(segmentation_node) -> dict[str, str]:
    segments = segmentation_node.GetSegmentation()
    roles = {}
    for i in range(segments.GetNumberOfSegments()):
        segment = segments.GetNthSegment(i)
        value = vtk.mutable("") if hasattr(vtk, "mutable") else None
        role = segment.GetTag(ROLE_TAG, value) if value is not None else False
        roles[segment.GetName()] = str(value) if role else ""
    return roles


def set_auxiliary_visible(segmentation_node, visible: bool) -> None:
    """Show or hide every support-structure segment at once (targets stay as they are)."""
    display = segmentation_node.GetDisplayNode()
    if display is None:
        return
    segments = segmentation_node.GetSegmentation()
    roles = segment_roles(segmentation_node)
    for i in range(segments.GetNumberOfSegments()):
        segment_id = segments.GetNthSegmentID(i)
        if roles.get(segments.GetNthSegment(i).GetName()) == SUPPORT:
            display.SetSegmentVisibility(segment_id, bool(visible))


def import_probability(probability: np.ndarray, geometry: Geometry, name: str, background_volume=None):
    """The lesion probability as a scalar volume with a warm colour map; shown over the background volume."""
    volume = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    slicer.util.updateVolumeFromArray(volume, np.ascontiguousarray(probability.astype(np.float32)))
    _set_ijk_to_ras(volume, geometry)
    volume.CreateDefaultDisplayNodes()
    display = volume.GetDisplayNode()
    color = slicer.mrmlScene.GetFirstNodeByName("Inferno") or slicer.mrmlScene.GetFirstNodeByName("Warm1")
    if color is not None:
        display.SetAndObserveColorNodeID(color.GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, 1.0)
    display.SetLowerThreshold(0.1)
    display.SetApplyThreshold(True)
    if background_volume is not None and hasattr(slicer, "util") and hasattr(slicer.util, "setSliceViewerLayers"):
        try:
            slicer.util.setSliceViewerLayers(background=background_volume, foreground=volume, foregroundOpacity=0.4)
        except Exception:  # no views without the application (tests)
            pass
    return volume
