"""Apply's fast preview (issue 20: one fold, no test-time mirroring, labelled as a preview in the scene) and the
prediction reader without threads (N1 of the 2026-12-06 review: the prediction child writes what the import needs,
``backsplit.inference.scenearrays``; the panel's steps each add one class or one slab of the probability map).
Real tiny nnU-Net model (CPU), real prediction child processes, real MRML (slicer-core)."""

import json
import threading
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from fixtures_slicer import add_volume

from backsplit.inference.scenearrays import read_scene_arrays, write_scene_arrays
from backsplit.labels.schema import LabelSchema

REPO = Path(__file__).resolve().parent.parent


def two_fold_copy(model: Path, target: Path) -> Path:
    """The tiny model (fold 'all') as a model with folds 0 and 1 (its checkpoint linked into both): a real model
    folder with two folds, without training twice."""
    import shutil

    shutil.copytree(model, target, ignore=shutil.ignore_patterns("fold_*"))
    for fold in ("0", "1"):
        (target / f"fold_{fold}").mkdir()
        for checkpoint in (model / "fold_all").glob("checkpoint_*.pth"):
            shutil.copy2(checkpoint, target / f"fold_{fold}" / checkpoint.name)
    manifest = json.loads((target / "backsplit_model.json").read_text(encoding="utf-8"))
    manifest["folds"] = ["0", "1"]
    (target / "backsplit_model.json").write_text(json.dumps(manifest), encoding="utf-8")
    return target


def test_fast_preview_predicts_one_fold_without_mirroring_and_says_so(slicer_scene, tiny_model_dir, tiny_dataset,
                                                                       tmp_path):
    from BackSplitSegmentLib.prediction_run import finish_prediction, start_prediction
    from BackSplitSegmentLib.scene_nodes import segment_mask

    slicer = slicer_scene.slicer
    model = two_fold_copy(tiny_model_dir, tmp_path / "two folds")
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(tiny_dataset.dataset_dir / "imagesTr" / "tiny1_0000.nii.gz")))
    volume = add_volume(slicer, image, np.diag([0.8, 0.8, 1.5, 1.0]), "CT 7")
    runs = {}
    for preview in (True, False):
        job = start_prediction(model, volume, device="cpu", preview=preview)
        sent = json.loads(Path(job.request_file).read_text(encoding="utf-8"))   # what the child reads
        assert (sent["folds"], sent["use_mirroring"], sent["scene_arrays"]) == \
            ((["0"], False, True) if preview else (None, True, True))
        assert job.wait(300) == 0, job.log_lines[-10:]
        runs[preview] = (job, finish_prediction(job, volume))
    (preview_job, preview), (full_job, full) = runs[True], runs[False]
    # The child predicted with one network and no mirrored passes (its up-front estimate says what it loaded).
    preview_plan, full_plan = preview_job.estimate["details"], full_job.estimate["details"]
    assert preview_plan["folds"] == 1 and preview_plan["tile_without_mirroring_s"] is None
    assert full_plan["folds"] == 2 and full_plan["tile_without_mirroring_s"] is not None
    # Nobody mistakes the preview for the full prediction: node names and the summary say it.
    assert preview.segmentation_node.GetName() == "CT 7 BackSplit (backsplit) [PREVIEW: fold 0, no mirroring]"
    assert preview.probability_node.GetName() == "CT 7 lesion probability [PREVIEW: fold 0, no mirroring]"
    assert preview.summary_text.startswith("PREVIEW: fold 0, no mirroring") and "Lesions:" in preview.summary_text
    assert full.segmentation_node.GetName() == "CT 7 BackSplit (backsplit)" and "PREVIEW" not in full.summary_text
    for outcome in (preview, full):
        lesion = segment_mask(outcome.segmentation_node, "Lesion", volume, "preview")
        assert lesion.shape == image.shape
        probability = slicer.util.arrayFromVolume(outcome.probability_node)
        assert probability.shape == image.shape and 0 <= probability.min() and probability.max() <= 1
    assert not preview_job.work_dir.exists() and not full_job.work_dir.exists()


def test_scene_arrays_hold_each_class_crop_and_the_stored_probability(tmp_path):
    shape = (7, 9, 11)
    labels = np.zeros(shape, np.uint8)
    labels[1:4, 2:6, 3:9] = 2
    labels[2, 3, 4:6] = 1
    probability = np.linspace(0, 1, labels.size, dtype=np.float32).reshape(shape)
    writer = sitk.GetImageFromArray(labels)
    sitk.WriteImage(writer, str(tmp_path / "case.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray(probability), str(tmp_path / "case_lesion_probability.nii.gz"))
    write_scene_arrays(tmp_path, "case", 3)
    arrays = read_scene_arrays(tmp_path, "case")
    assert arrays.shape == shape and sorted(arrays.classes) == [1, 2]          # class 3 absent: no entry
    for value in (1, 2):
        (k0, j0, i0), mask = arrays.class_mask(value)
        rebuilt = np.zeros(shape, bool)
        rebuilt[k0:k0 + mask.shape[0], j0:j0 + mask.shape[1], i0:i0 + mask.shape[2]] = mask.astype(bool)
        assert np.array_equal(rebuilt, labels == value)
    assert arrays.class_mask(3) is None
    stored = arrays.open_probability()
    assert stored.dtype == np.uint8 and np.abs(stored / 255.0 - probability).max() <= 0.5 / 255 + 1e-6


def test_prediction_reader_uses_no_thread_and_steps_the_probability_in_slabs(slicer_scene, tmp_path, monkeypatch):
    """N1: no thread is started while the result is imported; the probability map comes in slabs (here 2 slices
    per step), each step a bounded piece of work, and ends equal to the child's map."""
    import ast
    import types

    from BackSplitSegmentLib.prediction_run import PredictionFinish
    from BackSplitSegmentLib.scene_nodes import segment_mask, volume_geometry

    for name in ("prediction_run.py", "prediction_import.py", "apply_section.py"):   # no thread module imported
        tree = ast.parse((REPO / "BackSplitSegment" / "BackSplitSegmentLib" / name).read_text(encoding="utf-8"))
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names} | \
            {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {m for m in imported if m.split(".")[0] in ("threading", "concurrent", "_thread")}, name
    slicer = slicer_scene.slicer
    shape = (9, 8, 10)
    volume = add_volume(slicer, np.zeros(shape, np.int16), np.diag([0.7, 0.9, 2.0, 1.0]), "CT 9")
    geometry = volume_geometry(volume)
    labels = np.zeros(shape, np.uint8)
    labels[1:6, 2:5, 3:7] = 2
    labels[3, 3, 4] = 1
    probability = np.round(np.linspace(0, 1, labels.size).reshape(shape) * 255) / 255
    out = tmp_path / "out"
    out.mkdir()
    sitk.WriteImage(geometry.to_sitk(labels), str(out / "input.nii.gz"))
    sitk.WriteImage(geometry.to_sitk(probability.astype(np.float32)), str(out / "input_lesion_probability.nii.gz"))
    schema = LabelSchema.create(["Lesion"], ["Organ"])
    write_scene_arrays(out, "input", len(schema.classes))
    monkeypatch.setattr(PredictionFinish, "SLAB_VOXELS", 2 * shape[1] * shape[2])
    threads = set(threading.enumerate())
    job = types.SimpleNamespace(   # stands in for a finished PredictionProcess (the real child: the test above)
        cancelled=False, returncode=0, error=None, log_lines=[], summaries=[{"lesion_count": 1}],
        request=types.SimpleNamespace(out_dir=str(out)), lesion_only=False, work_dir=out,
        model_info=types.SimpleNamespace(schema=schema, variant="backsplit"), poll_events=lambda: [])
    finish = PredictionFinish(job, volume)
    phases = []
    while not finish.step():
        phases.append(finish.phase)
        assert set(threading.enumerate()) <= threads, "the import started a thread"
    slabs = [p for p in phases if p.startswith("probability slices")]
    assert slabs == ["probability slices 0-1", "probability slices 2-3", "probability slices 4-5",
                     "probability slices 6-7", "probability slices 8-8"]
    outcome = finish.outcome
    assert outcome.segmentation_node.GetName() == "CT 9 BackSplit (backsplit)"     # the full prediction's name
    assert np.allclose(slicer.util.arrayFromVolume(outcome.probability_node), probability, atol=1e-6)
    for value, spec in enumerate(schema.classes, start=1):
        assert np.array_equal(segment_mask(outcome.segmentation_node, spec.name, volume, "c"), labels == value)
    assert not out.exists()
