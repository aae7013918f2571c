"""A real MRML scene with Slicer's module logics, from the slicer-core package (no Qt, no application).

Binds ``slicer.mrmlScene`` and ``slicer.modules.<name>.logic()`` as the Slicer application would, so the modules'
scene adapters run unchanged. The module folders are put on sys.path as Slicer does for scripted modules, and the
repository root for the shared package ``BackSplitShared`` (as the modules' own dev-mode guard does in Slicer).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
for module_dir in ("BackSplitSegment", "BackSplitTrain"):
    if str(REPO / module_dir) not in sys.path:
        sys.path.insert(0, str(REPO / module_dir))
if str(REPO) not in sys.path:   # BackSplitShared/ (a package folder at the root, as installed next to the modules)
    sys.path.append(str(REPO))


class SlicerScene(types.SimpleNamespace):
    pass


def _remove_duplicate_converter_rules():
    """Each SetMRMLScene of the segmentations logic registers the converter rules again in one global factory."""
    import slicer

    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    rules = factory.GetConverterRules()
    seen, duplicates = set(), []
    for i in range(rules.size() if hasattr(rules, "size") else len(rules)):
        rule = rules[i]
        key = (rule.GetName(), rule.GetSourceRepresentationName(), rule.GetTargetRepresentationName())
        if key in seen:
            duplicates.append(rule)
        seen.add(key)
    for rule in duplicates:
        factory.UnregisterConverterRule(rule)


def make_scene():
    """A real MRML scene with the Volumes, Segmentations and SubjectHierarchy logics, bound to ``slicer.mrmlScene``
    and ``slicer.modules.<name>.logic()``; returns (SlicerScene, restore) where ``restore()`` undoes the binding.
    Also used by benchmarks (benchmarks/bench_ticks.py)."""
    import slicer
    import vtk

    scene = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    colors = app.GetColorLogic()
    colors.SetMRMLScene(scene)
    app.SetModuleLogic("Colors", colors)
    app.SetSliceLogics(vtk.vtkCollection())
    app.SetViewLogics(vtk.vtkCollection())
    logics = {}
    for name, cls in (("Volumes", slicer.vtkSlicerVolumesLogic),
                      ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic),
                      ("SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic)):
        logic = cls()
        logic.SetMRMLScene(scene)
        logic.SetMRMLApplicationLogic(app)
        app.SetModuleLogic(name, logic)
        logics[name.lower()] = logic
    try:
        _remove_duplicate_converter_rules()
    except Exception:  # older/newer API: duplicates are harmless, only slower
        pass
    previous = (getattr(slicer, "mrmlScene", None), getattr(slicer, "modules", None))
    slicer.mrmlScene = scene
    slicer.modules = types.SimpleNamespace(**{k: types.SimpleNamespace(logic=(lambda value=value: value))
                                              for k, value in logics.items()})

    def restore():
        slicer.mrmlScene, slicer.modules = previous
        scene.Clear(1)

    return SlicerScene(scene=scene, app=app, logics=logics, slicer=slicer), restore


@pytest.fixture
def slicer_scene():
    pytest.importorskip("slicer")
    made, restore = make_scene()
    yield made
    restore()


def add_volume(slicer, array, ijk_to_ras, name="CT"):
    import numpy as np

    return slicer.util.addVolumeFromArray(np.ascontiguousarray(array), np.asarray(ijk_to_ras, float), name=name)


def add_segmentation(slicer, scene, masks: dict, reference_volume, name="Segmentation"):
    """Segments drawn on ``reference_volume``'s grid (masks in (k, j, i))."""
    import numpy as np

    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume)
    for segment_name, mask in masks.items():
        segment_id = node.GetSegmentation().AddEmptySegment(segment_name, segment_name)
        slicer.util.updateSegmentBinaryLabelmapFromArray(np.asarray(mask, np.uint8), node, segment_id,
                                                         reference_volume)
    return node
