"""Predictions into a real MRML scene (slicer-core): exact grid, manifest names/colours/roles, auxiliary toggle,
probability overlay; and demo cases loaded into the scene and exported through the scene adapter."""

import numpy as np
from fixtures_slicer import add_volume

from backsplit.inference.scenearrays import write_scene_arrays
from backsplit.labels.schema import LabelSchema


def test_prediction_becomes_segments_on_the_volume_grid(slicer_scene):
    from BackSplitSegmentLib.prediction_import import (
        import_labels,
        import_probability,
        segment_roles,
        set_auxiliary_visible,
    )
    from BackSplitSegmentLib.scene_nodes import segment_mask, volume_geometry

    slicer, scene = slicer_scene.slicer, slicer_scene.scene
    a = np.deg2rad(35)
    ijk_to_ras = np.array([[0.7 * np.cos(a), -1.1 * np.sin(a), 0, 5.0], [0.7 * np.sin(a), 1.1 * np.cos(a), 0, -7.0],
                           [0, 0, 2.5, 11.0], [0, 0, 0, 1]])
    shape = (9, 12, 15)
    volume = add_volume(slicer, np.zeros(shape, np.int16), ijk_to_ras)
    geometry = volume_geometry(volume)
    labels = np.zeros(shape, np.uint8)
    labels[2:5, 3:7, 4:9] = 3          # organ
    labels[3:4, 4:6, 5:7] = 1          # lesion inside
    labels[6:8, 1:3, 1:3] = 2          # vessel
    schema = LabelSchema.create(["Lesion"], ["Vessel", "Organ"])
    node = import_labels(labels, geometry, schema.classes, "prediction", volume)
    segments = node.GetSegmentation()
    assert [segments.GetNthSegment(i).GetName() for i in range(segments.GetNumberOfSegments())] == \
        ["Lesion", "Vessel", "Organ"]
    for value, spec in enumerate(schema.classes, start=1):
        mask = segment_mask(node, spec.name, volume, "prediction")
        assert np.array_equal(mask, labels == value), spec.name                    # exact voxels, oblique grid
        color = segments.GetSegment(segments.GetSegmentIdBySegmentName(spec.name)).GetColor()
        assert np.allclose(color, spec.color, atol=1e-3)
    assert segment_roles(node) == {"Lesion": "target", "Vessel": "support", "Organ": "support"}
    display = node.GetDisplayNode()
    set_auxiliary_visible(node, False)
    visible = {segments.GetNthSegment(i).GetName(): display.GetSegmentVisibility(segments.GetNthSegmentID(i))
               for i in range(3)}
    assert visible == {"Lesion": True, "Vessel": False, "Organ": False}
    set_auxiliary_visible(node, True)
    assert all(display.GetSegmentVisibility(segments.GetNthSegmentID(i)) for i in range(3))
    # No helper nodes are left behind (labelmap, colour table).
    assert scene.GetNodesByClass("vtkMRMLLabelMapVolumeNode").GetNumberOfItems() == 0
    probability = np.linspace(0, 1, labels.size, dtype=np.float32).reshape(shape)
    overlay = import_probability(probability, geometry, "lesion probability", volume)
    assert np.allclose(slicer.util.arrayFromVolume(overlay), probability)
    assert volume_geometry(overlay).differences(geometry) == []


def test_class_absent_from_prediction_still_gets_its_segment(slicer_scene):
    from BackSplitSegmentLib.prediction_import import import_labels
    from BackSplitSegmentLib.scene_nodes import volume_geometry

    slicer = slicer_scene.slicer
    volume = add_volume(slicer, np.zeros((4, 5, 6), np.int16), np.eye(4))
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[1, 1, 1] = 2
    node = import_labels(labels, volume_geometry(volume), LabelSchema.create(["Lesion"], ["Organ"]).classes, "p",
                         volume)
    segments = node.GetSegmentation()
    assert sorted(segments.GetNthSegment(i).GetName() for i in range(segments.GetNumberOfSegments())) == \
        ["Lesion", "Organ"]


def test_demo_cases_in_scene_export(slicer_scene, tmp_path):
    import json

    from backsplit.datasets.export import ExportRequest, export_dataset
    from BackSplitSegmentLib.demo_scene import load_demo_cases
    from BackSplitSegmentLib.scene_cases import cases_in_scene

    loaded = load_demo_cases(2)
    cases = cases_in_scene(slicer_scene.scene)
    assert [c.volume for c in cases] == [volume for volume, _ in loaded]
    result = export_dataset([c.source() for c in cases],
                            ExportRequest(tmp_path, 501, "Demo", ["cyst"], ["tumor", "kidney"]))
    meta = json.loads((result.dataset_dir / "dataset.json").read_text(encoding="utf-8"))
    assert meta["numTraining"] == 2 and meta["backsplit"]["schema"]["targets"][0]["source_color"]


def test_sample_data_files_load_in_slicer(slicer_scene, tmp_path, monkeypatch):
    """Sample data is written without slicerio (as inside Slicer) and read by Slicer's own segmentation reader."""
    import builtins

    from BackSplitSegmentLib.demo_scene import demo_sample_files

    real_import = builtins.__import__

    def no_slicerio(name, *args, **kwargs):
        if name == "slicerio":
            raise ImportError("not in Slicer")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_slicerio)   # Slicer does not bundle slicerio
    files = demo_sample_files(tmp_path, count=1)
    monkeypatch.undo()
    image, segmentation_file = files[0]
    scene = slicer_scene.scene
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(segmentation_file))
    assert storage.ReadData(node)
    segments = node.GetSegmentation()
    assert [segments.GetNthSegment(i).GetName() for i in range(segments.GetNumberOfSegments())] == \
        ["kidney", "tumor", "cyst"]
    volume = slicer_scene.logics["volumes"].AddArchetypeVolume(str(image), "ct", 0)
    from BackSplitSegmentLib.scene_cases import case_from_scene

    case = case_from_scene("demo", volume, node)
    assert case.segments["cyst"].any() and not (case.segments["cyst"] & case.segments["kidney"]).any()
    assert demo_sample_files(tmp_path, count=1) == files                   # written once


def test_apply_path_child_process_to_scene(slicer_scene, tiny_model_dir, tiny_dataset):
    """The panel's Apply path without Qt: scene volume -> files -> prediction child process -> segmentation and
    probability overlay on the volume's (oblique) grid, names/roles from the manifest, the case rule passed through."""
    import SimpleITK as sitk

    from BackSplitSegmentLib.prediction_import import segment_roles
    from BackSplitSegmentLib.prediction_run import finish_prediction, start_prediction
    from BackSplitSegmentLib.scene_nodes import segment_mask

    slicer = slicer_scene.slicer
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(tiny_dataset.dataset_dir / "imagesTr" / "tiny0_0000.nii.gz")))
    a = np.deg2rad(20)
    ijk_to_ras = np.array([[np.cos(a), -np.sin(a), 0, 3.0], [np.sin(a), np.cos(a), 0, -4.0], [0, 0, 1.0, 2.0],
                           [0, 0, 0, 1]])
    volume = add_volume(slicer, image, ijk_to_ras)
    outcomes = []
    for min_volume in (0.0, 1e6):                       # a huge minimum volume: the case is called 'absent'
        job = start_prediction(tiny_model_dir, volume, device="cpu", min_volume_ml=min_volume)
        job.wait(300)
        outcomes.append(finish_prediction(job, volume))
        assert not job.work_dir.exists()                # temporary files removed
    outcome = outcomes[0]
    assert segment_roles(outcome.segmentation_node) == {"Lesion": "target", "Vessel": "support", "Organ": "support"}
    lesion = segment_mask(outcome.segmentation_node, "Lesion", volume, "apply")
    assert lesion.shape == image.shape and lesion.any()
    probability = slicer.util.arrayFromVolume(outcome.probability_node)
    assert probability.shape == image.shape and 0 <= probability.min() and probability.max() <= 1
    assert probability[lesion].mean() > probability[~lesion].mean()
    assert "Lesions:" in outcome.summary_text
    assert "absent" in outcomes[1].summary_text


def test_sample_files_are_made_in_the_background_for_scripted_downloads(tmp_path):
    """At start-up a child process writes the sample files, so SampleDataLogic().downloadSample() (which only
    copies the source URIs and ignores the custom downloader) finds them without the GUI."""
    from BackSplitSegmentLib.demo_scene import prepare_sample_files, sample_data_sources

    sources = sample_data_sources(tmp_path, load=lambda source: None)
    job = prepare_sample_files(tmp_path, count=1)
    assert job is not None
    assert job.wait(120) == 0, job.log_lines[-5:]
    from pathlib import Path
    from urllib.parse import unquote, urlparse

    first = [Path(unquote(urlparse(uri).path)) for uri in sources[0]["uris"]]
    assert all(path.is_file() and path.stat().st_size > 0 for path in first)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".staging")]
    assert prepare_sample_files(tmp_path, count=1) is None                  # made once


def finished_job(out, schema, **overrides):
    """Stands in for a finished PredictionProcess (its child process is run for real in test_apply_path_...):
    the output files are written by the test, the scene arrays by the engine's ``write_scene_arrays`` as the child
    does."""
    import types

    values = dict(cancelled=False, returncode=0, error=None, log_lines=[], summaries=[{"lesion_count": 1}],
                  request=types.SimpleNamespace(out_dir=str(out)), lesion_only=False, work_dir=out,
                  model_info=types.SimpleNamespace(schema=schema, variant="backsplit"), poll_events=lambda: [])
    values.update(overrides)
    return types.SimpleNamespace(**values)


def test_prediction_is_imported_in_steps_with_the_auxiliary_choice_applied(slicer_scene, tmp_path):
    import SimpleITK as sitk

    from BackSplitSegmentLib.prediction_import import segment_roles
    from BackSplitSegmentLib.prediction_run import PredictionFinish
    from BackSplitSegmentLib.scene_nodes import segment_mask, volume_geometry

    slicer = slicer_scene.slicer
    shape = (6, 8, 10)
    volume = add_volume(slicer, np.zeros(shape, np.int16), np.diag([0.7, 0.9, 2.0, 1.0]), "CT 3")
    geometry = volume_geometry(volume)
    labels = np.zeros(shape, np.uint8)
    labels[1:3, 2:5, 3:7] = 3
    labels[2, 3, 4] = 1
    out = tmp_path / "out"
    out.mkdir()
    sitk.WriteImage(geometry.to_sitk(labels), str(out / "input.nii.gz"))
    sitk.WriteImage(geometry.to_sitk((labels == 1).astype(np.float32)), str(out / "input_lesion_probability.nii.gz"))
    schema = LabelSchema.create(["Lesion"], ["Vessel", "Organ"])
    write_scene_arrays(out, "input", len(schema.classes))        # what the prediction child writes for the import
    finish = PredictionFinish(finished_job(out, schema), volume, show_auxiliary=False)
    steps = 1
    while not finish.step():
        steps += 1
    assert steps >= len(schema.classes) + 2                      # files, one step per class, probability
    node = finish.outcome.segmentation_node
    assert segment_roles(node) == {"Lesion": "target", "Vessel": "support", "Organ": "support"}
    segments, display = node.GetSegmentation(), node.GetDisplayNode()
    visible = {segments.GetNthSegment(i).GetName(): display.GetSegmentVisibility(segments.GetNthSegmentID(i))
               for i in range(segments.GetNumberOfSegments())}
    assert visible == {"Lesion": True, "Vessel": False, "Organ": False}   # unchecked "Show auxiliary" applied
    for value, spec in enumerate(schema.classes, start=1):
        assert np.array_equal(segment_mask(node, spec.name, volume, "c"), labels == value), spec.name
    probability = slicer.util.arrayFromVolume(finish.outcome.probability_node)
    assert np.array_equal(probability, (labels == 1).astype(np.float32))
    assert not out.exists()                                      # temporary folder removed


def test_failed_or_cancelled_import_leaves_nothing_half_made(slicer_scene, tmp_path):
    import pytest
    import SimpleITK as sitk

    from backsplit.errors import InputError
    from BackSplitSegmentLib.prediction_run import PredictionFinish
    from BackSplitSegmentLib.scene_nodes import volume_geometry

    slicer, scene = slicer_scene.slicer, slicer_scene.scene
    volume = add_volume(slicer, np.zeros((4, 5, 6), np.int16), np.eye(4), "CT 4")
    schema = LabelSchema.create(["Lesion"], ["Organ"])
    out = tmp_path / "out"
    out.mkdir()
    other = volume_geometry(add_volume(slicer, np.zeros((4, 5, 7), np.int16), np.eye(4), "other"))
    sitk.WriteImage(other.to_sitk(np.ones((4, 5, 7), np.uint8)), str(out / "input.nii.gz"))
    write_scene_arrays(out, "input", len(schema.classes))
    before = scene.GetNumberOfNodes()
    finish = PredictionFinish(finished_job(out, schema), volume)
    with pytest.raises(InputError, match=r"case 'CT 4'.*size \(7, 5, 4\) but the volume has \(6, 5, 4\)"):
        while not finish.step():
            pass
    assert scene.GetNumberOfNodes() == before and not out.exists()
    cancelled = PredictionFinish(finished_job(tmp_path / "gone", schema, cancelled=True), volume)
    assert cancelled.step() and cancelled.outcome is None
