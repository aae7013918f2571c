"""Read one case from the Slicer scene in short steps (GUI thread), to be assembled in a child process.

``read_case_steps(scene_case)`` is a generator: every ``next()`` does a bounded piece of the work that has to run on
the GUI thread (MRML and VTK objects are not thread-safe) and yields a status text; its return value (the
``StopIteration`` value) is a ``CaseParts`` (``backsplit.io.handover``), whose ``assemble()`` (numpy only, no VTK)
builds the engine's ``Case`` in the child process that receives it. The result is voxel for voxel the one of
``scene_cases.case_from_scene`` (tested in ``Testing/test_export_steps.py``), with the same checks and the same
errors, in the same order:

- volumes are copied in slabs of slices, about ``budget_s`` seconds of copying per step; the image data is looked
  up again at each step and its modification time compared, so a volume changed between two steps is read again
  (never a torn or freed array; no view is kept across steps);
- a segment whose own binary labelmap lies on the volume's grid as Slicer's ``DoGeometriesMatch`` decides it (every
  element of the image-to-world matrices within 1e-4; segmentation not under a transform; the segmentation already
  holding binary labelmaps) is copied the same way, cropped to the volume's extent, and compared with the
  segment's label value when assembled: exactly what ``ExportSegmentsToLabelmapNode`` does for such a segment
  (``vtkSegmentation::GenerateMergedLabelmap``: threshold at the label value, ``ModifyImage`` on the common
  extent; docs/SLICER_COMPATIBILITY.md);
- any other segment (another grid, a transform, only closed surfaces) is exported by Slicer's segmentation logic
  (``scene_nodes.segment_mask``) in one step: Slicer resamples it, which cannot be split.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import slicer
import vtk
from vtk.util.numpy_support import vtk_to_numpy

from backsplit.errors import InputError
from backsplit.io.cases import Case
from backsplit.io.handover import CaseParts, SegmentPiece

from .scene_nodes import segment_colors, segment_mask, segment_names, segment_terminology, volume_array, volume_geometry

MATRIX_TOLERANCE = 1e-4       # vtkOrientedImageDataResample::AreEqualWithTolerance (per matrix element)
SLAB_BYTES = 4 * 1024 * 1024  # copied between two looks at the clock
REREADS = 3                   # a volume or segment modified while it is copied is read again, at most this often


def matrices_match(a, b, tolerance: float = MATRIX_TOLERANCE) -> bool:
    """Slicer's ``vtkOrientedImageDataResample::IsEqual``: every element of two 4x4 matrices within ``tolerance``."""
    return bool(np.all(np.abs(np.asarray(a, float) - np.asarray(b, float)) < tolerance))


def overlap(extent: Sequence[int], volume_extent: Sequence[int]) -> Optional[tuple[tuple, tuple]]:
    """(slices into the labelmap's array, slices into the volume's array), both (k, j, i), of the common part of
    two VTK extents (i0, i1, j0, j1, k0, k1) in the same index space; None when they do not overlap (as
    ``MergeImageGeneric2`` computes its update extent)."""
    low = [max(extent[2 * a], volume_extent[2 * a]) for a in range(3)]
    high = [min(extent[2 * a + 1], volume_extent[2 * a + 1]) for a in range(3)]
    if any(lo > hi for lo, hi in zip(low, high)):
        return None
    own = tuple(slice(low[a] - extent[2 * a], high[a] - extent[2 * a] + 1) for a in (2, 1, 0))
    volume = tuple(slice(low[a] - volume_extent[2 * a], high[a] - volume_extent[2 * a] + 1) for a in (2, 1, 0))
    return own, volume


def copy_steps(read_view: Callable[[], np.ndarray], budget_s: float, message: str = "") -> Iterator[str]:
    """Copy the array ``read_view()`` returns, slab by slab along its first axis, yielding ``message`` after about
    ``budget_s`` seconds of copying (at least one slab); ``read_view`` is called again at every step (it checks that
    its source is unchanged and raises ``_Changed`` otherwise). Returns the copy."""
    view = read_view()
    out = np.empty(view.shape, view.dtype)
    per_slice = max(1, int(np.prod(view.shape[1:])) * view.dtype.itemsize)
    slab = max(1, SLAB_BYTES // per_slice)
    k = 0
    while True:
        started = time.perf_counter()
        while True:                                   # at least one slab per step
            out[k:k + slab] = view[k:k + slab]
            k += slab
            if k >= out.shape[0] or time.perf_counter() - started >= budget_s:
                break
        del view
        yield message                                 # the message names the work this step did
        if k >= out.shape[0]:
            return out
        view = read_view()


class _Changed(Exception):
    """The volume or segment changed between two steps of its copy."""


class _Watch:
    """The image data a copy reads, its scalars array and its modification time (``vtkDataSet::GetMTime`` includes
    its point data and their arrays: edits that call ``Modified()`` on the image or on the scalars both count),
    checked at every step."""

    def __init__(self, image):
        self.image = image
        self.scalars = image.GetPointData().GetScalars()
        self.mtime = image.GetMTime()

    def same(self, image) -> bool:
        scalars = image.GetPointData().GetScalars() if image is not None else None
        return image is self.image and scalars is self.scalars and image.GetMTime() == self.mtime


def image_array(image) -> np.ndarray:
    """A view (k, j, i) of a one-component vtkImageData's scalars (``vtk_to_numpy``, as slicer.util does)."""
    extent = image.GetExtent()
    dims = [extent[2 * a + 1] - extent[2 * a] + 1 for a in range(3)]
    return vtk_to_numpy(image.GetPointData().GetScalars()).reshape(dims[::-1])


def _read_steps(get_image: Callable[[], object], region: tuple, budget_s: float, what: str, case_id: str,
                segment: Optional[str] = None) -> Iterator[str]:
    """Copy ``region`` of the image ``get_image()`` returns, in steps; read again from the start when the image
    changed between two steps (at most ``REREADS`` times)."""
    for _ in range(REREADS):
        image = get_image()
        if image is None or image.GetPointData().GetScalars() is None:
            raise InputError(f"the {what} was removed or emptied during the export; export again", case=case_id,
                             segment=segment)
        watch = _Watch(image)

        def read_view(watch=watch):  # bound now: the view belongs to this pass of the loop
            image = get_image()
            if not watch.same(image):
                raise _Changed()
            return image_array(image)[region]

        try:
            return (yield from copy_steps(read_view, budget_s, f"reading case '{case_id}': {what}"))
        except _Changed:
            continue
    raise InputError(f"the {what} kept changing while it was exported; export again when it is not being edited",
                     case=case_id, segment=segment)


def labelmap_on_volume_grid(segmentation_node, segment, volume) -> Optional[tuple[object, tuple, tuple]]:
    """(the segment's binary labelmap, slices into it, slices into the volume) when ``ExportSegmentsToLabelmapNode``
    would copy its voxels by index (no resampling): see the module docstring. ``(image, None, None)`` when it lies
    on the grid but outside the volume; None when Slicer would resample or convert."""
    if segmentation_node.GetParentTransformNode() is not None or volume.GetParentTransformNode() is not None:
        return None
    name = slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
    if not segmentation_node.GetSegmentation().ContainsRepresentation(name):
        return None
    image = segment.GetRepresentation(name)
    if image is None or not image.IsA("vtkOrientedImageData") or image.GetNumberOfScalarComponents() != 1:
        return None
    if image.GetPointData().GetScalars() is None and not _empty(image.GetExtent()):
        return None
    own, ijk_to_ras = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(own)
    volume.GetIJKToRASMatrix(ijk_to_ras)
    if not matrices_match(slicer.util.arrayFromVTKMatrix(own), slicer.util.arrayFromVTKMatrix(ijk_to_ras)):
        return None
    if _empty(image.GetExtent()):
        return image, None, None
    common = overlap(image.GetExtent(), volume.GetImageData().GetExtent())
    return (image, None, None) if common is None else (image, common[0], common[1])


def _empty(extent) -> bool:
    return extent[0] > extent[1] or extent[2] > extent[3] or extent[4] > extent[5]


def read_case_steps(scene_case, budget_s: float = 0.04) -> Iterator[str]:
    """Read ``scene_case`` (a ``SceneCase``) in steps of about ``budget_s`` seconds on the GUI thread; yields what
    it is reading; returns ``CaseParts``. Raises ``InputError`` naming the case (and segment) as
    ``case_from_scene`` does."""
    case_id, volume, segmentation_node = scene_case.case_id, scene_case.volume, scene_case.segmentation
    if segmentation_node is None:
        raise InputError("no segmentation is chosen for the case; choose its segmentation node", case=case_id)
    channels = []
    geometry = None
    for index, node in enumerate([volume, *scene_case.extra_channels]):
        what = "main" if index == 0 else f"channel {index}"
        volume_array(node, case_id, what, copy=False)          # the checks of the one-shot path, no copy
        if index == 0:
            geometry = volume_geometry(volume)
        else:
            problems = geometry.differences(volume_geometry(node))
            if problems:
                raise InputError(f"channel {index} ('{node.GetName()}') is not on the grid of the main volume "
                                 f"('{volume.GetName()}'): {'; '.join(problems)}; resample it to the main volume "
                                 "(Resample Scalar/Vector/DWI Volume module)", case=case_id)
        yield f"reading case '{case_id}': checked volume '{node.GetName()}'"
        array = yield from _read_steps(node.GetImageData, (), budget_s, f"volume '{node.GetName()}'", case_id)
        channels.append(array)
    wanted = list(scene_case.segment_names) if scene_case.segment_names is not None \
        else segment_names(segmentation_node)
    segmentation = segmentation_node.GetSegmentation()
    pieces, layers, layer_index = [], [], {}
    for name in wanted:
        segment_id = segmentation.GetSegmentIdBySegmentName(name)
        segment = segmentation.GetSegment(segment_id) if segment_id else None
        placed = labelmap_on_volume_grid(segmentation_node, segment, volume) \
            if segment is not None and volume is not None and volume.GetImageData() is not None else None
        if placed is None:     # Slicer resamples (or the segment is missing: same errors as the one-shot path)
            pieces.append(SegmentPiece(name, mask=segment_mask(segmentation_node, name, volume, case_id),
                                       route="slicer export"))
            yield f"reading case '{case_id}': segment '{name}' (resampled by Slicer)"
            continue
        image, own, into = placed
        piece = SegmentPiece(name, label_value=int(segment.GetLabelValue()), slices=into or ())
        if own is not None:
            key = image.GetAddressAsString("vtkOrientedImageData")     # segments sharing a layer: copied once
            if key not in layer_index:
                def get_image(segment_id=segment_id):
                    found = segmentation.GetSegment(segment_id)
                    return found.GetRepresentation(_binary_name()) if found is not None else None

                layers.append((yield from _read_steps(get_image, own, budget_s, f"segment '{name}'", case_id,
                                                      name)))
                layer_index[key] = len(layers) - 1
            piece.layer = layer_index[key]
        pieces.append(piece)
    colors = segment_colors(segmentation_node)
    entries = segment_terminology(segmentation_node)
    return CaseParts(case_id, channels, geometry, pieces, layers, {n: colors[n] for n in wanted if n in colors},
                     {n: entries[n] for n in wanted if n in entries}, f"case '{case_id}' (volume '{volume.GetName()}')")


def _binary_name() -> str:
    return slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()


@dataclass
class SceneCaseSource:
    """A ``CaseSource`` for one ``SceneCase``: ``load()`` reads it at once (scripts, ``export_dataset``);
    ``read_steps()`` reads it in short steps for a panel (``export_run.ExportRun``)."""
    scene_case: object
    case_id: str
    description: str

    def load(self) -> Case:
        return self.scene_case.load()

    def read_steps(self, budget_s: float = 0.04) -> Iterator[str]:
        return read_case_steps(self.scene_case, budget_s)
