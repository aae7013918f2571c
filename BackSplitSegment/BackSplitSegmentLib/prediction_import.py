"""Predictions into the scene: a new segmentation node on the input volume's exact grid, one segment per class
(name, colour, role and terminology from the model's manifest) added from a binary labelmap cropped to the class
(cut by the prediction child process, ``backsplit.inference.scenearrays``, so adding it costs no pass over the
volume); and the lesion probability as a coloured overlay volume."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import slicer
import vtk

from backsplit.errors import InputError
from backsplit.inference.scenearrays import class_crops
from backsplit.io.geometry import Geometry
from backsplit.labels.schema import SUPPORT, ClassSpec

ROLE_TAG = "BackSplit.Role"


def _set_ijk_to_ras(node, geometry: Geometry) -> None:
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(geometry.ijk_to_ras()))


def import_labels(labels: np.ndarray, geometry: Geometry, classes: Sequence[ClassSpec], name: str,
                  reference_volume=None, case: Optional[str] = None):
    """Create a segmentation node from a label array (k, j, i; values 1..n = ``classes``) on ``geometry``.

    All at once (scripts, tests); the panel runs the same steps one class per timer tick (``PredictionFinish``),
    from crops the prediction child wrote. A failed import raises ``InputError`` naming ``case``
    (default: ``name``) and the segment, and leaves no half-made segmentation."""
    case = case or name
    if labels.shape != tuple(geometry.shape):
        raise InputError(f"the prediction has size {labels.shape[::-1]} but the volume has {geometry.shape[::-1]}",
                         case=case)
    segmentation = new_segmentation(name, reference_volume)
    try:
        images = class_images(class_crops(labels, len(classes)), geometry)
        for value in range(1, len(classes) + 1):
            add_class_segment(segmentation, images.get(value), classes, value, case)
        return segmentation
    except Exception:
        slicer.mrmlScene.RemoveNode(segmentation)
        raise


def new_segmentation(name: str, reference_volume=None):
    segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentation.CreateDefaultDisplayNodes()
    if reference_volume is not None:
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
    return segmentation


def class_images(crops: dict, geometry: Geometry) -> dict:
    """Each crop as Slicer's binary labelmap (``vtkOrientedImageData``, value 1, extent = the crop's voxels on the
    volume's grid, image-to-world = the volume's IJK-to-RAS). Built without the scene; one copy of each crop."""
    from vtk.util import numpy_support

    matrix = slicer.util.vtkMatrixFromArray(np.asarray(geometry.ijk_to_ras(), float))
    images = {}
    for value, ((k0, j0, i0), mask) in crops.items():
        image = slicer.vtkOrientedImageData()
        image.SetExtent(i0, i0 + mask.shape[2] - 1, j0, j0 + mask.shape[1] - 1, k0, k0 + mask.shape[0] - 1)
        image.SetImageToWorldMatrix(matrix)
        scalars = numpy_support.numpy_to_vtk(mask.astype(np.uint8, copy=False).reshape(-1), deep=True,
                                             array_type=vtk.VTK_UNSIGNED_CHAR)
        image.GetPointData().SetScalars(scalars)
        images[value] = (image, int(np.count_nonzero(mask)))
    return images


def add_class_segment(segmentation, prepared, classes: Sequence[ClassSpec], value: int,
                      case: Optional[str] = None) -> str:
    """Add class ``value`` (1-based index into ``classes``) as a segment: its prepared binary labelmap
    (``class_images``; added with ``vtkSegmentation::AddSegment``, no whole-volume pass on the GUI thread) or an
    empty segment when the class is absent (``prepared`` None); with colour, role and terminology. Checked by the
    return value, the segment's name, extent and voxel count; raises ``InputError`` naming case and segment."""
    spec = classes[value - 1]
    segments = segmentation.GetSegmentation()
    if prepared is None:
        segment_id = segments.AddEmptySegment(spec.name, spec.name, list(spec.color))
        segment = segments.GetSegment(segment_id)
    else:
        image, voxels = prepared
        segment = slicer.vtkSegment()
        segment.SetName(spec.name)
        segment.SetColor(*spec.color)
        representation = slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
        segment.AddRepresentation(representation, image)
        before = set(segment_ids(segmentation))
        if not segments.AddSegment(segment):
            raise InputError("Slicer could not add the predicted segment to the segmentation (see the application "
                             "log for Slicer's reason)", case=case, segment=spec.name)
        new = [i for i in segment_ids(segmentation) if i not in before]
        stored = segments.GetSegment(new[0]).GetRepresentation(representation) if len(new) == 1 else None
        if stored is None or segments.GetSegment(new[0]).GetName() != spec.name:
            raise InputError(f"Slicer added {len(new)} segment(s) instead of '{spec.name}'", case=case,
                             segment=spec.name)
        from vtk.util import numpy_support

        counted = int(np.count_nonzero(numpy_support.vtk_to_numpy(stored.GetPointData().GetScalars())))
        if tuple(stored.GetExtent()) != tuple(image.GetExtent()) or counted != voxels:
            raise InputError(f"the imported segment has {counted} voxels in extent {stored.GetExtent()} instead "
                             f"of {voxels} in {image.GetExtent()}", case=case, segment=spec.name)
        segment_id = new[0]
    segment.SetColor(*spec.color)
    segment.SetTag(ROLE_TAG, spec.role)
    if spec.terminology:  # standard meaning (e.g. SNOMED CT 'Kidney'), shown and kept by Slicer
        segment.SetTag(segment.GetTerminologyEntryTagName(), spec.terminology)
    return segment_id


def segment_ids(segmentation_node) -> list[str]:
    segments = segmentation_node.GetSegmentation()
    return [segments.GetNthSegmentID(i) for i in range(segments.GetNumberOfSegments())]


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


def probability_image(probability: np.ndarray):
    """A vtkImageData (float32) holding ``probability`` (k, j, i), made without the scene (scripts; the panel fills
    an ``empty_probability_image`` slab by slab instead); its geometry comes from the volume node."""
    from vtk.util import numpy_support

    array = np.ascontiguousarray(probability, dtype=np.float32)
    image = vtk.vtkImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    scalars = numpy_support.numpy_to_vtk(array.reshape(-1), deep=True, array_type=vtk.VTK_FLOAT)
    image.GetPointData().SetScalars(scalars)
    return image


def empty_probability_image(shape):
    """An uninitialised float32 vtkImageData of ``shape`` (k, j, i) and a numpy view of its voxels (k, j, i) to fill
    in slabs (``scenearrays.copy_probability_slab``): allocating does not touch the memory, so this is quick."""
    from vtk.util import numpy_support

    image = vtk.vtkImageData()
    image.SetDimensions(int(shape[2]), int(shape[1]), int(shape[0]))
    image.AllocateScalars(vtk.VTK_FLOAT, 1)
    view = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(tuple(int(n) for n in shape))
    return image, view


def import_probability(probability, geometry: Geometry, name: str, background_volume=None):
    """The lesion probability (array (k, j, i) or a ``probability_image``) as a scalar volume with a warm colour
    map, shown over the background volume. The display node is made with a fixed 0..1 window before the image is
    set, so Slicer computes no automatic window/level over the whole volume (seconds on 512x512x300)."""
    scene = slicer.mrmlScene
    image = probability if isinstance(probability, vtk.vtkImageData) else probability_image(probability)
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    display = scene.AddNewNodeByClass("vtkMRMLScalarVolumeDisplayNode")
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, 1.0)
    display.SetLowerThreshold(0.1)
    display.SetApplyThreshold(True)
    color = scene.GetFirstNodeByName("Inferno") or scene.GetFirstNodeByName("Warm1")
    display.SetAndObserveColorNodeID(color.GetID() if color is not None else "vtkMRMLColorTableNodeGrey")
    volume.SetAndObserveDisplayNodeID(display.GetID())
    _set_ijk_to_ras(volume, geometry)
    volume.SetAndObserveImageData(image)
    if background_volume is not None and hasattr(slicer, "util") and hasattr(slicer.util, "setSliceViewerLayers"):
        try:
            slicer.util.setSliceViewerLayers(background=background_volume, foreground=volume, foregroundOpacity=0.4)
        except Exception:  # no views without the application (tests)
            pass
    return volume
