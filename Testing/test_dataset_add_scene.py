"""The interactive loop in a real MRML scene (slicer-core): predict with a tiny model -> edit the segmentation node's
voxels -> add to the dataset -> version 2 holds the edited voxels, version 1 is unchanged."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from fixtures_data import make_case
from fixtures_nnunet import TINY_SHAPE, export_tiny
from fixtures_slicer import add_volume

from backsplit.datasets.policy import UnknownSegmentsError
from backsplit.datasets.versions import verify_files, version_folder
from backsplit.errors import InputError


def files_of(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_predict_edit_add_round_trip(slicer_scene, tiny_model_dir, tmp_path):
    from BackSplitSegmentLib.dataset_add import SceneAddOptions, add_scene_case, result_text
    from BackSplitSegmentLib.prediction_run import finish_prediction, start_prediction
    from BackSplitSegmentLib.scene_nodes import segment_mask

    slicer = slicer_scene.slicer
    raw = export_tiny(tmp_path / "raw")                       # version 1 of the tiny model's dataset
    v1 = files_of(raw.dataset_dir)
    scan = make_case("scan", shape=TINY_SHAPE, seed=11)       # spacing (1, 1.5, 2) mm, LPS axes like the dataset
    volume = add_volume(slicer, scan.channels[0], np.diag([-1.0, -1.5, 2.0, 1.0]), name="new scan")
    job = start_prediction(tiny_model_dir, volume, device="cpu")
    job.wait(300)
    node = finish_prediction(job, volume).segmentation_node

    segmentation = node.GetSegmentation()
    lesion_id = segmentation.GetSegmentIdBySegmentName("Lesion")
    edited = segment_mask(node, "Lesion", volume, "scan").astype(np.uint8)
    edited[:] = 0
    edited[5:9, 10:16, 9:15] = 1                              # the user's correction of the lesion
    slicer.util.updateSegmentBinaryLabelmapFromArray(edited, node, lesion_id, volume)

    result = add_scene_case(volume, node, SceneAddOptions(raw.dataset_dir, case_id="scan"))
    assert result.version == 2 and result.case_ids == {"scan": "scan"} and "version 2" in result_text(result)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(raw.dataset_dir / "labelsTr" / "scan.nii.gz")))
    assert np.array_equal(labels == 1, edited.astype(bool))                 # the edited voxels, exactly
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(raw.dataset_dir / "imagesTr" / "scan_0000.nii.gz")))
    assert np.array_equal(image, scan.channels[0])
    assert files_of(version_folder(raw.dataset_dir, 1)) == v1                # version 1 unchanged
    assert verify_files(raw.dataset_dir) == []

    # the user deletes an auxiliary segment and adds the same volume again: new id, the support recorded absent
    segmentation.RemoveSegment(segmentation.GetSegmentIdBySegmentName("Vessel"))
    again = add_scene_case(volume, node, SceneAddOptions(raw.dataset_dir, case_id="scan"))
    assert again.version == 3 and again.case_ids == {"scan": "scan_2"}
    assert again.absent_segments == {"scan_2": ["Vessel"]}
    meta = json.loads((raw.dataset_dir / "dataset.json").read_text(encoding="utf-8"))
    assert meta["backsplit"]["absent_segments"] == {"scan_2": ["Vessel"]} and meta["numTraining"] == 7

    # a segment the dataset does not know: refused with the rename offered; nothing written
    segmentation.AddEmptySegment("lesions", "lesions")
    with pytest.raises(UnknownSegmentsError) as info:
        add_scene_case(volume, node, SceneAddOptions(raw.dataset_dir, case_id="other"))
    assert info.value.suggestions == {"lesions": "Lesion"}
    with pytest.raises(InputError, match="already in the dataset"):
        add_scene_case(volume, node, SceneAddOptions(raw.dataset_dir, case_id="scan", new_id_if_taken=False,
                                                     ignore_segments=["lesions"]))
    assert json.loads((raw.dataset_dir / "dataset.json").read_text(encoding="utf-8"))["backsplit"]["version"] == 3


def exported_pair(cases, root):
    """A dataset of the scene cases (and its twin) exported into ``root``."""
    from backsplit.datasets.export import ExportRequest, export_dataset

    return export_dataset([c.source() for c in cases], ExportRequest(root, 530, "Loop", ["lesion"], ["organ"]))


def test_add_is_read_in_steps_and_written_by_a_child_as_add_scene_case_writes(slicer_scene, tmp_path, monkeypatch):
    """N2 (Loop *Add*): the case is read in one-slab steps and handed to a child process that runs ``iter_add``; the
    dataset and its twin are byte for byte those of ``add_scene_case`` (the one-shot path). Cancel mid-way leaves
    the dataset as it was and the hand-over folder removed; a missing node is refused before anything starts."""
    import os

    from fixtures_slicer import add_segmentation
    from test_export_steps import exported_bytes, scene_cases_for_export
    from test_scene_cases import masks_for

    import BackSplitSegmentLib.case_read_steps as read_steps
    from backsplit.io import handover
    from BackSplitSegmentLib.dataset_add import SceneAddOptions, add_result, add_scene_case, start_add_scene_case

    monkeypatch.setattr(read_steps, "SLAB_BYTES", 1)
    monkeypatch.setattr(handover, "SLAB_BYTES", 256)
    slicer, scene = slicer_scene.slicer, slicer_scene.scene
    cases = scene_cases_for_export(slicer, scene, count=2)
    stepped, one_shot = exported_pair(cases, tmp_path / "a"), exported_pair(cases, tmp_path / "b")
    shape = (9, 10, 12)
    volume = add_volume(slicer, np.arange(np.prod(shape), dtype=np.int16).reshape(shape), np.eye(4), "corrected")
    node = add_segmentation(slicer, scene, masks_for(shape), volume, "corrected segmentation")
    before = files_of(stepped.dataset_dir)
    job = start_add_scene_case(volume, node, SceneAddOptions(stepped.dataset_dir, case_id="new"), read_budget_s=0.0)
    for _ in range(4):
        job.step()
    job.cancel()
    assert job.run_to_end().state == "cancelled" and not job.handover.root.exists()
    assert files_of(stepped.dataset_dir) == before
    job = start_add_scene_case(volume, node, SceneAddOptions(stepped.dataset_dir, case_id="new"), read_budget_s=0.0)
    assert job.run_to_end().state == "finished", job.message
    assert job.handover.child.pid != os.getpid() and job.handover.pieces >= 2 * int(np.prod(shape)) // 256
    result = add_result(job)
    reference = add_scene_case(volume, node, SceneAddOptions(one_shot.dataset_dir, case_id="new"))
    assert (result.version, result.case_ids) == (reference.version, reference.case_ids) == (2, {"new": "new"})
    for mine, theirs in ((stepped.dataset_dir, one_shot.dataset_dir),
                         (stepped.binary_dataset_dir, one_shot.binary_dataset_dir)):
        a, b = exported_bytes(mine), exported_bytes(theirs)
        assert list(a) == list(b) and [n for n in b if a[n] != b[n]] == []
    with pytest.raises(InputError, match="choose the segmentation"):
        start_add_scene_case(volume, None, SceneAddOptions(stepped.dataset_dir))
