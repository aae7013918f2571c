"""Generated support structures in a real MRML scene (slicer-core): segments added to the case's node on the volume's
exact (oblique) grid, the user's segments untouched, one undo step per case, conflicts, the generation child process
with the stand-in TotalSegmentator (no weights can be downloaded here; see fixtures_supports.py), and the
TotalSegmentator extension (not installable here: its logic is replaced by a stand-in object that fills the
segmentation as the extension's ``process`` does)."""


import numpy as np
import pytest
from fixtures_slicer import add_volume
from fixtures_supports import write_standin

from backsplit.errors import InputError

SHAPE = (9, 12, 15)


def oblique_ijk_to_ras():
    a = np.deg2rad(35)
    return np.array([[0.7 * np.cos(a), -1.1 * np.sin(a), 0, 5.0], [0.7 * np.sin(a), 1.1 * np.cos(a), 0, -7.0],
                     [0, 0, 2.5, 11.0], [0, 0, 0, 1]])


def box(z, y, x):
    mask = np.zeros(SHAPE, bool)
    mask[z[0]:z[1], y[0]:y[1], x[0]:x[1]] = True
    return mask


def user_case(slicer, name="CT", image=None):
    from BackSplitSegmentLib.scene_cases import SceneCase

    image = image if image is not None else np.full(SHAPE, 40, np.int16)
    volume = add_volume(slicer, image, oblique_ijk_to_ras(), name)
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{name} segmentation")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    for seg_name, mask in (("Lesion", box((3, 5), (4, 6), (5, 7))), ("liver", box((1, 8), (2, 10), (2, 12)))):
        segment_id = node.GetSegmentation().AddEmptySegment(seg_name, seg_name, [0.9, 0.1, 0.1])
        slicer.util.updateSegmentBinaryLabelmapFromArray(mask.astype(np.uint8), node, segment_id, volume)
    return SceneCase(name, volume, node)


def names(node):
    segmentation = node.GetSegmentation()
    return [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]


def test_generated_segments_are_added_exactly_and_undone_in_one_step(slicer_scene):
    from BackSplitSegmentLib.scene_nodes import segment_mask
    from BackSplitSegmentLib.supports_scene import add_generated_segments, generated_segments, undo_last_case

    slicer, scene = slicer_scene.slicer, slicer_scene.scene
    case = user_case(slicer)
    before = {n: segment_mask(case.segmentation, n, case.volume, "c") for n in names(case.segmentation)}
    liver, spleen = box((0, 9), (0, 12), (0, 8)), box((6, 8), (8, 11), (10, 14))
    scene.SetUndoOn()
    added = add_generated_segments(case.segmentation, case.volume, {"liver": liver, "spleen": spleen},
                                   model="nnU-Net model /m", colors={"spleen": (0.1, 0.2, 0.3)},
                                   terminology={"spleen": "x~SCT^1^A~SCT^78961009^Spleen~^^~y~^^~^^"})
    assert added == {"liver": "liver (generated)", "spleen": "spleen"}
    assert names(case.segmentation) == ["Lesion", "liver", "liver (generated)", "spleen"]
    assert generated_segments(case.segmentation) == ["liver (generated)", "spleen"]
    assert np.array_equal(segment_mask(case.segmentation, "liver (generated)", case.volume, "c"), liver)  # oblique
    assert np.array_equal(segment_mask(case.segmentation, "spleen", case.volume, "c"), spleen)
    for name, mask in before.items():                                            # user segments untouched
        assert np.array_equal(segment_mask(case.segmentation, name, case.volume, "c"), mask)
    segmentation = case.segmentation.GetSegmentation()
    spleen_segment = segmentation.GetSegment(segmentation.GetSegmentIdBySegmentName("spleen"))
    assert np.allclose(spleen_segment.GetColor(), (0.1, 0.2, 0.3))
    import vtk

    value = vtk.mutable("")
    assert spleen_segment.GetTag("BackSplit.Model", value) and str(value) == "nnU-Net model /m"
    assert not case.segmentation.GetUndoEnabled()            # N10: scene undo is not touched (dead in stock Slicer)
    assert scene.GetNumberOfUndoLevels() == 0
    scene.SetUndoOff()
    assert undo_last_case(case.segmentation)                                      # the panel's own undo: one step
    assert names(case.segmentation) == ["Lesion", "liver"]
    for name, mask in before.items():
        assert np.array_equal(segment_mask(case.segmentation, name, case.volume, "c"), mask)
    assert not undo_last_case(case.segmentation)                                  # nothing left to undo
    add_generated_segments(case.segmentation, case.volume, {"spleen": spleen}, model="m")
    assert names(case.segmentation) == ["Lesion", "liver", "spleen"]
    assert undo_last_case(case.segmentation)
    assert names(case.segmentation) == ["Lesion", "liver"]


def test_undo_keeps_the_users_later_edits_and_forgets_closed_scenes(slicer_scene):
    """F5 (audit A4): the user's edit after a generation survives Undo last case (64 -> 32 voxels before the fix);
    after a scene close a new node that reuses the old node ID has nothing to undo; no module-level memory."""
    from BackSplitSegmentLib import supports_scene
    from BackSplitSegmentLib.scene_nodes import segment_mask
    from BackSplitSegmentLib.supports_scene import add_generated_segments, undo_last_case

    slicer, scene = slicer_scene.slicer, slicer_scene.scene
    case = user_case(slicer)
    add_generated_segments(case.segmentation, case.volume, {"kidney": box((0, 2), (0, 2), (0, 2))}, model="m")
    bigger = box((2, 7), (3, 8), (4, 9))                                          # the user corrects the lesion
    lesion_id = case.segmentation.GetSegmentation().GetSegmentIdBySegmentName("Lesion")
    slicer.util.updateSegmentBinaryLabelmapFromArray(bigger.astype(np.uint8), case.segmentation, lesion_id,
                                                     case.volume)
    assert undo_last_case(case.segmentation)
    assert names(case.segmentation) == ["Lesion", "liver"]
    assert np.array_equal(segment_mask(case.segmentation, "Lesion", case.volume, "c"), bigger)

    add_generated_segments(case.segmentation, case.volume, {"kidney": box((0, 2), (0, 2), (0, 2))}, model="m")
    old_id = case.segmentation.GetID()
    scene.Clear(0)                                                                # File > Close Scene
    reused = user_case(slicer, "CT2").segmentation
    assert reused.GetID() == old_id or scene.GetNodeByID(old_id) is not None      # an old ID is in use again
    node = scene.GetNodeByID(old_id)
    before = names(node)
    assert not undo_last_case(node)
    assert names(node) == before
    module_state = [k for k, v in vars(supports_scene).items()
                    if not k.startswith("__") and isinstance(v, (dict, list, set))]
    assert module_state == []                                                     # nothing kept across a close


def test_bad_masks_and_refused_names_add_nothing(slicer_scene):
    from BackSplitSegmentLib.supports_scene import add_generated_segments

    case = user_case(slicer_scene.slicer)
    with pytest.raises(InputError, match="has size"):
        add_generated_segments(case.segmentation, case.volume, {"x": np.zeros((2, 2, 2), bool)}, model="m")
    with pytest.raises(InputError, match="'LIVER' have the name of a segment"):
        add_generated_segments(case.segmentation, case.volume, {"LIVER": box((0, 1), (0, 1), (0, 1))}, model="m",
                               on_conflict="refuse")
    assert names(case.segmentation) == ["Lesion", "liver"]


def test_totalsegmentator_extension_is_asked_for_never_installed(slicer_scene):
    from BackSplitSegmentLib.supports_scene import run_totalsegmentator_extension, totalsegmentator_extension_logic

    slicer = slicer_scene.slicer
    with pytest.raises(InputError, match="TotalSegmentator extension is not installed.*Extensions Manager.*never "
                                         "installs it"):
        totalsegmentator_extension_logic()

    class ExtensionStandIn:
        """Does what TotalSegmentatorLogic.process does to the output node (the extension cannot run here)."""
        calls = []

        def process(self, volume, segmentation_node, fast, cpu, task, subset):
            self.calls.append((fast, cpu, task, subset))
            segment_id = segmentation_node.GetSegmentation().AddEmptySegment("kidney_right", "kidney_right")
            slicer.util.updateSegmentBinaryLabelmapFromArray(box((2, 6), (1, 5), (9, 14)).astype(np.uint8),
                                                             segmentation_node, segment_id, volume)

    case = user_case(slicer)
    logic = ExtensionStandIn()
    added = run_totalsegmentator_extension(case, subset=["kidney_right"], fast=True, cpu=True, logic=logic)
    assert added == {"kidney_right": "kidney_right"} and logic.calls == [(True, True, "total", ["kidney_right"])]
    assert names(case.segmentation) == ["Lesion", "liver", "kidney_right"]
    assert slicer_scene.scene.GetFirstNodeByName("__backsplit_totalsegmentator") is None


def test_generation_child_process_adds_segments_per_case(slicer_scene, tmp_path):
    from BackSplitSegmentLib.generation_run import run_to_end, start_generation
    from BackSplitSegmentLib.scene_nodes import segment_mask

    slicer = slicer_scene.slicer
    bright = np.full(SHAPE, 40, np.int16)
    bright[2:7, 3:9, 4:12] = 150
    cases = [user_case(slicer, "first", bright), user_case(slicer, "second", bright)]
    job = start_generation(cases, classes=["liver"], executable=str(write_standin(tmp_path / "bin")), device="cpu")
    try:
        messages = run_to_end(job)
        assert job.outcome() == ("finished", ""), "\n".join(job.process.log_lines[-20:])
    finally:
        job.close()
    assert sorted(job.imported) == ["first", "second"] and not job.failed, messages
    for case in cases:
        assert names(case.segmentation) == ["Lesion", "liver", "liver (generated)"]
        assert np.array_equal(segment_mask(case.segmentation, "liver (generated)", case.volume, "c"), bright > 100)
    assert not job.work_dir.exists()


def test_supports_section_follows_the_others_and_uses_only_widgets_of_the_ui():
    """The widget code cannot run without Qt: check it against the .ui (names used, section after Cases)."""
    import importlib
    import re
    import xml.etree.ElementTree as ET
    from pathlib import Path

    pytest.importorskip("slicer")
    repo = Path(__file__).resolve().parent.parent
    tree = ET.parse(repo / "BackSplitSegment" / "Resources" / "UI" / "BackSplitSegment.ui")
    widgets = {w.get("name") for w in tree.iter("widget")}
    source = (repo / "BackSplitSegment" / "BackSplitSegmentLib" / "supports_section.py").read_text(encoding="utf-8")
    used = set(re.findall(r"self\.ui\.(\w+)", source))
    assert used and not used - widgets, sorted(used - widgets)
    sections = [w.get("name") for w in tree.iter("widget") if w.get("class") == "ctkCollapsibleButton"]
    assert sections.index("casesCollapsibleButton") < sections.index("supportsCollapsibleButton") < \
        sections.index("classesCollapsibleButton")        # in the order of the work: its output feeds the lists
    assert "SupportsSection(self.ui, self._caseList, qt.QTimer(), qt.QTimer()," in \
        (repo / "BackSplitSegment" / "BackSplitSegment.py").read_text(encoding="utf-8")   # handed what it uses
    for name in ("BackSplitSegmentLib.supports_scene", "BackSplitSegmentLib.supports_section"):
        importlib.import_module(name)


def old_import(slicer, node, volume, masks, colors):
    """The import as it was before the stepped one (``updateSegmentBinaryLabelmapFromArray`` per class: Slicer's own
    ``CreateAndAddLabelVolume`` + ``ImportLabelmapToSegmentationNode``, util.py v5.10.0:2196-2240)."""
    for name, mask in masks.items():
        segment_id = node.GetSegmentation().AddEmptySegment(name, name, list(colors[name]))
        slicer.util.updateSegmentBinaryLabelmapFromArray(mask.astype(np.uint8), node, segment_id, volume)


@pytest.mark.parametrize("transformed", [False, True], ids=["crop added as it is", "under a transform: as before"])
def test_generated_segments_are_added_one_class_per_step_identical_to_before(slicer_scene, tmp_path, transformed):
    """N2: a finished case's classes (cropped in the child: ``write_class_crops``) are added one per
    ``import_step``, each step adding at most one segment; the masks on the volume, names, colours and tags are
    those of the import before (whole-volume ``updateSegmentBinaryLabelmapFromArray`` per class)."""
    from backsplit.io.handover import write_class_crops
    from backsplit.runtime.progress import ProgressEvent
    from BackSplitSegmentLib.generation_run import GenerationJob, import_step, queue_events
    from BackSplitSegmentLib.scene_nodes import segment_colors, segment_mask, volume_geometry
    from BackSplitSegmentLib.supports_scene import GENERATION_TAG, segment_tag

    slicer, scene = slicer_scene.slicer, slicer_scene.scene
    case, reference = user_case(slicer, "CT"), user_case(slicer, "reference")
    if transformed:
        transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
        case.segmentation.SetAndObserveTransformNodeID(transform.GetID())
        reference.segmentation.SetAndObserveTransformNodeID(transform.GetID())
    masks = {"spleen": box((6, 8), (8, 11), (10, 14)), "kidney": box((0, 9), (0, 12), (0, 3)),
             "empty": np.zeros(SHAPE, bool), "edge": box((8, 9), (11, 12), (14, 15))}
    colors = {n: (0.1 * i, 0.2, 0.3) for i, n in enumerate(masks)}
    crops = write_class_crops(tmp_path / "CT.crops", masks, volume_geometry(case.volume), colors, model="m")
    job = GenerationJob(process=None, cases={"CT": case}, work_dir=tmp_path / "work")
    queue_events(job, [ProgressEvent("generate", data={"case": "CT", "status": "done", "file": "unused",
                                                        "crops": str(crops)})])
    counts, steps = [len(names(case.segmentation))], 0
    while job.importing:
        import_step(job)
        steps += 1
        counts.append(len(names(case.segmentation)))
    assert steps == 1 + len(masks) + 1 and max(b - a for a, b in zip(counts, counts[1:])) == 1   # one class a step
    assert job.imported == {"CT": {n: n for n in masks}} and not job.failed
    old_import(slicer, reference.segmentation, reference.volume, masks, colors)
    assert names(case.segmentation) == names(reference.segmentation)
    for name, mask in masks.items():
        assert np.array_equal(segment_mask(case.segmentation, name, case.volume, "c"), mask), name
        assert np.array_equal(segment_mask(case.segmentation, name, case.volume, "c"),
                              segment_mask(reference.segmentation, name, reference.volume, "c")), name
    assert segment_colors(case.segmentation) == segment_colors(reference.segmentation)
    segmentation = case.segmentation.GetSegmentation()
    generations = {segment_tag(segmentation.GetSegment(n), GENERATION_TAG) for n in masks}
    assert len(generations) == 1 and "" not in generations
    stored = segmentation.GetSegment("spleen").GetRepresentation(
        slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName())
    assert (tuple(stored.GetExtent()) == (10, 13, 8, 10, 6, 7)) is not transformed   # the crop, no volume pass


def test_scene_close_mid_import_stops_that_case_and_leaves_the_job_usable(slicer_scene, tmp_path):
    """N8 mid-way: the scene closes after two classes of a case; the next step says why, adds nothing to the new
    scene and raises nothing; the queued case after it is refused the same way."""
    from backsplit.io.handover import write_class_crops
    from backsplit.runtime.progress import ProgressEvent
    from BackSplitSegmentLib.generation_run import GenerationJob, import_step, queue_events
    from BackSplitSegmentLib.scene_nodes import volume_geometry

    slicer, scene = slicer_scene.slicer, slicer_scene.scene
    cases = {c: user_case(slicer, c) for c in ("one", "two")}
    masks = {f"organ {i}": box((i, i + 2), (1, 4), (2, 6)) for i in range(4)}
    events = [ProgressEvent("generate", data={"case": c, "status": "done", "file": "unused", "crops": str(
        write_class_crops(tmp_path / c, masks, volume_geometry(cases[c].volume)))}) for c in cases]
    job = GenerationJob(process=None, cases=cases, work_dir=tmp_path / "work")
    queue_events(job, events)
    for _ in range(3):                                          # the index, then two classes
        import_step(job)
    assert len(names(cases["one"].segmentation)) == 4
    scene.Clear(0)
    after = scene.GetNumberOfNodes()
    messages = []
    while job.importing:
        messages += import_step(job)
    assert messages == ["case 'one': the scene was closed before its generated segments could be added",
                        "case 'two': the scene was closed before its generated segments could be added"]
    assert sorted(job.failed) == ["one", "two"] and job.imported == {} and scene.GetNumberOfNodes() == after


def test_suggest_reads_the_scene_in_steps_and_ranks_in_a_child_as_before(slicer_scene, monkeypatch):
    """N2: *Suggest* reads each case in short steps (one slab each: counted) and ranks them in a child process; the
    report equals the one computed here from ``case.load()`` (the path before). Cancel mid-way ends it as cancelled
    with its hand-over folder gone."""
    import os

    import BackSplitSegmentLib.case_read_steps as read_steps
    from backsplit.supports.suggest import SuggestOptions, suggest
    from backsplit.supports.suggest_worker import report_from_json
    from BackSplitSegmentLib.supports_scene import start_suggest, suggest_cases_from_scene

    monkeypatch.setattr(read_steps, "SLAB_BYTES", 1)             # one slice per step
    slicer = slicer_scene.slicer
    cases = [user_case(slicer, "first"), user_case(slicer, "second")]
    options = SuggestOptions("Lesion", neighbour_mm=20.0, min_case_share=0.25)
    job = start_suggest(cases, options, read_budget_s=0.0).run_to_end()
    assert job.state == "finished", job.message
    assert job.handover.child.pid != os.getpid() and job.handover.pieces >= 2 * SHAPE[0]
    assert report_from_json(job.data["report"]) == suggest(suggest_cases_from_scene(cases), options)
    job = start_suggest(cases, options, read_budget_s=0.0)
    for _ in range(3):
        job.step()
    job.cancel()
    job.run_to_end()
    assert job.state == "cancelled" and not job.handover.root.exists()
    with pytest.raises(InputError, match="add cases first"):
        start_suggest([], options)
