"""Inputs that used to give silent wrong results or tracebacks (issue 21 items 2, 3, 10): NaN/inf hidden by ITK's
NIfTI reader, two files giving one case id, and `compare` on CSV files that hold no evaluation."""

import gzip
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from fixtures_data import make_case, write_case_files

from backsplit.cli import main
from backsplit.errors import InputError
from backsplit.io.imagefile import read_image
from backsplit.io.niftiraw import nonfinite_voxels


def nan_case_folder(folder, suffix):
    """One case whose float image holds one NaN, one +inf and one -inf, written as <id><suffix>."""
    case = make_case("c1")
    image = case.channels[0].astype(np.float32)
    image[1, 1, 1], image[2, 2, 2], image[3, 3, 3] = np.nan, np.inf, -np.inf
    case.channels = [image]
    images, _, _ = write_case_files(folder, case)
    if suffix != ".nii.gz":
        sitk.WriteImage(sitk.ReadImage(str(images[0])), str(folder / f"c1{suffix}"))
        images[0].unlink()
    return folder


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_export_refuses_nan_in_nifti(tmp_path, capsys, suffix):
    """ITK 5.4 reads NaN/inf in NIfTI as 0 (ITK#6683): the export used to write the case without a word."""
    folder = tmp_path / "in"
    make = nan_case_folder(folder, ".nii.gz")
    if suffix == ".nii":  # write the raw NaNs again uncompressed (ITK's own write of a read image would carry 0s)
        with gzip.open(make / "c1.nii.gz", "rb") as src, open(make / "c1.nii", "wb") as dst:
            shutil.copyfileobj(src, dst)
        (make / "c1.nii.gz").unlink()
    code = main(["export", "--folder", str(folder), "--targets", "lesion", "--supports", "organ",
                 "--out", str(tmp_path / "raw"), "--id", "9", "--name", "X", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "3 NaN or infinite voxel(s)" in err and "case 'c1'" in err, err
    assert "Traceback" not in err


def test_read_image_refuses_nan_nifti_as_nrrd_does(tmp_path):
    """The readers behind predict, supports and evaluate: the same NIfTI refused, the NRRD copy still refused."""
    folder = nan_case_folder(tmp_path, ".nii.gz")
    with pytest.raises(InputError, match="3 NaN or infinite"):
        read_image(folder / "c1.nii.gz", "c1")
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "c1.nii.gz")))
    assert np.isfinite(array).all()  # ITK#6683 still holds: when this fails, ITK keeps NaN and the check is a spare


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nifti_raw_check_counts_what_itk_zeroes(tmp_path, dtype):
    array = np.zeros((4, 5, 6), dtype)
    array[1, 2, 3], array[2, 2, 2], array[3, 1, 1] = np.nan, np.inf, -np.inf
    path = tmp_path / "nan.nii"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    assert np.isfinite(sitk.GetArrayFromImage(sitk.ReadImage(str(path)))).all()  # ITK#6683: fails once ITK fixes it
    assert nonfinite_voxels(path) == 3


def test_nifti_raw_check_integer_clean_nifti2_big_endian(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((3, 4, 5), np.int16)), str(tmp_path / "int.nii"))
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((3, 4, 5), np.float32)), str(tmp_path / "f.nii"))
    assert nonfinite_voxels(tmp_path / "int.nii") == 0
    assert nonfinite_voxels(tmp_path / "f.nii") == 0
    nib = pytest.importorskip("nibabel")
    data = np.zeros((5, 4, 3), np.float32)
    data[0, 0, 0] = np.nan
    nib.save(nib.Nifti2Image(data, np.eye(4)), str(tmp_path / "n2.nii"))
    big = np.zeros((5, 4, 3), ">f4")
    big[1, 1, 1] = np.inf
    nib.save(nib.Nifti1Image(big, np.eye(4)), str(tmp_path / "be.nii"))
    assert nonfinite_voxels(tmp_path / "n2.nii") == 1
    assert nonfinite_voxels(tmp_path / "be.nii") == 1


def test_nifti_raw_check_on_decompressed_copy_and_gz(tmp_path):
    """What read_sitk sees: the temporary .nii that verified_readable decompressed the .nii.gz into."""
    array = np.zeros((8, 8, 8), np.float32)
    array[0, 0, :3] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / "a.nii.gz"))
    with gzip.open(tmp_path / "a.nii.gz", "rb") as src, open(tmp_path / "image.nii", "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert nonfinite_voxels(tmp_path / "image.nii") == 3
    assert nonfinite_voxels(tmp_path / "a.nii.gz") == 3  # streamed (the no-room fallback)


def test_nifti_raw_check_leaves_truncated_file_to_the_reader(tmp_path):
    sitk.WriteImage(sitk.GetImageFromArray(np.full((4, 4, 4), np.nan, np.float32)), str(tmp_path / "t.nii"))
    data = (tmp_path / "t.nii").read_bytes()
    (tmp_path / "t.nii").write_bytes(data[:-10])
    assert nonfinite_voxels(tmp_path / "t.nii") == 0


def write_image(path, shape=(4, 5, 6)):
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros(shape, np.int16)), str(path))
    return path


@pytest.mark.parametrize("names", [("a.nii.gz", "a.nrrd"), ("a.nii.gz", "a_0000.nii.gz"),
                                   ("a_0000.nii.gz", "a_0000.nrrd")])
def test_predict_refuses_two_files_for_one_case(tmp_path, names):
    """Two inputs with one case id used to give one labelmap and two summary rows 'a'."""
    from backsplit.inference.files import discover_inputs

    for name in names + ("b.nii.gz",):
        write_image(tmp_path / name)
    with pytest.raises(InputError, match=f"two files give the case id 'a(_0000)?'.*'{names[0]}' and '{names[1]}'"):
        discover_inputs(tmp_path, 1)


def test_predict_two_channel_folder_ignores_plain_file(tmp_path):
    """For a two-channel model a plain 'a.nii.gz' is not an input: no clash with 'a_0000', 'a_0001'."""
    from backsplit.inference.files import discover_inputs

    for name in ("a.nii.gz", "a_0000.nii.gz", "a_0001.nii.gz"):
        write_image(tmp_path / name)
    assert [c.case_id for c in discover_inputs(tmp_path, 2)] == ["a"]


def test_export_folder_two_images_same_case(tmp_path, capsys):
    """'a.nii.gz' and 'a.nrrd' beside 'a.seg.nrrd' used to be taken as two channels (then a misleading channel
    count error, or a wrong second channel)."""
    folder = tmp_path / "in"
    images, _, _ = write_case_files(folder, make_case("a"))
    sitk.WriteImage(sitk.ReadImage(str(images[0])), str(folder / "a.nrrd"))
    code = main(["export", "--folder", str(folder), "--targets", "lesion", "--supports", "organ",
                 "--out", str(tmp_path / "raw"), "--id", "9", "--name", "X", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "two files give the case id 'a'" in err and "a.nrrd" in err, err


def test_supports_prediction_in_two_formats_refused(tmp_path):
    from backsplit.io.geometry import Geometry
    from backsplit.supports.sources import read_prediction

    write_image(tmp_path / "a.nii.gz")
    write_image(tmp_path / "a.mha")
    geometry = Geometry.create((1, 1, 1), (0, 0, 0), None, (4, 5, 6))
    with pytest.raises(InputError, match="two files give the case id 'a'"):
        read_prediction(tmp_path, "a", geometry, "lesion")


@pytest.mark.parametrize("content,message", [
    ("", "the column(s) case_id, target, value, dice, nsd are missing (columns found: none, the file is empty)"),
    ("case_id,target,value,dice,nsd\n", "holds no case"),
    ("name,score\nx,1\n", "the column(s) case_id, target, value, dice, nsd are missing (columns found: name, score)"),
    ("case_id,target,value,dice,nsd\nc1,lesion,1,abc,1\n", "line 2 holds a value that is not a number"),
])
def test_compare_empty_and_foreign_csv(tmp_path, capsys, content, message):
    """compare on an empty or header-only CSV used to raise IndexError; one without case_id a KeyError."""
    from backsplit.evaluation.evaluate import EvaluationRow, write_evaluation
    from backsplit.evaluation.metrics import METRIC_FIELDS

    good = tmp_path / "good.csv"
    write_evaluation([EvaluationRow("c1", "lesion", 1, {k: 1 for k in METRIC_FIELDS})], good)
    bad = tmp_path / "bad.csv"
    bad.write_text(content, encoding="utf-8")
    code = main(["compare", str(good), str(bad), "--out", str(tmp_path / "cmp.png")])
    err = capsys.readouterr().err
    assert code == 1 and message in err and "bad.csv" in err and "Traceback" not in err, err
    assert main(["compare", str(good), str(good), "--out", str(tmp_path / "ok.png")]) == 0
