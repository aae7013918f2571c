"""*Generate for all cases* hands each case's volumes to the organ-model child in bounded timer steps (audit N2,
issue 20), as Export, Suggest and *Add to dataset* do: real slicer-core scenes, the real generation child process
(``backsplit.supports.worker``) and the real hand-over folder. The organ model is the stand-in TotalSegmentator of
``fixtures_supports.py`` (TotalSegmentator's weights cannot be downloaded here); the panel's Qt widgets and timers
are the stand-ins of ``fixtures_panels.py`` (no Qt here).

Checked: every timer step does at most one piece of GUI work (one slab of at most ``SLAB_BYTES`` read from the scene
or written for the child, counted from the files) and adds at most one segment; the generated segments equal those
of the path before (each volume written whole as NIfTI, the child reading the files); Cancel and a scene close
mid-way leave Generate usable and nothing in the temporary folder; a case that cannot be read is named, with the
fix, and the cases before it keep their segments."""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace as NS

import numpy as np
import pytest
from fixtures_panels import Timer, Widget, idle
from fixtures_supports import write_standin

slicer = pytest.importorskip("slicer")

SHAPE = (40, 160, 200)                      # float32: 5 MiB per volume, two slabs of 4 MiB at most


def oblique():
    a = np.deg2rad(25)
    return np.array([[0.8 * np.cos(a), -0.9 * np.sin(a), 0, 3.0], [0.8 * np.sin(a), 0.9 * np.cos(a), 0, -4.0],
                     [0, 0, 2.0, 7.0], [0, 0, 0, 1]])


def scene_cases(slicer_scene, names=("a", "b")):
    from fixtures_slicer import add_segmentation, add_volume

    from BackSplitSegmentLib.scene_cases import SceneCase

    cases = []
    for seed, name in enumerate(names):
        image = np.random.default_rng(seed).normal(60, 40, SHAPE).astype(np.float32)   # liver = image > 100
        volume = add_volume(slicer, image, oblique(), f"CT {name}")
        lesion = np.zeros(SHAPE, np.uint8)
        lesion[5:9, 20:30, 40:50] = 1
        node = add_segmentation(slicer, slicer_scene.scene, {"Lesion": lesion}, volume, f"Seg {name}")
        cases.append(SceneCase(name, volume, node))
    return cases


def files(root) -> dict:
    """Size of every file under the hand-over folder (the child removes folders while this runs)."""
    sizes = {}
    for path in Path(root).rglob("*.bin") if root is not None and Path(root).is_dir() else []:
        try:
            sizes[str(path.relative_to(root)).replace(".partial", "")] = path.stat().st_size
        except OSError:
            pass
    return sizes


def segment_count(case) -> int:
    return case.segmentation.GetSegmentation().GetNumberOfSegments()


def test_generate_hands_volumes_over_in_bounded_steps_with_the_segments_of_before(slicer_scene, tmp_path,
                                                                                    monkeypatch):
    from backsplit.io.handover import SLAB_BYTES
    from backsplit.io.readers import read_seg_nrrd
    from backsplit.supports.worker import GenerationProcess, GenerationRequest
    from BackSplitSegmentLib.generation_run import import_step, queue_events, start_generation
    from BackSplitSegmentLib.prediction_run import write_inputs
    from BackSplitSegmentLib.scene_nodes import segment_mask

    standin = str(write_standin(tmp_path / "bin"))
    cases = scene_cases(slicer_scene)
    # before: each case's volume written whole as NIfTI on the GUI thread, the child reading the files
    inputs = []
    for case in cases:
        (tmp_path / "before" / case.case_id).mkdir(parents=True)
        inputs.append([case.case_id, write_inputs(case.volume, [], tmp_path / "before" / case.case_id)])
    before = GenerationProcess(GenerationRequest(inputs, str(tmp_path / "before" / "out"), None, ["liver", "spleen"],
                                                 "cpu", executable=standin)).start()
    # now: read and written in steps of one slab at most (budget 0: one slab per step), the child taking each case
    job = start_generation(cases, classes=["liver", "spleen"], executable=standin, device="cpu", read_budget_s=0)
    pieces, counts, grown = [], [], []
    try:
        while True:
            on_disk, done, added = files(job.handover.root), job.handover.pieces, [segment_count(c) for c in cases]
            events = job.poll()
            queue_events(job, events)
            import_step(job)
            pieces.append(job.handover.pieces - done)
            counts.append(max(segment_count(c) - n for c, n in zip(cases, added)))
            after = files(job.handover.root)
            grown.append(sum(max(0, size - on_disk.get(name, 0)) for name, size in after.items()))
            if job.ended and not job.importing:
                queue_events(job, job.poll())
                if not job.importing:
                    break
            if not pieces[-1]:
                time.sleep(0.02)
        assert job.outcome() == ("finished", ""), "\n".join(job.process.log_lines[-20:])
    finally:
        job.close()
    assert before.wait(120) == 0, "\n".join(before.log_lines[-20:])
    assert max(pieces) == 1 and max(counts) == 1 and max(grown) <= SLAB_BYTES        # one bounded piece a step
    volume_bytes = int(np.prod(SHAPE)) * 4
    assert sum(pieces) >= 2 * len(cases) * -(-volume_bytes // SLAB_BYTES)          # read, then written, in slabs
    assert sorted(job.imported) == ["a", "b"] and not job.failed
    for case in cases:
        old = read_seg_nrrd(tmp_path / "before" / "out" / f"{case.case_id}.seg.nrrd", case.case_id)
        assert sorted(old.masks) == ["liver", "spleen"]
        for name in old.masks:
            now = segment_mask(case.segmentation, name, case.volume, case.case_id)
            assert np.array_equal(now, old.masks[name]), (case.case_id, name)
        assert np.count_nonzero(old.masks["liver"]) > 1000 and np.count_nonzero(old.masks["spleen"]) == 18
    assert not job.work_dir.exists() and not Path(job.handover.root).exists()


def make_section(slicer_scene, cases, tmp_path, monkeypatch):
    import tempfile

    from BackSplitSegmentLib.supports_section import SupportsSection

    monkeypatch.setenv("PATH", f"{write_standin(tmp_path / 'bin').parent}{os.pathsep}{os.environ['PATH']}")
    (tmp_path / "tmp").mkdir(exist_ok=True)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))      # to see what is left there
    ui = Widget()
    section = SupportsSection(ui, NS(cases=cases, refresh=lambda: None), Timer(), Timer(), lambda text: text)
    ui.supportsSourceComboBox.currentIndex = 1                          # the TotalSegmentator command
    ui.supportsDeviceComboBox.currentText = "cpu"
    ui.supportsClassesLineEdit.text = "liver, spleen"
    return section, ui


def tick_until(section, condition, limit=3000):
    while not condition() and limit:
        section.timer.timeout.emit()
        time.sleep(0.01)
        limit -= 1
    assert condition()


def test_cancel_and_scene_close_mid_handover_leave_generate_usable(gui, slicer_scene, tmp_path, monkeypatch):
    """Cancel while a case is being handed over: the status says cancelled, no dialog, the child gone, nothing left
    in the temporary folder. A scene close mid-way (what ``onSceneStartClose`` calls, then File > Close Scene):
    the same, and nothing is added to the new scene."""
    cases = scene_cases(slicer_scene)
    section, ui = make_section(slicer_scene, cases, tmp_path, monkeypatch)
    ui.supportsGenerateButton.clicked.emit(False)
    job = section.job
    tick_until(section, lambda: job.process is not None and job.handover.pieces >= 2)
    ui.supportsCancelButton.clicked.emit(False)
    section.timer.run()
    assert idle(ui.supportsGenerateButton, ui.supportsCancelButton) and section.job is None
    assert ui.supportsStatusLabel.text.startswith("Cancelled") and gui.dialogs() == []
    job.process.wait(30)
    assert not list((tmp_path / "tmp").iterdir()) and not job.imported

    ui.supportsGenerateButton.clicked.emit(False)                       # usable again: a second run
    job = section.job
    tick_until(section, lambda: job.process is not None and job.handover.pieces >= 2)
    section.action.finish("Stopped: the scene was closed.")             # BackSplitSegment.onSceneStartClose
    slicer_scene.scene.Clear(0)
    nodes = slicer_scene.scene.GetNumberOfNodes()
    assert idle(ui.supportsGenerateButton, ui.supportsCancelButton) and not section.timer.active
    assert section.job is None and ui.supportsStatusLabel.text == "Stopped: the scene was closed."
    job.process.wait(30)
    assert not list((tmp_path / "tmp").iterdir()) and slicer_scene.scene.GetNumberOfNodes() == nodes
    assert gui.dialogs() == []


def test_a_case_that_cannot_be_read_is_named_and_the_cases_before_it_keep_their_segments(gui, slicer_scene,
                                                                                        tmp_path, monkeypatch):
    """Case 'b' loses its image data after Generate started (the checks at the click passed): case 'a' is generated
    and added, then the run stops with the reason naming case 'b' and how to fix it; Generate usable again, the
    temporary folder empty. A case refused at the click (a transform) starts nothing."""
    cases = scene_cases(slicer_scene)
    section, ui = make_section(slicer_scene, cases, tmp_path, monkeypatch)
    ui.supportsGenerateButton.clicked.emit(False)
    cases[1].volume.SetAndObserveImageData(None)
    section.timer.run()
    assert idle(ui.supportsGenerateButton, ui.supportsCancelButton) and section.job is None
    text = ui.supportsStatusLabel.text
    assert text.startswith("Failed:") and "case 'b'" in text and "no image data" in text, text
    assert segment_count(cases[0]) == 3 and segment_count(cases[1]) == 1     # Lesion + liver, spleen; Lesion only
    assert not list((tmp_path / "tmp").iterdir())

    transform = slicer_scene.scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    cases[0].volume.SetAndObserveTransformNodeID(transform.GetID())
    ui.supportsGenerateButton.clicked.emit(False)
    assert idle(ui.supportsGenerateButton, ui.supportsCancelButton) and section.job is None
    assert len(gui.dialogs()) == 1 and "case 'a'" in gui.dialogs()[0] and "Harden transform" in gui.dialogs()[0]
    assert not list((tmp_path / "tmp").iterdir())


def test_a_sheared_volume_is_refused_at_the_click_as_before(slicer_scene):
    """The organ model's input is refused before anything starts where the NIfTI file TotalSegmentator is given
    would straighten it (what ``prediction_run.write_inputs`` refused when it wrote the volumes in the click)."""
    from fixtures_slicer import add_volume

    from backsplit.errors import InputError
    from BackSplitSegmentLib.generation_run import check_case
    from BackSplitSegmentLib.scene_cases import SceneCase

    tilt = np.deg2rad(15)
    ijk_to_ras = np.diag([0.8, 0.8, 2.5, 1.0])
    ijk_to_ras[:3, 2] = 2.5 * np.array([0, np.sin(tilt), np.cos(tilt)])
    volume = add_volume(slicer, np.zeros((8, 16, 16), np.int16), ijk_to_ras, "TiltedCT")
    segmentation = slicer_scene.scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Tilted segmentation")
    with pytest.raises(InputError, match=r"(?s)case 'tilted'.*shear"):
        check_case(SceneCase("tilted", volume, segmentation))
    with pytest.raises(InputError, match="case 'tilted'.*no segmentation"):
        check_case(SceneCase("tilted", volume, None))
