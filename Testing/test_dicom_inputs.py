"""DICOM inputs (issue 21 item 1): an image series given as a folder or as one of its files is read as the whole 3D
series in every reader, a DICOM SEG lands on the image grid with its own segment names, and what cannot be read
faithfully (one slice, a missing slice, two series, gantry tilt, a SEG given as an image) is refused with the cause.
The DICOM files are written in the test (SimpleITK series writer, highdicom SEG): no downloads."""

import csv

import numpy as np
import pytest
import SimpleITK as sitk
from dicomdata import write_ct_series, write_seg

from backsplit.cli import main
from backsplit.errors import InputError
from backsplit.io.geometry import Geometry
from backsplit.io.imagefile import check_image_file, read_image


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """A 24 x 32 x 36 CT series on a 1 mm grid, its truth masks and a SEG of them (108 tumour voxels)."""
    root = tmp_path_factory.mktemp("dicom")
    ct = np.random.default_rng(0).normal(0, 20, (24, 32, 36)).astype(np.int16)
    files = write_ct_series(root / "c1", ct, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))
    tumour = np.zeros(ct.shape, bool)
    tumour[5:8, 10:16, 12:18] = True
    kidney = np.zeros(ct.shape, bool)
    kidney[3:10, 5:25, 5:25] = True
    kidney &= ~tumour
    truth = {"kidney": kidney, "tumor": tumour}
    write_seg(root / "c1_seg.dcm", files, truth)
    return root, ct, files, truth


def test_folder_and_single_file_read_the_whole_series(series):
    """A series folder used to be 'file does not exist'; one file a one-slice volume."""
    root, ct, files, _ = series
    for given in (root / "c1", files[7]):
        check_image_file(given, "c1")
        array, geometry = read_image(given, "c1")
        assert np.array_equal(array, ct)
        assert geometry.shape == ct.shape and np.allclose(geometry.spacing, 1.0)


def test_refusals_name_the_cause(series, tmp_path):
    root, ct, files, _ = series
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / files[0].name).write_bytes(files[0].read_bytes())
    with pytest.raises(InputError, match="single DICOM slice"):
        read_image(lone / files[0].name, "c1")
    with pytest.raises(InputError, match="single DICOM slice"):
        check_image_file(lone, "c1")
    with pytest.raises(InputError, match="this is a DICOM SEG"):
        read_image(root / "c1_seg.dcm", "c1")
    gap = tmp_path / "gap"
    gap.mkdir()
    for f in files[:10] + files[11:]:
        (gap / f.name).write_bytes(f.read_bytes())
    with pytest.raises(InputError, match="uneven slice spacing"):
        read_image(gap, "c1")
    two = tmp_path / "two"
    write_ct_series(two, ct[:4], series_uid="1.2.3.4.1", description="first")
    write_ct_series(two / "x", ct[:4], series_uid="1.2.3.4.2", description="second")
    for f in (two / "x").iterdir():
        f.rename(two / ("b_" + f.name))
    with pytest.raises(InputError, match="2 DICOM series: 'first'.*'second'"):
        check_image_file(two, "c1")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="folder without DICOM files"):
        read_image(tmp_path / "empty", "c1")


def test_tilted_series_is_refused(tmp_path):
    import pydicom

    files = write_ct_series(tmp_path / "t", np.zeros((5, 8, 8), np.int16), spacing=(1.0, 1.0, 2.0))
    for k, f in enumerate(sorted(files)):   # shift each slice along y: a gantry tilt of atan(0.5 / 2) = 14 degrees
        ds = pydicom.dcmread(str(f))
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + 0.5 * k, z]
        ds.save_as(str(f))
    with pytest.raises(InputError, match="tilted"):
        read_image(tmp_path / "t", "t")


def write_cases_csv(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_export_of_dicom_series_with_seg_nrrd(series, tmp_path):
    """The export reads the series folder as the image (today: 'the image (channel 0) file does not exist')."""
    from backsplit.io.segfile import write_seg_nrrd

    root, ct, files, truth = series
    geometry = Geometry.create((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), None, ct.shape)
    write_seg_nrrd(tmp_path / "c1.seg.nrrd", geometry, truth)
    cases = write_cases_csv(tmp_path / "cases.csv", [{"case_id": "c1", "image": str(files[3]),
                                                      "segmentation": str(tmp_path / "c1.seg.nrrd")}])
    out = tmp_path / "raw"
    assert main(["export", "--cases", str(cases), "--targets", "tumor", "--supports", "kidney", "--out", str(out),
                 "--id", "5", "--name", "Dicom", "--quiet"]) == 0
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "Dataset005_Dicom" / "imagesTr" / "c1_0000.nii.gz")))
    assert np.array_equal(image, ct)


def test_export_of_dicom_seg_matches_truth(series, tmp_path):
    """A DICOM SEG was read by ITK's generic reader as a stack of its frames: exit 0 and a wrong labelmap. Now its
    segments (names from the SEG) land voxel for voxel on the series grid; the image may be given as any file of
    the series or as a NIfTI converted from it."""
    root, ct, files, truth = series
    nifti = tmp_path / "c2.nii.gz"
    sitk.WriteImage(sitk.ReadImage([str(f) for f in files]), str(nifti))
    cases = write_cases_csv(tmp_path / "cases.csv", [
        {"case_id": "c1", "image": str(root / "c1"), "segmentation": str(root / "c1_seg.dcm")},
        {"case_id": "c2", "image": str(nifti), "segmentation": str(root / "c1_seg.dcm")}])
    out = tmp_path / "raw"
    assert main(["export", "--cases", str(cases), "--targets", "tumor", "--supports", "kidney", "--out", str(out),
                 "--id", "6", "--name", "Seg", "--quiet"]) == 0
    for case in ("c1", "c2"):
        labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "Dataset006_Seg" / "labelsTr" / f"{case}.nii.gz")))
        values = {name: int(np.unique(labels[mask])[0]) for name, mask in truth.items()}
        assert all(np.unique(labels[mask]).size == 1 for mask in truth.values())
        expected = np.zeros(ct.shape, np.uint8)
        for name, mask in truth.items():
            expected[mask] = values[name]
        assert np.array_equal(labels, expected), case
        assert values["tumor"] != values["kidney"] and (labels == values["tumor"]).sum() == 108


def test_seg_refusals(series, tmp_path):
    """A SEG given as an image or as a labelmap, or paired with another series, is refused with the advice."""
    from backsplit.io.dicomseg import seg_on_image
    from backsplit.io.readers import read_labelmap

    root, ct, files, _ = series
    with pytest.raises(InputError, match="this is a DICOM SEG.*as the case's segmentation"):
        read_labelmap(root / "c1_seg.dcm", {1: "tumor"}, "c1")
    geometry = Geometry.create((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), None, ct.shape)
    with pytest.raises(InputError, match="another series"):
        seg_on_image(root / "c1_seg.dcm", geometry, "c1", "1.2.999")
    shifted = Geometry.create((1.0, 1.0, 1.0), (0.5, 0.0, 0.0), None, ct.shape)
    with pytest.raises(InputError, match="does not lie on the image grid"):
        seg_on_image(root / "c1_seg.dcm", shifted, "c1")
    small = Geometry.create((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), None, (6, 32, 36))
    with pytest.raises(InputError, match=r"segment 'kidney'.*\(1528 voxel\(s\)\) lies outside the image"):
        seg_on_image(root / "c1_seg.dcm", small, "c1")


def test_single_plane_seg_takes_the_slice_spacing_of_the_image(tmp_path):
    from backsplit.io.dicomseg import seg_on_image

    ct = np.zeros((6, 16, 16), np.int16)
    files = write_ct_series(tmp_path / "ct", ct, spacing=(0.7, 0.7, 3.0))
    mask = np.zeros(ct.shape, bool)
    mask[4, 3:7, 3:7] = True
    write_seg(tmp_path / "seg.dcm", files, {"tumor": mask})
    _, geometry = read_image(tmp_path / "ct", "c")
    assert np.array_equal(seg_on_image(tmp_path / "seg.dcm", geometry).masks["tumor"], mask)


def test_predict_inputs_from_dicom_series(series, tmp_path):
    """predict: a series folder or one of its files is one case named after the folder; in a folder of inputs each
    sub-folder holding a series is a case (today: 'not an image file', or the sub-folders were skipped)."""
    from backsplit.inference.files import discover_inputs

    root, ct, files, _ = series
    assert [(c.case_id, c.images) for c in discover_inputs(root / "c1", 1)] == [("c1", [root / "c1"])]
    assert [c.case_id for c in discover_inputs(files[2], 1)] == ["c1"]
    inputs = tmp_path / "inputs"
    (inputs / "p1").mkdir(parents=True)
    for f in files:
        (inputs / "p1" / f.name).write_bytes(f.read_bytes())
    sitk.WriteImage(sitk.GetImageFromArray(ct), str(inputs / "p2.nii.gz"))
    assert [c.case_id for c in discover_inputs(inputs, 1)] == ["p1", "p2"]
    sitk.WriteImage(sitk.GetImageFromArray(ct), str(inputs / "p1.nii.gz"))
    with pytest.raises(InputError, match="two files give the case id 'p1'"):
        discover_inputs(inputs, 1)
    with pytest.raises(InputError, match="takes 2 channels"):
        discover_inputs(root / "c1", 2)


def test_supports_read_dicom_seg_on_series(series):
    """supports generate/suggest read cases through their own header-only path: the SEG lands on the series grid."""
    from backsplit.io.readers import FileCaseSource
    from backsplit.supports.sources import read_case_masks

    root, ct, files, truth = series
    geometry, masks = read_case_masks(FileCaseSource("c1", [files[0]], root / "c1_seg.dcm"))
    assert geometry.shape == ct.shape and set(masks) == set(truth)
    assert all(np.array_equal(masks[name], truth[name]) for name in truth)


def test_seg_without_highdicom_says_how_to_install(series, monkeypatch):
    """Inside 3D Slicer highdicom is not installed: the SEG read says how to install it or convert the SEG (the
    import is simulated as missing; the engine never imports highdicom at module level)."""
    import sys

    from backsplit.io.dicomseg import seg_on_image

    root, ct, _, _ = series
    monkeypatch.setitem(sys.modules, "highdicom", None)  # 'import highdicom' raises ImportError
    geometry = Geometry.create((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), None, ct.shape)
    with pytest.raises(InputError, match=r"needs the package highdicom.*pip_install\('highdicom'\).*\.seg\.nrrd"):
        seg_on_image(root / "c1_seg.dcm", geometry, "c1")


def test_export_folder_of_dicom_cases(series, tmp_path, capsys):
    """A case folder in the TCIA style: '<case>_seg.dcm' (DICOM SEG) beside the sub-folder '<case>/' of its series."""
    root, ct, _, truth = series
    out = tmp_path / "raw"
    assert main(["export", "--folder", str(root), "--targets", "tumor", "--supports", "kidney", "--out", str(out),
                 "--id", "8", "--name", "Tcia", "--quiet"]) == 0, capsys.readouterr().err
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "Dataset008_Tcia" / "labelsTr" / "c1.nii.gz")))
    assert np.array_equal(labels > 0, truth["kidney"] | truth["tumor"])
