"""A new user points ``backsplit evaluate`` at the folder of test images (``<case>.nii.gz`` CT next to
``<case>.seg.nrrd``): refused, instead of metrics of the CT's intensity values against the prediction."""

import numpy as np
import pytest
import SimpleITK as sitk

from backsplit.errors import InputError
from backsplit.evaluation.evaluate import evaluate_folders
from backsplit.labels.schema import LabelSchema


def _write(array, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))


def test_ct_image_as_reference_is_refused(tmp_path):
    labels = np.zeros((6, 8, 8), np.uint8)
    labels[2:4, 2:4, 2:4] = 1
    ct = np.full((6, 8, 8), -1000, np.int16)
    ct[2:4, 2:4, 2:4] = 1  # one voxel value equal to the lesion label: metrics would come out without complaint
    _write(labels, tmp_path / "pred" / "c1.nii.gz")
    _write(ct, tmp_path / "images" / "c1.nii.gz")
    schema = LabelSchema.create(["cyst"], ["kidney"])
    with pytest.raises(InputError, match="not a labelmap.*looks like an image"):
        evaluate_folders(tmp_path / "pred", tmp_path / "images", schema)


def test_labelmap_reference_is_evaluated(tmp_path):
    labels = np.zeros((6, 8, 8), np.uint8)
    labels[2:4, 2:4, 2:4] = 1
    _write(labels, tmp_path / "pred" / "c1.nii.gz")
    _write(labels.astype(np.float32), tmp_path / "refs" / "c1.nii.gz")  # float labelmaps (whole numbers) are fine
    rows = evaluate_folders(tmp_path / "pred", tmp_path / "refs", LabelSchema.create(["cyst"], ["kidney"]))
    assert rows[0].metrics["dice"] == pytest.approx(1.0)


def test_seg_nrrd_predictions_say_how_to_evaluate(tmp_path):
    (tmp_path / "pred").mkdir()
    (tmp_path / "pred" / "c1.seg.nrrd").write_bytes(b"NRRD0004\n")
    (tmp_path / "refs").mkdir()
    with pytest.raises(InputError, match="--format nii.gz"):
        evaluate_folders(tmp_path / "pred", tmp_path / "refs", LabelSchema.create(["cyst"]))
