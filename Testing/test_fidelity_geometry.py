"""No geometry is changed without the user knowing: sheared grids (gantry-tilted CT) are refused with the tilt and
how to fix it, in export (files and Slicer-scene cases), prediction and the organ-model runs' reader; ITK's raw
warnings never reach the terminal untranslated; a direction difference is judged by the millimetres it moves the
image; a singleton 4th axis is a 3D image in every format."""

import json
import math

import numpy as np
import pytest
import SimpleITK as sitk
from fixtures_data import make_case
from fixtures_fidelity import segment_fields, sheared_directions, write_nrrd

from backsplit.datasets.export import ExportRequest, export_dataset
from backsplit.errors import InputError, OutputError
from backsplit.io.cases import InMemoryCaseSource
from backsplit.io.geometry import Geometry
from backsplit.io.readers import FileCaseSource, read_image

SHAPE = (32, 64, 64)  # z, y, x: the 64x64x32 grid


def sheared_case_files(folder):
    """Image .nrrd and .seg.nrrd on a 64x64x32 grid, spacing 0.8/0.8/2.5, k axis tilted 15 degrees."""
    folder.mkdir(parents=True, exist_ok=True)
    image = np.random.default_rng(0).normal(0, 50, SHAPE).astype(np.int16)
    lesion = np.zeros(SHAPE, np.uint8)
    lesion[10:14, 20:30, 20:30] = 1
    directions = sheared_directions()
    image_path = write_nrrd(folder / "tilt.nrrd", image, directions, (0, 0, 0), "domain domain domain")
    seg_path = write_nrrd(folder / "tilt.seg.nrrd", lesion, directions, (0, 0, 0), "domain domain domain",
                          segment_fields(["Lesion"], ["20 29 20 29 10 13"], [0], [1]))
    return image_path, seg_path


def test_sheared_grid_is_refused_with_tilt_and_fix_in_export(tmp_path, capfd):
    """Fault 2: exported with exit 0, a raw ITK warning, corners moved up to 11 mm."""
    image, seg = sheared_case_files(tmp_path / "in")
    with pytest.raises(InputError) as error:
        export_dataset([FileCaseSource("tilt", [image], seg)],
                       ExportRequest(tmp_path / "raw", 501, "Tilt", ["Lesion"], binary_twin=False))
    text = str(error.value)
    assert "case 'tilt'" in text and "tilt.nrrd" in text and "sheared grid" in text
    assert "15.00 degrees" in text and "Crop Volume" in text and "Resample" in text
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").iterdir())
    assert "WARNING: In" not in capfd.readouterr().err


def test_sheared_slicer_scene_case_is_refused(tmp_path):
    """Cases read from a Slicer scene (IJKToRAS with a tilted k column) are checked by validation."""
    s, c = math.sin(math.radians(15)), math.cos(math.radians(15))
    case = make_case("scene", direction=[1, 0, 0, 0, 1, s, 0, 0, c])
    with pytest.raises(InputError, match=r"case 'scene'.*sheared grid.*15.00 degrees.*Crop Volume"):
        export_dataset([InMemoryCaseSource(case)], ExportRequest(tmp_path / "raw", 501, "S", ["Lesion"],
                                                                 ["Organ", "Vessel"]))


def test_sheared_input_refused_before_prediction_and_in_organ_model_reader(tmp_path):
    from backsplit.inference.files import InputCase, predict_files

    image, _ = sheared_case_files(tmp_path / "in")
    model = tmp_path / "model"  # a real model folder layout; its checkpoint is never loaded (input refused first)
    (model / "fold_all").mkdir(parents=True)
    (model / "fold_all" / "checkpoint_final.pth").write_bytes(b"")
    labels = {"background": 0, "Lesion": 1}
    (model / "dataset.json").write_text(json.dumps({"labels": labels, "channel_names": {"0": "CT"}}))
    (model / "plans.json").write_text(json.dumps({"configurations": {"2d": {}}}))
    manifest = {"kind": "backsplit-model", "configuration": "2d", "labels": labels, "folds": ["all"]}
    (model / "backsplit_model.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=r"case 'tilt'.*tilt.nrrd.*sheared grid.*15.00 degrees"):
        predict_files(model, [InputCase("tilt", [image])], tmp_path / "out", device="cpu")
    from backsplit.supports import sources  # organ-model runs read their inputs with the same reader

    assert sources.read_image is read_image
    with pytest.raises(InputError, match="sheared grid"):
        read_image(image, "tilt")


def nifti_with_sform(path, sform, qform):
    nibabel = pytest.importorskip("nibabel")  # installed with nnU-Net

    image = nibabel.Nifti1Image(np.zeros((6, 6, 8), np.int16), sform)
    image.header.set_sform(sform, code=1)
    image.header.set_qform(qform, code=1 if qform is not None else 0)
    nibabel.save(image, str(path))
    return path


def test_sheared_or_non_orthonormal_nifti(tmp_path):
    s, c = math.sin(math.radians(15)), math.cos(math.radians(15))
    sheared = np.array([[0.8, 0, 0, 0], [0, 0.8, 2.5 * s, 0], [0, 0, 2.5 * c, 0], [0, 0, 0, 1.0]])
    with_qform = nifti_with_sform(tmp_path / "q.nii.gz", sheared, np.diag([0.8, 0.8, 2.5, 1]))
    with pytest.raises(InputError, match=r"sform\) describes a sheared grid.*silently use.*qform"):
        read_image(with_qform, "q")
    without = nifti_with_sform(tmp_path / "n.nii.gz", sheared, None)
    with pytest.raises(InputError, match="sheared grid") as error:
        read_image(without, "n")
    assert "truncated" not in str(error.value)
    broken = np.diag([0.8, 0.8, 2.5, 1.0])
    broken[:3, 2] = broken[:3, 0] * 3.125  # k parallel to i: no orientation at all
    path = nifti_with_sform(tmp_path / "b.nii.gz", broken, None)
    with pytest.raises(InputError) as error:
        read_image(path, "b")
    assert "not orthonormal" in str(error.value) or "sheared" in str(error.value)
    assert "truncated" not in str(error.value)


def test_itk_warning_on_write_is_caught_and_translated(tmp_path, capfd):
    from backsplit.io.niftiio import write_uncompressed

    s, c = math.sin(math.radians(15)), math.cos(math.radians(15))
    geometry = Geometry.create((1, 1, 1), (0, 0, 0), [1, 0, 0, 0, 1, s, 0, 0, c], (4, 5, 6))
    with pytest.raises(OutputError, match=r"not perpendicular.*straightened.*Non-orthogonal direction matrix"):
        write_uncompressed(np.zeros((4, 5, 6), np.int16), geometry, tmp_path / "x.nii")
    assert "WARNING: In" not in capfd.readouterr().err


def test_capture_helper_parses_itk_messages_and_passes_other_text_on():
    from backsplit.io.itkmessages import parse_itk_output, translate

    text = ("WARNING: In /src/ITK/Modules/IO/NIFTI/src/itkNiftiImageIO.cxx, line 2314\n"
            "NiftiImageIO (0x55855a2f1a50): Non-orthogonal direction matrix coerced to orthogonal\n\n"
            "some other library's line\n")
    parsed = parse_itk_output(text)
    assert parsed.itk == [("NiftiImageIO", "Non-orthogonal direction matrix coerced to orthogonal")]
    assert parsed.other == "some other library's line"
    assert "not perpendicular" in translate(*parsed.itk[0], "x.nii.gz")
    assert "the file was read" in translate("NrrdImageIO", "something new", "y.nrrd")


@pytest.mark.parametrize("degrees,accepted", [(0.09, True), (3.0, False)])
def test_direction_tolerance_is_displacement_in_mm(tmp_path, degrees, accepted):
    """0.09 degrees moves the far corner of this image by 0.05 mm (< half the 0.8 mm voxel): placed as is (what
    nearest-neighbour resampling returns). 3 degrees moves it 1.6 mm: refused, naming degrees and mm."""
    from backsplit.io.segfile import write_seg_nrrd

    case = make_case("rot", shape=(12, 16, 20), spacing=(0.8, 0.8, 0.8))
    folder = tmp_path / "in"
    folder.mkdir()
    image = folder / "rot.nii.gz"
    sitk.WriteImage(case.geometry.to_sitk(case.channels[0]), str(image))
    a = math.radians(degrees)
    rotation = [math.cos(a), -math.sin(a), 0, math.sin(a), math.cos(a), 0, 0, 0, 1]
    g = case.geometry
    write_seg_nrrd(folder / "rot.seg.nrrd", Geometry.create(g.spacing, g.origin, rotation, g.shape), case.segments)
    source = FileCaseSource("rot", [image], folder / "rot.seg.nrrd")
    if accepted:
        loaded = source.load()
        assert all(np.array_equal(loaded.segments[k], case.segments[k]) for k in case.segments)
    else:
        with pytest.raises(InputError, match=r"direction differs .*3 degrees.* mm, more than the 0.4 mm allowed"):
            source.load()


@pytest.mark.parametrize("suffix", [".nrrd", ".mha", ".nii.gz"])
def test_singleton_fourth_axis_is_a_3d_image_in_every_format(tmp_path, suffix):
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(1, 4, 5, 6)
    path = tmp_path / f"s{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=False), str(path))
    loaded, geometry = read_image(path, "s")
    assert loaded.shape == (4, 5, 6) and np.array_equal(loaded, array[0]) and geometry.shape == (4, 5, 6)
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 4, 5, 6), np.int16), isVector=False),
                    str(tmp_path / f"t{suffix}"))
    with pytest.raises(InputError, match=r"is 4D \(6 x 5 x 4 x 2 voxels\).*split 4D series"):
        read_image(tmp_path / f"t{suffix}", "t")
