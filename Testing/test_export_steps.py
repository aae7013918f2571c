"""The stepwise scene export (``case_read_steps`` + ``ExportRun``) on real MRML scenes (slicer-core): the same masks,
files, checks and errors as the one-shot path (``case_from_scene`` / ``export_dataset``), nothing left in the scene.
Tiny steps are forced (one slice per slab, no time budget) so that every case is read in many steps."""

import numpy as np
import pytest
import SimpleITK as sitk
from fixtures_slicer import add_segmentation, add_volume
from test_scene_cases import masks_for, node_counts, oblique_ijk_to_ras

from backsplit.datasets.export import ExportRequest, export_dataset
from backsplit.labels.context import ContextSpec


@pytest.fixture
def tiny_slabs(monkeypatch):
    import BackSplitSegmentLib.case_read_steps as steps

    monkeypatch.setattr(steps, "SLAB_BYTES", 1)     # one slice per slab; with budget 0, one slab per step


def read_stepwise(scene_case):
    from BackSplitSegmentLib.case_read_steps import read_case_steps

    reader, count = read_case_steps(scene_case, budget_s=0.0), 0
    while True:
        try:
            next(reader)
            count += 1
        except StopIteration as stop:
            return stop.value, count


def assert_same_case(stepwise, one_shot):
    assert stepwise.case_id == one_shot.case_id and stepwise.description == one_shot.description
    assert len(stepwise.channels) == len(one_shot.channels)
    for a, b in zip(stepwise.channels, one_shot.channels):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert stepwise.geometry.differences(one_shot.geometry) == []
    assert list(stepwise.segments) == list(one_shot.segments)
    for name, mask in one_shot.segments.items():
        assert stepwise.segments[name].dtype == bool and np.array_equal(stepwise.segments[name], mask), name
    assert stepwise.colors == one_shot.colors and stepwise.terminology == one_shot.terminology


def add_labelmap_segment(slicer, segmentation_node, name, array, ijk_to_ras, extent_start):
    """A segment given as its own binary labelmap (k, j, i) whose index (0, 0, 0) is ``extent_start`` (i, j, k)."""
    import vtk

    image = slicer.vtkOrientedImageData()
    start = list(extent_start)
    image.SetExtent(start[0], start[0] + array.shape[2] - 1, start[1], start[1] + array.shape[1] - 1,
                    start[2], start[2] + array.shape[0] - 1)
    image.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    matrix = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            matrix.SetElement(r, c, ijk_to_ras[r, c])
    image.SetImageToWorldMatrix(matrix)
    from vtk.util.numpy_support import vtk_to_numpy

    vtk_to_numpy(image.GetPointData().GetScalars())[:] = array.astype(np.uint8).ravel()
    segment = slicer.vtkSegment()
    segment.SetName(name)
    segment.AddRepresentation(slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName(),
                              image)
    segmentation_node.GetSegmentation().AddSegment(segment, name)


def test_stepwise_masks_equal_slicers_export_on_oblique_and_other_grids(slicer_scene, tiny_slabs):
    from BackSplitSegmentLib.case_read_steps import labelmap_on_volume_grid
    from BackSplitSegmentLib.scene_cases import SceneCase

    slicer, scene = slicer_scene.slicer, slicer_scene.scene
    shape = (11, 14, 17)
    image = np.random.default_rng(1).normal(40, 10, shape).astype(np.int16)
    ijk_to_ras = oblique_ijk_to_ras()
    volume = add_volume(slicer, image, ijk_to_ras, "oblique")
    pet = add_volume(slicer, np.random.default_rng(2).random(shape).astype(np.float32), ijk_to_ras, "PET")
    masks = masks_for(shape)                                   # overlapping: two layers
    masks["Cyst"] = np.zeros(shape, bool)
    masks["Cyst"][8:10, 10:13, 1:3] = True                    # apart from the others: may share their layer
    masks["Empty"] = np.zeros(shape, bool)
    on_grid = add_segmentation(slicer, scene, masks, volume, "drawn on the volume")
    on_grid.GetSegmentation().CollapseBinaryLabelmaps(False)  # shared layers, label values 1, 2, ...
    big = np.zeros((shape[0] + 5, shape[1] + 2, shape[2] + 4), bool)
    big[0:4, 0:3, :] = True                                    # partly outside the volume (negative indices)
    big[-3:, -2:, -3:] = True                                  # partly beyond its end
    add_labelmap_segment(slicer, on_grid, "Beyond", big, ijk_to_ras, (-2, -1, -3))
    # A segmentation on another (coarser, shifted, turned) grid: Slicer resamples it.
    other = oblique_ijk_to_ras(spacing=(1.7, 2.1, 3.0), origin=(10.0, -31.0, 2.0), degrees=31.0)
    coarse = add_volume(slicer, np.zeros((6, 8, 9), np.int16), other, "coarse")
    blob = np.zeros((6, 8, 9), bool)
    blob[1:5, 2:6, 2:7] = True
    elsewhere = add_segmentation(slicer, scene, {"Organ": blob, "Lesion": blob & (np.arange(9) > 4)}, coarse,
                                 "drawn on another grid")

    segmentation = on_grid.GetSegmentation()
    labels = {segmentation.GetNthSegment(i).GetName(): segmentation.GetNthSegment(i).GetLabelValue()
              for i in range(segmentation.GetNumberOfSegments())}
    assert max(labels.values()) > 1                           # the shared-layer case is really exercised
    before = node_counts(scene)
    for segmentation_node, extra in ((on_grid, [pet]), (elsewhere, [])):
        case = SceneCase(f"case {segmentation_node.GetName()}", volume, segmentation_node, extra)
        parts, steps = read_stepwise(case)
        assert steps > shape[0]                                # the volume copied slab by slab
        assert_same_case(parts.assemble(), case.load())
        routes = {piece.name: piece.route for piece in parts.pieces}
        expected = "labelmap" if segmentation_node is on_grid else "slicer export"
        assert set(routes.values()) == {expected}, routes
    assert node_counts(scene) == before                        # nothing left behind by either route
    beyond = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("Beyond"))
    _, own, into = labelmap_on_volume_grid(on_grid, beyond, volume)
    assert into == (slice(0, 11), slice(0, 14), slice(0, 17)) and own[0] == slice(3, 14)
    # Only some segments, in the order asked; a missing one fails with the same error as the one-shot path.
    case = SceneCase("some", volume, on_grid, segment_names=["Lesion", "Beyond"])
    assert_same_case(read_stepwise(case)[0].assemble(), case.load())
    from backsplit.errors import InputError

    with pytest.raises(InputError, match=r"case 'x', segment 'Kidney'.*no such segment"):
        read_stepwise(SceneCase("x", volume, on_grid, segment_names=["Kidney"]))


def test_a_volume_edited_between_steps_is_read_again(slicer_scene, tiny_slabs):
    from BackSplitSegmentLib.case_read_steps import read_case_steps
    from BackSplitSegmentLib.scene_cases import SceneCase

    slicer, scene = slicer_scene.slicer, slicer_scene.scene
    volume = add_volume(slicer, np.zeros((6, 5, 4), np.int16), np.eye(4), "edited")
    segmentation = add_segmentation(slicer, scene, {"Lesion": np.ones((6, 5, 4), bool)}, volume)
    reader = read_case_steps(SceneCase("c", volume, segmentation), budget_s=0.0)
    for _ in range(4):
        next(reader)                                           # part of the volume copied
    array = slicer.util.arrayFromVolume(volume)
    array[:] = 7
    slicer.util.arrayFromVolumeModified(volume)
    while True:
        try:
            next(reader)
        except StopIteration as stop:
            parts = stop.value
            break
    assert (parts.channels[0] == 7).all()                      # not half old, half new


def exported_arrays(dataset_dir):
    found = {}
    for path in sorted(dataset_dir.rglob("*.nii.gz")):
        found[str(path.relative_to(dataset_dir))] = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    return found


def scene_cases_for_export(slicer, scene, count=2):
    from BackSplitSegmentLib.scene_cases import SceneCase

    cases = []
    for index in range(count):
        shape = (9, 10 + index, 12)
        volume = add_volume(slicer, np.full(shape, index + 1, np.int16), oblique_ijk_to_ras(degrees=10.0 * index),
                            f"case {index}")
        segmentation = add_segmentation(slicer, scene, masks_for(shape), volume, f"case {index} segmentation")
        cases.append(SceneCase(f"case {index}", volume, segmentation))
    return cases


def exported_bytes(dataset_dir):
    """Every file of a dataset, as bytes; dataset.json with its times masked (the one thing that differs)."""
    import re

    found = {}
    for path in sorted(p for p in dataset_dir.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.name == "dataset.json":
            data = re.sub(rb'"\d{4}-\d\d-\d\dT[0-9:]+[+-]\d{4}"', b'"TIME"', data)
        found[str(path.relative_to(dataset_dir))] = data
    return found


def test_export_run_writes_what_the_one_shot_export_writes(slicer_scene, tmp_path, tiny_slabs, monkeypatch):
    """Byte for byte the files of ``export_dataset``; the engine runs in a child process (no thread of this
    process), the GUI side in pieces of at most one slab each (counted, no clock)."""
    import os
    import threading

    import backsplit.io.handover as handover
    from BackSplitSegmentLib.export_run import ExportRun

    monkeypatch.setattr(handover, "SLAB_BYTES", 256)       # at most 256 bytes written for the child per step
    slicer, scene = slicer_scene.slicer, slicer_scene.scene
    cases = scene_cases_for_export(slicer, scene)
    def request(out):
        return ExportRequest(out, 511, "Steps", ["lesion"], ["organ"], context=ContextSpec("rings", (2.0, 4.0)))
    before = node_counts(scene)
    threads = {t.name for t in threading.enumerate()}
    run = ExportRun([c.source() for c in cases], request(tmp_path / "steps"), read_budget_s=0.0)
    messages = []
    step = run.step()
    while not step.done:
        messages.append(step.message)
        step = run.step(wait=0.01)
    assert step.state == "finished", step.message
    assert run.handover.child.pid != os.getpid() and run.handover.child.returncode == 0
    assert not {t.name for t in threading.enumerate()} - threads - {"backsplit-child-reader"}
    assert not [t for t in threading.enumerate() if t.name == "backsplit-export"]
    assert any("reading case 'case 1': segment 'Organ'" in m for m in messages)
    assert any(m.startswith("handing case 'case 1'") for m in messages)
    written = sum(c.volume.GetImageData().GetNumberOfPoints() * 2 for c in cases)   # int16 voxels, at least
    assert run.handover.pieces >= written // 256                # each step copied or wrote one small slab
    one_shot = export_dataset([c.source() for c in cases], request(tmp_path / "one_shot"))
    assert node_counts(scene) == before
    for stepped_dir, reference_dir in ((step.result.dataset_dir, one_shot.dataset_dir),
                                       (step.result.binary_dataset_dir, one_shot.binary_dataset_dir)):
        stepwise, reference = exported_bytes(stepped_dir), exported_bytes(reference_dir)
        assert list(stepwise) == list(reference) and len(reference) >= 5
        assert [n for n in reference if stepwise[n] != reference[n]] == []
    assert step.result.case_ids == one_shot.case_ids and "Cases: 2 (0 negative)" in step.message
    assert not list((tmp_path / "steps").glob(".backsplit-*"))     # staging removed
    assert not run.handover.root.exists()                            # the hand-over folder too


def test_export_run_closed_mid_way_writes_nothing_and_a_new_export_runs(slicer_scene, tmp_path, tiny_slabs):
    """A scene close (the panel's ``PanelAction.finish`` calls ``close()``, which never waits) mid-way: the child
    ends by itself, nothing is written, the hand-over folder is gone; the next export works (the panel is usable).
    A failure found by the child (the dataset id exists) is a user's error without a traceback."""
    from BackSplitSegmentLib.export_run import ExportRun

    slicer, scene = slicer_scene.slicer, slicer_scene.scene
    cases = scene_cases_for_export(slicer, scene, count=3)
    run = ExportRun([c.source() for c in cases], ExportRequest(tmp_path / "c", 514, "Close", ["lesion"], ["organ"]),
                    read_budget_s=0.0)
    step = run.step()
    while not step.message.startswith("reading case 'case 1'"):
        step = run.step(wait=0.01)
    run.close()                                                # the panel's on_idle at StartCloseEvent
    scene.Clear(0)
    child = run.handover.child
    assert child.wait(timeout=60) == 130                        # cancelled, by itself
    assert not [p for p in (tmp_path / "c").iterdir()] and not run.handover.root.exists()
    cases = scene_cases_for_export(slicer, scene, count=1)
    request = ExportRequest(tmp_path / "c", 514, "Close", ["lesion"], ["organ"])
    assert ExportRun([c.source() for c in cases], request).run_to_end().state == "finished"
    step = ExportRun([c.source() for c in cases], request).run_to_end()
    assert step.state == "failed" and step.expected and "dataset id 514 already exists" in step.message


def test_export_run_failures_and_cancel_write_nothing(slicer_scene, tmp_path):
    from BackSplitSegmentLib.export_run import ExportRun
    from BackSplitSegmentLib.scene_cases import SceneCase

    slicer, scene = slicer_scene.slicer, slicer_scene.scene
    cases = scene_cases_for_export(slicer, scene, count=3)
    before = node_counts(scene)
    broken = cases[:1] + [SceneCase("case x", cases[1].volume, cases[1].segmentation, segment_names=["Kidney"])]
    step = ExportRun([c.source() for c in broken], ExportRequest(tmp_path / "a", 512, "Fail", ["lesion"], ["organ"])) \
        .run_to_end()
    assert step.state == "failed" and step.expected
    assert "case 'case x'" in step.message and "segment 'Kidney'" in step.message and "no such segment" in step.message
    assert not (tmp_path / "a").exists() or not [p for p in (tmp_path / "a").iterdir()]
    run = ExportRun([c.source() for c in cases], ExportRequest(tmp_path / "b", 513, "Cancel", ["lesion"], ["organ"]),
                    read_budget_s=0.0)
    step = run.step()
    while not step.done:
        if step.message.startswith("reading case 'case 1'"):
            run.cancel()
        step = run.step(wait=0.01)
    assert step.state == "cancelled" and "nothing was written" in step.message
    assert not [p for p in (tmp_path / "b").iterdir()]
    assert node_counts(scene) == before


def test_segmentation_loaded_from_file_reads_its_labelmaps_directly(slicer_scene, tmp_path):
    """The demo sample as Sample Data / drag and drop load it (.seg.nrrd, layers cropped to their extent)."""
    from BackSplitSegmentLib.demo_scene import demo_sample_files
    from BackSplitSegmentLib.scene_cases import scene_pairings

    (image, seg_file), = demo_sample_files(tmp_path, count=1)
    slicer_scene.logics["volumes"].AddArchetypeVolume(str(image), "kits23 CT", 0)
    slicer_scene.logics["segmentations"].LoadSegmentationFromFile(str(seg_file), False)
    (case,), _ = scene_pairings(slicer_scene.scene)
    parts, _ = read_stepwise(case)
    assert {piece.route for piece in parts.pieces} == {"labelmap"}
    assert_same_case(parts.assemble(), case.load())


def test_handover_files_give_the_same_case_and_cancel_ends_the_wait(tmp_path, monkeypatch):
    """``backsplit.io.handover``: every dtype, mask and layer comes back byte for byte, written in slabs (one per
    step with no time budget); the child's wait ends with CancelledError once the parent asks it to stop."""
    import copy

    import backsplit.io.handover as handover
    from backsplit.errors import CancelledError
    from backsplit.io.geometry import Geometry

    monkeypatch.setattr(handover, "SLAB_BYTES", 64)
    rng = np.random.default_rng(3)
    shape = (5, 6, 7)
    layer = rng.integers(0, 3, (2, 3, 4)).astype(np.uint8)
    parts = handover.CaseParts(
        "c", [rng.normal(size=shape).astype(np.float32), rng.integers(-9, 9, shape).astype(np.int16)],
        Geometry.create((0.7, 1.1, 2.5), (1.5, -2.0, 3.25), None, shape),
        [handover.SegmentPiece("full", mask=rng.random(shape) > 0.5, route="slicer export"),
         handover.SegmentPiece("layered", layer=0, label_value=2, slices=(slice(1, 3), slice(2, 5), slice(0, 4)))],
        [layer], {"full": (0.1, 0.2, 0.3)}, {"full": "SCT^123^x"}, "case 'c'")
    expected = copy.deepcopy(parts).assemble()
    steps = list(handover.write_parts_steps(parts, tmp_path, 0, budget_s=0.0))
    assert len(steps) >= sum(a.nbytes for a in parts.channels) // 64        # one slab of 64 bytes per step
    events = []
    case = handover.HandedCase("c", "case 'c'", 0, tmp_path, events.append).load()
    assert [e.data for e in events] == [{"want": 0}, {"took": 0}] and not handover.case_folder(tmp_path, 0).exists()
    for a, b in zip(case.channels, expected.channels):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    assert case.geometry == expected.geometry and list(case.segments) == list(expected.segments)
    assert all(np.array_equal(case.segments[n], expected.segments[n]) for n in expected.segments)
    assert (case.colors, case.terminology, case.description) == (expected.colors, expected.terminology, "case 'c'")
    handover.request_cancel(tmp_path)
    with pytest.raises(CancelledError):
        handover.HandedCase("d", "case 'd'", 1, tmp_path, events.append).load()


def test_a_full_temporary_folder_mid_hand_over_is_a_users_error_naming_the_case(slicer_scene, tmp_path):
    """The hand-over write fails as on a full disk: a real EFBIG from the kernel (``RLIMIT_FSIZE`` of this process,
    set after the child started so that it does not inherit it; SIGXFSZ ignored, as the write then fails with an
    OSError). The export fails as a user's error naming the case and the temporary folder, writes nothing and leaves
    no hand-over folder."""
    import resource
    import signal

    from BackSplitSegmentLib.export_run import ExportRun
    from BackSplitSegmentLib.scene_cases import SceneCase

    slicer, scene = slicer_scene.slicer, slicer_scene.scene
    shape = (40, 64, 64)                                        # 320 kB of int16 voxels: beyond the limit below
    volume = add_volume(slicer, np.zeros(shape, np.int16), oblique_ijk_to_ras(), "big")
    case = SceneCase("big", volume, add_segmentation(slicer, scene, masks_for(shape), volume, "big segmentation"))
    run = ExportRun([case.source()], ExportRequest(tmp_path / "out", 518, "Full", ["lesion"], ["organ"]))
    step = run.step()                                           # the child starts (its request file is written)
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, limits[1]))
    try:
        while not step.done and run.handover.read_error is None:
            step = run.step(wait=0.01)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    step = run.run_to_end()
    assert step.state == "failed" and step.expected, step.message
    assert "case 'big'" in step.message and "free space" in step.message and str(run.handover.root) in step.message
    assert "(None)" not in step.message                           # numpy's short-write OSError has no strerror
    assert not run.handover.root.exists() and not list((tmp_path / "out").glob("*"))
