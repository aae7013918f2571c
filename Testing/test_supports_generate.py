"""Organ-model generation over a case list with TotalSegmentator's command line and output format, through a stand-in
executable (no TotalSegmentator weights can be downloaded here; see fixtures_supports.py): segments on the image grid
(oblique and flipped inputs), names/terminology kept, user files unchanged, failures, cancel, conflicts, full disk."""

import errno
import hashlib
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fixtures_supports import STANDIN_CLASSES, write_lesion_only_cases, write_standin

from backsplit.errors import CancelledError, InputError, OutputError
from backsplit.io.readers import cases_from_folder, read_seg_nrrd
from backsplit.supports.generate import (
    GenerateRequest,
    generate_supports,
    input_folders_of,
    read_segment_tags,
    resolve_names,
)
from backsplit.supports.niftilabels import read_label_table
from backsplit.supports.runners import GENERATED_TAG, MODEL_TAG, TotalSegmentatorRunner


def digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def standin(tmp_path):
    return write_standin(tmp_path / "bin")


def runner_for(standin, tmp_path, **kw):
    env = dict(os.environ, STANDIN_LOG=str(tmp_path / "calls.jsonl"), **kw.pop("env", {}))
    return TotalSegmentatorRunner(executable=str(standin), env=env, device=kw.pop("device", "cpu"), **kw)


def test_totalsegmentator_segments_land_on_each_image_grid(tmp_path, standin):
    cases_dir = tmp_path / "cases"
    cases = write_lesion_only_cases(cases_dir)
    before = digest(cases_dir)
    sources = cases_from_folder(cases_dir)
    runner = runner_for(standin, tmp_path, fast=True)
    assert runner.class_names() == list(STANDIN_CLASSES.values())        # from --list-classes
    events = []
    outcomes = generate_supports(sources, runner, GenerateRequest(tmp_path / "out"), progress=events.append)
    assert [o.status for o in outcomes] == ["done"] * 3
    assert [e.current for e in events] == [1, 2, 3] and events[-1].data["status"] == "done"
    call = json.loads((tmp_path / "calls.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert {"--ml", "--fast"} <= set(call) and call[call.index("-ta") + 1] == "total" and \
        call[call.index("-d") + 1] == "cpu"
    for case in cases:  # flipped and oblique included
        content = read_seg_nrrd(tmp_path / "out" / f"{case.case_id}.seg.nrrd", case.case_id)
        assert content.geometry.differences(case.geometry) == []
        assert list(content.masks) == ["Lesion", "spleen", "kidney_right", "kidney_left", "liver"]
        image = case.channels[0]
        assert np.array_equal(content.masks["liver"], (image > 100) & ~content.masks["spleen"])
        spleen = np.zeros(image.shape, bool)
        spleen[0:2, 0:3, 0:3] = True
        assert np.array_equal(content.masks["spleen"], spleen)
        assert not content.masks["kidney_right"].any()
        assert np.array_equal(content.masks["Lesion"], case.segments["Lesion"])      # the user's segment as it was
        given = read_seg_nrrd(cases_dir / f"{case.case_id}.seg.nrrd", case.case_id)
        assert content.colors.get("Lesion") == given.colors.get("Lesion")
        tags = read_segment_tags(tmp_path / "out" / f"{case.case_id}.seg.nrrd")
        assert tags["liver"][GENERATED_TAG] == "1"
        assert tags["liver"][MODEL_TAG] == "TotalSegmentator task total (fast)"
        assert GENERATED_TAG not in tags.get("Lesion", {})
        assert "^Liver~" in content.terminology["liver"]
        assert "^Kidney~SCT^24028007^Right" in content.terminology["kidney_right"]
    assert digest(cases_dir) == before                                               # input files unchanged
    listed = (tmp_path / "out" / "cases.csv").read_text(encoding="utf-8").splitlines()
    assert listed[0] == "case_id,image,segmentation" and len(listed) == 4


def test_multilabel_class_map_is_read_from_the_nifti_header(tmp_path, standin):
    import subprocess

    import SimpleITK as sitk

    image = tmp_path / "ct.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((4, 5, 6), 150, np.int16)), str(image))
    subprocess.run([str(standin), "-i", str(image), "-o", str(tmp_path / "seg.nii.gz"), "--ml", "-rs", "liver"],
                   check=True, capture_output=True)
    assert read_label_table(tmp_path / "seg.nii.gz") == {5: "liver"}
    with pytest.raises(InputError, match="no class map"):
        read_label_table(image)


def test_class_subset_and_bad_subset(tmp_path, standin):
    cases_dir = tmp_path / "cases"
    write_lesion_only_cases(cases_dir, n=1)
    runner = runner_for(standin, tmp_path, roi_subset=["Liver", "spleen"])
    assert runner.class_names() == ["liver", "spleen"]                    # TotalSegmentator's spelling
    outcomes = generate_supports(cases_from_folder(cases_dir), runner, GenerateRequest(tmp_path / "out"))
    assert outcomes[0].generated == ["spleen", "liver"]                  # in label-value order
    call = json.loads((tmp_path / "calls.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert call[call.index("-rs") + 1:call.index("-rs") + 3] == ["liver", "spleen"]
    with pytest.raises(InputError, match=r"has no class 'livr'.*spleen, kidney_right, kidney_left, liver"):
        runner_for(standin, tmp_path, roi_subset=["livr"])


def test_totalsegmentator_not_installed(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    import shutil

    if shutil.which("TotalSegmentator"):
        pytest.skip("a real TotalSegmentator is installed here")
    with pytest.raises(InputError, match="TotalSegmentator is not installed: install it with 'pip install "
                                         "TotalSegmentator'.*Extensions Manager"):
        TotalSegmentatorRunner()
    with pytest.raises(InputError, match="does not exist"):
        TotalSegmentatorRunner(executable=str(empty / "TotalSegmentator"))


def test_failed_and_unreadable_cases_are_reported_and_the_rerun_skips_finished_ones(tmp_path, standin):
    cases_dir = tmp_path / "cases"
    write_lesion_only_cases(cases_dir, n=4)
    image = cases_dir / "case3.nii.gz"
    image.write_bytes(image.read_bytes()[:200])                            # truncated: cannot be read
    sources = cases_from_folder(cases_dir)
    out = tmp_path / "out"
    outcomes = generate_supports(sources, runner_for(standin, tmp_path, env={"STANDIN_FAIL": "case1"}),
                                 GenerateRequest(out))
    assert [o.status for o in outcomes] == ["done", "failed", "done", "failed"]
    assert "TotalSegmentator failed: it ended with exit code 3" in outcomes[1].error
    assert "stand-in failure" in outcomes[1].error
    assert "case 'case3'" in outcomes[3].error and "cannot be read" in outcomes[3].error
    assert sorted(p.name for p in out.glob("*.seg.nrrd")) == ["case0.seg.nrrd", "case2.seg.nrrd"]
    assert json.loads((out / "supports.json").read_text(encoding="utf-8"))["cases"]["case1"]["status"] == "failed"
    stamp = (out / "case0.seg.nrrd").stat().st_mtime_ns
    again = generate_supports(sources[:3], runner_for(standin, tmp_path), GenerateRequest(out))
    assert [o.status for o in again] == ["skipped", "done", "skipped"]
    assert (out / "case0.seg.nrrd").stat().st_mtime_ns == stamp
    assert len((out / "cases.csv").read_text(encoding="utf-8").splitlines()) == 4


def test_cancel_ends_the_whole_process_tree(tmp_path, standin):
    import psutil

    cases_dir = tmp_path / "cases"
    write_lesion_only_cases(cases_dir, n=2)
    pid_file = tmp_path / "grandchild.pid"
    runner = runner_for(standin, tmp_path, env={"STANDIN_SLEEP": str(pid_file)})
    runner.poll_seconds = 0.05
    cancel = threading.Event()

    def cancel_when_started():
        deadline = time.time() + 60
        while not pid_file.exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        cancel.set()

    threading.Thread(target=cancel_when_started, daemon=True).start()
    with pytest.raises(CancelledError):
        generate_supports(cases_from_folder(cases_dir), runner, GenerateRequest(tmp_path / "out"),
                          cancel=cancel.is_set)
    grandchild = int(pid_file.read_text(encoding="utf-8"))
    time.sleep(0.3)
    assert not psutil.pid_exists(grandchild) or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
    assert list((tmp_path / "out").glob("*.seg.nrrd")) == [] and list((tmp_path / "out").glob(".*partial*")) == []


def test_name_conflicts_suffix_or_refuse(tmp_path, standin):
    from fixtures_data import make_case, write_case_files

    assert resolve_names(["Liver", "liver (generated)"], ["liver", "spleen"], "suffix", "c") == \
        {"liver": "liver (generated 2)", "spleen": "spleen"}
    cases_dir = tmp_path / "cases"
    case = make_case("drawn", shape=(8, 10, 12))
    case.segments = {"Lesion": case.segments["Lesion"], "LIVER": case.segments["Organ"]}
    write_case_files(cases_dir, case)
    runner = runner_for(standin, tmp_path, roi_subset=["liver"])
    outcomes = generate_supports(cases_from_folder(cases_dir), runner, GenerateRequest(tmp_path / "out"))
    assert outcomes[0].renamed == {"liver": "liver (generated)"}
    content = read_seg_nrrd(tmp_path / "out" / "drawn.seg.nrrd", "drawn")
    assert list(content.masks) == ["Lesion", "LIVER", "liver (generated)"]
    assert np.array_equal(content.masks["LIVER"], case.segments["LIVER"])
    refused = generate_supports(cases_from_folder(cases_dir), runner,
                                GenerateRequest(tmp_path / "out2", on_conflict="refuse"))
    assert refused[0].status == "failed" and "'liver' have the name of a segment the case already has" in \
        refused[0].error
    assert not (tmp_path / "out2" / "drawn.seg.nrrd").exists()


def test_output_inside_the_input_folder_and_a_full_disk(tmp_path, standin):
    cases_dir = tmp_path / "cases"
    write_lesion_only_cases(cases_dir, n=3, oblique=False, flipped=False)
    sources = cases_from_folder(cases_dir)
    runner = runner_for(standin, tmp_path)
    for inside in (cases_dir, cases_dir / "generated"):
        with pytest.raises(OutputError, match="inside the input folder"):
            generate_supports(sources, runner, GenerateRequest(inside, input_folders=input_folders_of(sources)))
    assert not (cases_dir / "generated").exists()

    from backsplit.supports.generate import write_case_file

    calls = []

    def full_on_second(path, *args):
        calls.append(path)
        if len(calls) == 2:
            path.write_bytes(b"half")                                     # a partial file, then no space left
            raise OSError(errno.ENOSPC, "No space left on device")
        write_case_file(path, *args)

    out = tmp_path / "out"
    with pytest.raises(OutputError, match="disk is full.*finished cases are kept"):
        generate_supports(sources, runner, GenerateRequest(out, writer=full_on_second))
    assert sorted(p.name for p in out.iterdir() if p.name.endswith(".seg.nrrd")) == ["case0.seg.nrrd"]
    assert not any(p.name.startswith(".") for p in out.iterdir())
    again = generate_supports(sources, runner, GenerateRequest(out))
    assert [o.status for o in again] == ["skipped", "done", "done"]


def test_runner_refuses_multichannel_cases(tmp_path, standin):
    from fixtures_data import make_case, write_case_files

    write_case_files(tmp_path / "two", make_case("mc", channels=2))
    with pytest.raises(InputError, match="case 'mc'.*2 image channels; TotalSegmentator takes one"):
        generate_supports(cases_from_folder(tmp_path / "two"), runner_for(standin, tmp_path),
                          GenerateRequest(tmp_path / "out"))
