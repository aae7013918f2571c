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
