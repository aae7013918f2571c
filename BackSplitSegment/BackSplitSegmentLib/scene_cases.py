"""From the Slicer scene to the engine's cases: a volume (+ extra channel volumes) and a segmentation node.

Masks are produced by Slicer's own segmentation logic (``ExportSegmentsToLabelmapNode`` into the volume's geometry),
one segment at a time so overlapping segments keep all their voxels; a segmentation on another grid than the volume
is resampled by Slicer. Arrays are (k, j, i) as SimpleITK gives them; geometry goes from Slicer's RAS to the engine's
LPS. The node readers (``volume_array``, ``segment_mask``, ...) are in ``scene_nodes``. Nothing here starts a process
or touches Qt. The panel's export reads the same cases in short steps instead (``case_read_steps``, same masks and
errors; ``SceneCase.source()`` offers both).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import slicer
import vtk

from backsplit.errors import InputError
from backsplit.io.cases import Case
from backsplit.labels.schema import display_name, name_key

from .case_read_steps import SceneCaseSource
from .pairing import choose_volume, lies_on_grid, pairing_summary
from .scene_nodes import segment_colors, segment_mask, segment_names, segment_terminology, volume_array, volume_geometry


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
    seen: dict[str, str] = {}
    for case in cases:
        if case.segmentation is None:
            continue
        for name in segment_names(case.segmentation):
            seen.setdefault(name_key(name), display_name(name))
    return list(seen.values())
