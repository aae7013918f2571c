"""Segment terminology: well-known names, Slicer's entry format, and entries carried from the source segmentation
(.seg.nrrd file or MRML scene via slicer-core) through the export into the predicted segments."""

import json

import numpy as np
from fixtures_slicer import add_segmentation, add_volume

from backsplit.labels.schema import LabelSchema
from backsplit.labels.terminology import (
    class_terminology,
    is_terminology_entry,
    terminology_for_name,
    terminology_from_tags,
    type_meaning,
)

CUSTOM = ("Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^Anatomical Structure~"
          "SCT^10200004^Liver~^^~Anatomic codes - DICOM master list~^^~^^")


def test_well_known_names():
    assert type_meaning(terminology_for_name("Kidney")) == "Kidney"
    assert type_meaning(terminology_for_name("kidneys")) == "Kidney"
    assert type_meaning(terminology_for_name("Tumour")) == "Neoplasm"
    assert type_meaning(terminology_for_name("kidney_cyst")) is None          # not guessed
    assert type_meaning(terminology_for_name("Cyst")) == "Cyst"
    left = terminology_for_name("left kidney")
    assert left.split("~")[3] == "SCT^7771000^Left" and type_meaning(left) == "Kidney"
    assert terminology_for_name("kidney_right").split("~")[3] == "SCT^24028007^Right"
    assert terminology_for_name("Organ") is None and terminology_for_name("left") is None
    entry = terminology_for_name("liver")
    assert is_terminology_entry(entry) and entry.count("~") == 6
    assert entry.startswith("Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^")
    assert not is_terminology_entry("Liver") and not is_terminology_entry("a~b~c~d~e~f~g")


def test_source_entry_wins_and_tags_parse():
    assert class_terminology("Organ", {"Organ": CUSTOM}) == CUSTOM
    assert class_terminology("Organ", {}) is None
    assert class_terminology("Kidney", {"Kidney": "broken"}) == terminology_for_name("Kidney")
    assert terminology_from_tags(f"Segmentation.Status:inprogress|TerminologyEntry:{CUSTOM}|") == CUSTOM
    assert terminology_from_tags("|") is None and terminology_from_tags("") is None
    generic = ("Segmentation category and type - 3D Slicer General Anatomy list~SCT^85756007^Tissue~SCT^85756007^"
               "Tissue~^^~Anatomic codes - DICOM master list~^^~^^")   # Slicer's default for every new segment
    assert terminology_from_tags(f"TerminologyEntry:{generic}|") is None
    assert class_terminology("Kidney", {"Kidney": generic}) == terminology_for_name("Kidney")


def test_scene_terminology_flows_into_the_export_and_the_prediction(slicer_scene, tmp_path):
    import vtk

    from backsplit.datasets.export import ExportRequest, export_dataset
    from BackSplitSegmentLib.prediction_import import import_labels
    from BackSplitSegmentLib.scene_cases import SceneCase
    from BackSplitSegmentLib.scene_nodes import volume_geometry

    slicer, scene = slicer_scene.slicer, slicer_scene.scene
    shape = (6, 8, 9)
    volume = add_volume(slicer, np.random.default_rng(1).normal(0, 1, shape).astype(np.float32), np.eye(4))
    organ = np.zeros(shape, bool)
    organ[1:5, 2:7, 2:8] = True
    lesion = np.zeros(shape, bool)
    lesion[2:3, 3:5, 3:5] = True
    segmentation = add_segmentation(slicer, scene, {"Organ": organ, "Lesion": lesion}, volume)
    segments = segmentation.GetSegmentation()
    organ_segment = segments.GetSegment(segments.GetSegmentIdBySegmentName("Organ"))
    organ_segment.SetTag(organ_segment.GetTerminologyEntryTagName(), CUSTOM)   # the user picked 'Liver' in Slicer
    case = SceneCase("c1", volume, segmentation).load()
    assert case.terminology == {"Organ": CUSTOM}
    result = export_dataset([SceneCase("c1", volume, segmentation).source()],
                            ExportRequest(tmp_path, 7, "Terms", ["Lesion"], ["Organ"]))
    meta = json.loads((result.dataset_dir / "dataset.json").read_text(encoding="utf-8"))
    items = {i["name"]: i for i in meta["backsplit"]["schema"]["targets"] + meta["backsplit"]["schema"]["supports"]}
    assert items["Organ"]["terminology"] == CUSTOM                         # from the source segment
    assert items["Lesion"]["terminology"] == terminology_for_name("Lesion")  # a well-known name
    schema = LabelSchema.from_json(meta["backsplit"]["schema"])
    labels = np.zeros(shape, np.uint8)
    labels[organ] = 2
    labels[lesion] = 1
    node = import_labels(labels, volume_geometry(volume), schema.classes, "prediction", volume)
    out = node.GetSegmentation()
    tags = {}
    for i in range(out.GetNumberOfSegments()):
        segment = out.GetNthSegment(i)
        value = vtk.mutable("")
        segment.GetTag(segment.GetTerminologyEntryTagName(), value)
        tags[segment.GetName()] = str(value)
    assert tags == {"Lesion": terminology_for_name("Lesion"), "Organ": CUSTOM}
