"""Prediction with the tiny model trained on the CPU (fixtures_nnunet): geometry, roles, lesion-only, bad input,
the child process, and the predict / evaluate / compare command line."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from fixtures_data import make_case
from fixtures_nnunet import TINY_SHAPE

from backsplit.errors import InputError
from backsplit.io.geometry import Geometry


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    from backsplit.inference.model import load_predictor, read_model_info

    info = read_model_info(tiny_model_dir)
    return info, load_predictor(info, "cpu", use_mirroring=False)


def rotation_direction(degrees):
    a = np.deg2rad(degrees)
    return [np.cos(a), -np.sin(a), 0, np.sin(a), np.cos(a), 0, 0, 0, 1]


def test_model_info_follows_manifest(loaded):
    info, _ = loaded
    assert info.channel_names == ["CT"] and info.n_targets == 1
    assert [(c.name, c.role) for c in info.schema.classes] == [("Lesion", "target"), ("Vessel", "support"),
                                                               ("Organ", "support")]
    assert info.manifest["training_orientation"] == "LPS"


def test_prediction_on_reoriented_input_matches_physically(loaded):
    """The same physical image stored with permuted, flipped axes gives the same physical labels."""
    from backsplit.inference.predict import predict_arrays

    info, predictor = loaded
    case = make_case("p", shape=TINY_SHAPE, seed=3)
    image = case.channels[0]
    reference = predict_arrays(predictor, info, [image], case.geometry)
    # Store the volume as (x, z, y) with the old x axis reversed: direction columns permuted accordingly.
    g = case.geometry
    D = g.direction_matrix
    permuted = np.flip(np.transpose(image, (2, 0, 1)), axis=0)          # new array axes: (x', z, y) -> (k, j, i)
    new_i, new_j, new_k = D[:, 1], D[:, 2], -D[:, 0]                   # i<-y, j<-z, k<-(-x)
    spacing = (g.spacing[1], g.spacing[2], g.spacing[0])
    # origin: index (0,0,0) of the new array is old voxel (x=shape_x-1, y=0, z=0)
    origin = np.asarray(g.origin) + D[:, 0] * g.spacing[0] * (g.shape[2] - 1)
    other = Geometry.create(spacing, origin, np.stack([new_i, new_j, new_k], axis=1).ravel(), permuted.shape)
    assert sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(other.direction) != "LPS"
    moved = predict_arrays(predictor, info, [permuted], other)
    assert moved.labels.shape == permuted.shape
    back = np.transpose(np.flip(moved.labels, axis=0), (1, 2, 0))
    assert np.array_equal(back, reference.labels)


def test_predict_files_oblique_geometry_names_and_lesion_only(tiny_model_dir, tmp_path):
    from backsplit.inference.files import discover_inputs, predict_files

    case = make_case("oblique ü", shape=TINY_SHAPE, seed=4, direction=rotation_direction(30), origin=(10, -5, 3))
    inputs_dir = tmp_path / "in"
    inputs_dir.mkdir()
    sitk.WriteImage(case.geometry.to_sitk(case.channels[0]), str(inputs_dir / "oblique ü.nii.gz"))
    inputs = discover_inputs(inputs_dir, 1)
    full = predict_files(tiny_model_dir, inputs, tmp_path / "full", device="cpu", probabilities=True,
                         use_mirroring=False)
    lesion = predict_files(tiny_model_dir, inputs, tmp_path / "lesion", device="cpu", lesion_only=True,
                           use_mirroring=False)
    out = sitk.ReadImage(str(tmp_path / "full" / "oblique ü.nii.gz"))
    source = sitk.ReadImage(str(inputs_dir / "oblique ü.nii.gz"))
    assert out.GetSize() == source.GetSize()
    assert np.allclose(out.GetDirection(), source.GetDirection()) and np.allclose(out.GetOrigin(), source.GetOrigin())
    assert np.allclose(out.GetSpacing(), source.GetSpacing())
    labels = sitk.GetArrayFromImage(out)
    lesion_labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "lesion" / "oblique ü.nii.gz")))
    assert np.array_equal(lesion_labels, np.where(labels > 1, 0, labels))   # supports folded, nothing else changes
    probability = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "full" / "oblique ü_lesion_probability.nii.gz")))
    assert probability.shape == labels.shape and 0.0 <= probability.min() and probability.max() <= 1.0 + 1e-5
    table = json.loads((tmp_path / "full" / "labels.json").read_text(encoding="utf-8"))
    assert [(table[k]["name"], table[k]["role"]) for k in ("1", "2", "3")] == [("Lesion", "target"),
                                                                              ("Vessel", "support"),
                                                                              ("Organ", "support")]
    assert json.loads((tmp_path / "lesion" / "labels.json").read_text(encoding="utf-8")).keys() == {"0", "1"}
    summary = json.loads((tmp_path / "full" / "summary.json").read_text(encoding="utf-8"))[0]
    assert summary["case_id"] == "oblique ü" and summary["lesion_count"] == full[0].lesion_count
    assert summary["lesion_volume_ml"] == pytest.approx((labels == 1).sum() * np.prod(case.geometry.spacing) / 1000,
                                                        abs=1e-3)
    assert lesion[0].lesion_volume_ml == full[0].lesion_volume_ml
    # existing outputs are not replaced unless asked
    from backsplit.errors import OutputError

    with pytest.raises(OutputError, match="already exists"):
        predict_files(tiny_model_dir, inputs, tmp_path / "full", device="cpu", use_mirroring=False)


def test_seg_nrrd_output_has_manifest_names_and_colours(tiny_model_dir, tmp_path):
    from backsplit.inference.files import InputCase, predict_files
    from backsplit.io.readers import read_seg_nrrd

    case = make_case("s", shape=TINY_SHAPE, seed=5)
    sitk.WriteImage(case.geometry.to_sitk(case.channels[0]), str(tmp_path / "s.nii.gz"))
    predict_files(tiny_model_dir, [InputCase("s", [tmp_path / "s.nii.gz"])], tmp_path / "out", device="cpu",
                  output_format="seg.nrrd", use_mirroring=False)
    content = read_seg_nrrd(tmp_path / "out" / "s.seg.nrrd", "s")
    assert list(content.masks) == ["Lesion", "Vessel", "Organ"]
    manifest = json.loads((tiny_model_dir / "backsplit_model.json").read_text(encoding="utf-8"))
    assert content.colors["Lesion"] == pytest.approx(manifest["schema"]["targets"][0]["color"], abs=1e-3)


def test_bad_prediction_input(loaded, tiny_model_dir, tmp_path):
    from backsplit.inference.model import read_model_info
    from backsplit.inference.predict import predict_arrays

    info, predictor = loaded
    case = make_case("b", shape=TINY_SHAPE)
    with pytest.raises(InputError, match=r"case 'b'.*takes 1 channel\(s\) \(CT\) but 2"):
        predict_arrays(predictor, info, [case.channels[0], case.channels[0]], case.geometry, case="b")
    with pytest.raises(InputError, match="constant"):
        predict_arrays(predictor, info, [np.full(TINY_SHAPE, 7, np.int16)], case.geometry, case="b")
    mr_like = (np.abs(case.channels[0].astype(np.float32)) * 20 + 200)        # 0..several thousand, no negatives
    result = predict_arrays(predictor, info, [mr_like], case.geometry)
    assert result.warnings and "another modality" in result.warnings[0]
    assert not predict_arrays(predictor, info, [case.channels[0]], case.geometry).warnings
    with pytest.raises(InputError, match="not an nnU-Net v2 model folder, nor a BackSplit one"):
        read_model_info(tmp_path)   # an empty folder (a plain nnU-Net model folder would be read, with a warning)
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    manifest = json.loads((broken / "backsplit_model.json").read_text(encoding="utf-8"))
    manifest["labels"] = {"background": 0, "Lesion": 1}
    (broken / "backsplit_model.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="do not match"):
        read_model_info(broken)
    manifest["labels"] = json.loads((tiny_model_dir / "dataset.json").read_text(encoding="utf-8"))["labels"]
    manifest["schema"]["supports"] = manifest["schema"]["supports"][:1]
    (broken / "backsplit_model.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="does not belong to this network"):
        read_model_info(broken)


def test_prediction_child_process(tiny_model_dir, tmp_path):
    from backsplit.inference.process import PredictionProcess
    from backsplit.inference.worker import PredictionRequest

    case = make_case("child", shape=TINY_SHAPE, seed=6)
    sitk.WriteImage(case.geometry.to_sitk(case.channels[0]), str(tmp_path / "child.nii"))
    request = PredictionRequest(str(tiny_model_dir), [["child", [str(tmp_path / "child.nii")]]], str(tmp_path / "out"),
                                device="cpu", probabilities=True, use_mirroring=False)
    job = PredictionProcess(request).start()
    assert job.wait(300) == 0, "\n".join(job.log_lines[-20:])
    events = [e for e in job.poll_events() if e.stage != "log"]
    assert events[-1].stage == "done" and job.summaries[0]["case_id"] == "child"
    assert (tmp_path / "out" / "child.nii.gz").is_file()
    assert (tmp_path / "out" / "child_lesion_probability.nii.gz").is_file()


def test_predict_evaluate_compare_command_line(tiny_model_dir, tiny_binary_model_dir, tiny_dataset, tmp_path):
    def cli(*args):
        proc = subprocess.run([sys.executable, "-m", "backsplit", *map(str, args)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    images = tiny_dataset.dataset_dir / "imagesTr"
    refs = tiny_dataset.dataset_dir / "labelsTr"
    out = cli("predict", tiny_model_dir, images, "--out", tmp_path / "bs", "--no-mirroring", "--device", "cpu",
              "--quiet")
    assert "tiny0" in out and (tmp_path / "bs" / "summary.csv").is_file()
    cli("predict", tiny_binary_model_dir, images, "--out", tmp_path / "bin", "--no-mirroring", "--device", "cpu",
        "--quiet")
    # the case rule calibrated on these (labelled) cases, then used by predict
    summaries = json.loads((tmp_path / "bs" / "summary.json").read_text(encoding="utf-8"))
    assert all(0 <= s["max_lesion_probability"] <= 1 for s in summaries)   # without --probabilities too
    out = cli("calibrate", tmp_path / "bs", refs, "--labels", tiny_model_dir, "--sensitivity", "1",
              "--out", tmp_path / "rule.json")
    rule = json.loads((tmp_path / "rule.json").read_text(encoding="utf-8"))
    lesion_scores = [s["lesion_score_ml"] for s in summaries]
    assert rule["min_volume_ml"] == pytest.approx(min(lesion_scores)) and rule["threshold"] == 0.5
    assert "sensitivity 1.000" in out or min(lesion_scores) == 0
    cli("predict", tiny_model_dir, images, "--out", tmp_path / "ruled", "--no-mirroring", "--device", "cpu",
        "--quiet", "--rule", tmp_path / "rule.json")
    ruled = json.loads((tmp_path / "ruled" / "summary.json").read_text(encoding="utf-8"))
    assert all(s["min_volume_ml"] == pytest.approx(rule["min_volume_ml"]) for s in ruled)
    out = cli("evaluate", tmp_path / "bs", refs, "--model", tiny_model_dir, "--out", tmp_path / "bs.csv")
    assert "Lesion: Dice" in out
    cli("evaluate", tmp_path / "bin", refs, "--model", tiny_binary_model_dir, "--reference-labels",
        tiny_dataset.dataset_dir, "--out", tmp_path / "bin.csv")
    out = cli("compare", tmp_path / "bin.csv", tmp_path / "bs.csv", "--out", tmp_path / "report.png", "--case", "tiny0",
              "--images", images, "--references", refs, "--predictions-a", tmp_path / "bin",
              "--predictions-b", tmp_path / "bs")
    assert "binary" in out and "BackSplit" in out and "dice" in out
    from PIL import Image

    picture = np.asarray(Image.open(tmp_path / "report.png").convert("L"))
    assert picture.shape[1] > 1000 and picture.std() > 10               # a real, non-blank picture


def test_evaluation_refuses_reference_on_another_grid(tmp_path):
    from backsplit.evaluation.evaluate import evaluate_case
    from backsplit.labels.schema import LabelSchema

    geometry = Geometry.create((1, 1, 1), (0, 0, 0), None, (4, 5, 6))
    sitk.WriteImage(geometry.to_sitk(np.zeros((4, 5, 6), np.uint8)), str(tmp_path / "pred.nii.gz"))
    other = Geometry.create((1, 1, 2), (0, 0, 0), None, (4, 5, 6))
    sitk.WriteImage(other.to_sitk(np.zeros((4, 5, 6), np.uint8)), str(tmp_path / "ref.nii.gz"))
    with pytest.raises(InputError, match=r"case 'c'.*another grid.*spacing differs"):
        evaluate_case("c", tmp_path / "pred.nii.gz", tmp_path / "ref.nii.gz", LabelSchema.create(["Lesion"]))
