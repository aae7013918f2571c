"""`backsplit supports generate|suggest` on files: TotalSegmentator through the stand-in executable (no weights can be
downloaded here; see fixtures_supports.py), the ranked table, --accept, --json, binary predictions (false-positive
prone) read from a `backsplit predict`-style folder, and bad input."""

import contextlib
import io
import json

import numpy as np
import pytest
from fixtures_data import make_case, write_case_files
from fixtures_supports import write_lesion_only_cases, write_standin

from backsplit.cli import main
from backsplit.io.readers import read_seg_nrrd


def run(args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def test_generate_with_totalsegmentator_then_suggest_and_accept(tmp_path):
    cases_dir = tmp_path / "cases"
    write_lesion_only_cases(cases_dir)
    exe = write_standin(tmp_path / "bin")
    code, out, err = run(["supports", "generate", "--folder", str(cases_dir), "--totalsegmentator", "--executable",
                          str(exe), "--classes", "liver,spleen", "--fast", "--device", "cpu",
                          "--out", str(tmp_path / "gen"), "--quiet"])
    assert code == 0, err
    assert "3 of 3 case(s)" in out and "TotalSegmentator task total (fast)" in out
    content = read_seg_nrrd(tmp_path / "gen" / "case1.seg.nrrd", "case1")
    assert list(content.masks) == ["Lesion", "spleen", "liver"]
    code, out, err = run(["supports", "suggest", "--cases", str(tmp_path / "gen" / "cases.csv"), "--target", "lesion",
                          "--accept", "--quiet"])
    assert code == 0, err
    # the stand-in's liver is everything brighter than 100: the organ box around (not over) the darker lesion, so a
    # neighbour at 1 mm; its spleen (a corner block) is a neighbour 7-8 mm away; smaller structures first
    rows = {line.split()[1]: line for line in out.splitlines() if line[:2].strip().isdigit()}
    assert "neighbour" in rows["liver"] and "neighbour" in rows["spleen"]
    assert '--supports "spleen,liver"' in out
    code, again, _ = run(["supports", "generate", "--folder", str(cases_dir), "--totalsegmentator", "--executable",
                          str(exe), "--out", str(tmp_path / "gen"), "--quiet"])
    assert code == 0 and again.count("skipped") == 3


def write_hand_made(folder, n=3):
    """Cases with a lesion, its host organ, a neighbour 3 voxels away and a far structure; binary predictions with
    the lesion plus one false positive inside 'bone' per case (labels.json as backsplit predict writes it)."""
    import SimpleITK as sitk

    preds = folder.parent / "predictions"
    preds.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        case = make_case(f"h{i}", shape=(12, 16, 20), spacing=(1.0, 1.0, 2.0), seed=i)
        lesion = case.segments["Lesion"]
        near = np.zeros(lesion.shape, bool)
        near[4:7, 5:8, 11:13] = True                          # x index 11: 3 voxels after the lesion's last (8)
        bone = np.zeros(lesion.shape, bool)
        bone[0:2, 0:3, 0:3] = True
        case.segments = {"Lesion": lesion, "Organ": case.segments["Organ"], "near": near, "bone": bone}
        write_case_files(folder, case)
        labels = lesion.astype(np.uint8)
        labels[0, 0:2, 0:2] = 1                               # false positive in bone
        sitk.WriteImage(case.geometry.to_sitk(labels), str(preds / f"h{i}.nii.gz"))
    (preds / "labels.json").write_text(json.dumps({"0": {"name": "background", "role": "background"},
                                                   "1": {"name": "Lesion", "role": "target"}}))
    return preds


def test_suggest_json_with_predictions(tmp_path):
    preds = write_hand_made(tmp_path / "cases")
    code, out, err = run(["supports", "suggest", "--folder", str(tmp_path / "cases"), "--target", "Lesion",
                          "--predictions", str(preds), "--distance", "5", "--json"])
    assert code == 0, err
    report = json.loads(out)
    by_name = {c["name"]: c for c in report["candidates"]}
    assert [c["name"] for c in report["candidates"]] == ["Organ", "near", "bone"]
    assert by_name["Organ"]["role"] == "host organ" and by_name["Organ"]["host_cases"] == 3
    assert by_name["near"]["role"] == "neighbour" and by_name["near"]["median_distance_mm"] == pytest.approx(3.0)
    assert by_name["bone"]["role"] == "false-positive prone" and by_name["bone"]["fp_touching"] == 3
    assert report["false_positive_lesions"] == 3 and report["accepted"] == ["bone", "near", "Organ"]
    code, out, err = run(["supports", "suggest", "--folder", str(tmp_path / "cases"), "--target", "Lesion",
                          "--distance", "2", "--accept", "--top", "1", "--quiet"])
    assert code == 0 and '--supports "Organ"' in out and "not suggested" in out   # near is 3 mm > 2 mm


def test_bad_input(tmp_path):
    preds = write_hand_made(tmp_path / "cases", n=1)
    (preds / "h0.nii.gz").unlink()
    code, _, err = run(["supports", "suggest", "--folder", str(tmp_path / "cases"), "--target", "Lesion",
                        "--predictions", str(preds)])
    assert code == 1 and "case 'h0': no prediction for the case" in err
    with pytest.raises(SystemExit) as stop:   # refused where it is parsed (runtime/argtypes.py)
        run(["supports", "suggest", "--folder", str(tmp_path / "cases"), "--target", "Lesion", "--distance", "0"])
    assert stop.value.code == 2
    code, _, err = run(["supports", "suggest", "--folder", str(tmp_path / "cases"), "--target", "cyst"])
    assert code == 1 and "no case has voxels of the target 'cyst'" in err
    code, _, err = run(["supports", "generate", "--folder", str(tmp_path / "cases"), "--model", str(tmp_path),
                        "--out", str(tmp_path / "cases" / "generated")])
    assert code == 1 and "inside the input folder" in err or "not an nnU-Net v2 model folder" in err
    code, _, err = run(["supports", "generate", "--folder", str(tmp_path / "cases"), "--totalsegmentator",
                        "--executable", str(tmp_path / "nowhere"), "--out", str(tmp_path / "gen")])
    assert code == 1 and "TotalSegmentator is not installed" in err and "pip install TotalSegmentator" in err
    code, _, err = run(["supports", "generate", "--folder", str(tmp_path / "cases"), "--totalsegmentator",
                        "--executable", str(write_standin(tmp_path / "bin")), "--classes", "liver,lungs",
                        "--out", str(tmp_path / "gen")])
    assert code == 1 and "has no class 'lungs'; its classes are: spleen, kidney_right, kidney_left, liver" in err


def test_accept_warns_when_the_support_list_is_longer_than_advised_for_the_planned_budget(tmp_path):
    """The advice and its source come from training/budget.py (the paper's Fig. 6 statements: at most 1 support
    structure up to 250 epochs x 250 iterations); without --planned-steps the budget is backsplit train's default."""
    write_hand_made(tmp_path / "cases")
    base = ["supports", "suggest", "--folder", str(tmp_path / "cases"), "--target", "Lesion", "--distance", "5",
            "--accept", "--quiet"]
    code, out, err = run(base)
    assert code == 0 and '--supports "near,Organ"' in out
    assert "warning: 2 support structures for a training of 12500 optimiser steps" in err
    assert "BackSplit paper" in err and "fewer support structures" in err
    code, out, err = run(base + ["--top", "1"])
    assert code == 0 and "warning" not in err
    code, out, err = run(base + ["--planned-steps", str(250 * 250 + 1)])
    assert code == 0 and "warning" not in err
    with pytest.raises(SystemExit) as stop:   # refused where it is parsed (runtime/argtypes.py)
        run(base + ["--planned-steps", "0"])
    assert stop.value.code == 2
