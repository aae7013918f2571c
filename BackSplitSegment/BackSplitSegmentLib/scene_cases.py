"""From the Slicer scene to the engine's cases: a volume (+ extra channel volumes) and a segmentation node.

Masks are produced by Slicer's own segmentation logic (``ExportSegmentsToLabelmapNode`` into the volume's geometry),
one segment at a time so overlapping segments keep all their voxels; a segmentation on another grid than the volume
is resampled by Slicer. Arrays are (k, j, i) as SimpleITK gives them; geometry goes from Slicer's RAS to the engine's
LPS. Nothing here starts a process or touches Qt. The panel's export reads the same cases in short steps instead
(``case_read_steps``, same masks and errors; ``SceneCase.source()`` offers both).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import slicer
import vtk

from backsplit.io.cases import Case
from backsplit.errors import InputError
from backsplit.io.geometry import Geometry

from .pairing import choose_volume, lies_on_grid
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
    import vtk

    from backsplit.labels.terminology import specific_entry

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
    pairing: str = "chosen"                         # how the volume was found: chosen | reference | geometry | name

    def load(self) -> Case:
        return case_from_scene(self.case_id, self.volume, self.segmentation, self.extra_channels, self.segment_names)

    def source(self):
        """A ``CaseSource`` (``case_read_steps.SceneCaseSource``): ``load()`` at once, or ``read_steps()`` in short
        steps for a panel's timer."""
        from .case_read_steps import SceneCaseSource

        name = self.volume.GetName() if self.volume is not None else "?"
        return SceneCaseSource(self, self.case_id, f"case '{self.case_id}' (volume '{name}')")


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


def labelmap_grid(segmentation_node):
    """(IJK-to-RAS 4x4, extent) of the segmentation's binary labelmap (its first segment's), or None when it has
    no binary labelmap (e.g. only closed surfaces)."""
    segmentation = segmentation_node.GetSegmentation()
    if segmentation.GetNumberOfSegments() == 0:
        return None
    name = slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
    image = segmentation.GetNthSegment(0).GetRepresentation(name)
    if image is None or not image.IsA("vtkOrientedImageData"):
        return None
    matrix = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix), image.GetExtent()


def _volume_on_grid(volume, grid) -> bool:
    if grid is None or volume.GetImageData() is None or volume.GetParentTransformNode() is not None:
        return False
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    return lies_on_grid(grid[0], grid[1], slicer.util.arrayFromVTKMatrix(matrix), volume.GetImageData().GetDimensions())


def scene_pairings(scene) -> tuple[list[SceneCase], list[str]]:
    """Every segmentation node paired with a volume (reference link, else the volume whose grid its labelmap lies
    on, else the volume of the same name; see ``pairing``), and the names of the segmentations left unpaired."""
    volumes = [v for v in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode", scene)
               if not v.IsA("vtkMRMLLabelMapVolumeNode")]
    cases, skipped = [], []
    used: set[str] = set()
    for segmentation_node in slicer.util.getNodesByClass("vtkMRMLSegmentationNode", scene):
        reference = reference_volume_of(segmentation_node)
        if reference is not None and (not reference.IsA("vtkMRMLScalarVolumeNode")
                                      or reference.IsA("vtkMRMLLabelMapVolumeNode")):
            reference = None
        on_grid = []
        if reference is None:
            grid = labelmap_grid(segmentation_node)
            on_grid = [v for v in volumes if _volume_on_grid(v, grid)]
        volume, pairing = choose_volume(segmentation_node.GetName(), reference, on_grid, volumes)
        if volume is None:
            skipped.append(segmentation_node.GetName())
            continue
        case_id = unique_case_id(volume.GetName(), used)
        used.add(case_id)
        cases.append(SceneCase(case_id, volume, segmentation_node, pairing=pairing))
    return cases, skipped


def cases_in_scene(scene) -> list[SceneCase]:
    """The cases of ``scene_pairings``: the 'Add all loaded' button."""
    return scene_pairings(scene)[0]


def add_loaded_cases(scene, cases: Sequence[SceneCase]) -> tuple[list[SceneCase], str]:
    """``cases`` plus every segmentation of ``scene`` paired with a volume (not listed yet), and the text saying how
    each was paired and which segmentations found no volume ("Add all loaded")."""
    from .pairing import pairing_summary

    found, skipped = scene_pairings(scene)
    cases, used = list(cases), {c.case_id for c in cases}
    listed = {(c.volume, c.segmentation) for c in cases}
    added = [case for case in found if (case.volume, case.segmentation) not in listed]
    for case in added:
        case.case_id = unique_case_id(case.case_id, used)
        used.add(case.case_id)
    return cases + added, pairing_summary([c.pairing for c in added], skipped)


def unique_case_id(name: str, used: set[str]) -> str:
    base = "".join(ch if ch not in '/\\:*?"<>|' else "_" for ch in name).strip() or "case"
    candidate, n = base, 2
    while candidate in used:
        candidate, n = f"{base}_{n}", n + 1
    return candidate


def segment_names_in_cases(cases: Sequence[SceneCase]) -> list[str]:
    """Segment names found across the listed cases, first spelling kept (invisible characters removed), compared as
    the export compares them (``backsplit.labels.schema.name_key``: Unicode-normalised, invisible characters ignored,
    whitespace folded, case ignored), so 'cyst' and 'cyst' + a zero-width space are one entry."""
    from backsplit.labels.schema import display_name, name_key

    seen: dict[str, str] = {}
    for case in cases:
        if case.segmentation is None:
            continue
        for name in segment_names(case.segmentation):
            seen.setdefault(name_key(name), display_name(name))
    return list(seen.values())
