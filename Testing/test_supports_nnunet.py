"""A real (tiny, CPU-trained) nnU-Net model as organ model: `backsplit supports generate` over lesion-only cases
(segments on each image grid, oblique and flipped included, names and colours from the model, user files
unchanged), plain nnU-Net folders, bad input, and the whole path a lesion-only user takes, on the command line and
in the module logic: generate supports -> suggest -> accept -> export a BackSplit dataset."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures_data import make_case, write_case_files
from fixtures_supports import write_lesion_only_cases

from backsplit.cli import main
from backsplit.errors import InputError
from backsplit.io.geometry import Geometry
from backsplit.io.readers import cases_from_folder, read_seg_nrrd
from backsplit.supports.generate import GenerateRequest, generate_supports, read_segment_tags
from backsplit.supports.runners import GENERATED_TAG, MODEL_TAG, NnUNetModelRunner


@pytest.fixture
def organ_model(request) -> Path:
    """The tiny model of fixtures_nnunet.py (trained once per session), or a copy of it named by
    BACKSPLIT_TEST_ORGAN_MODEL (to rerun these tests without training again)."""
    given = os.environ.get("BACKSPLIT_TEST_ORGAN_MODEL")
    return Path(given) if given else request.getfixturevalue("tiny_model_dir")


def digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def flipped_copy(case, case_id):
    """The same physical image stored with the x and z axes reversed (another orientation, same voxels)."""
    g = case.geometry
    far = np.asarray(g.origin) + g.direction_matrix @ (np.diag(g.spacing) @ np.array([g.shape[2] - 1, 0,
                                                                                      g.shape[0] - 1]))
    direction = g.direction_matrix @ np.diag([-1.0, 1.0, -1.0])
    flipped = Geometry.create(g.spacing, far, direction.ravel(), g.shape)
    copy = make_case(case_id, shape=g.shape)
    copy.geometry = flipped
    copy.channels = [c[::-1, :, ::-1].copy() for c in case.channels]
    copy.segments = {n: m[::-1, :, ::-1].copy() for n, m in case.segments.items()}
    return copy


def test_generate_cli_suggest_accept_export_end_to_end(tmp_path, organ_model):
    cases_dir = tmp_path / "cases"
    cases = write_lesion_only_cases(cases_dir, n=2)             # case1 oblique; case0flip: case0 stored flipped
    twin = flipped_copy(cases[0], "case0flip")
    write_case_files(cases_dir, twin)
    before = digest(cases_dir)
    out = tmp_path / "generated"
    assert main(["supports", "generate", "--folder", str(cases_dir), "--model", str(organ_model), "--classes",
                 "Organ,Vessel", "--out", str(out), "--device", "cpu", "--no-mirroring", "--quiet"]) == 0
    assert digest(cases_dir) == before                                          # the user's files unchanged
    manifest = json.loads((organ_model / "backsplit_model.json").read_text(encoding="utf-8"))
    colors = {c["name"]: tuple(c["color"]) for c in manifest["schema"]["supports"] + manifest["schema"]["targets"]}
    generated = {}
    for case in cases + [twin]:
        content = read_seg_nrrd(out / f"{case.case_id}.seg.nrrd", case.case_id)
        assert content.geometry.differences(case.geometry) == []                # on the image grid
        assert list(content.masks) == ["Lesion", "Vessel", "Organ"]             # the model's order
        assert np.array_equal(content.masks["Lesion"], case.segments["Lesion"])
        for name in ("Organ", "Vessel"):
            assert content.colors[name] == pytest.approx(colors[name], abs=1e-4)
        tags = read_segment_tags(out / f"{case.case_id}.seg.nrrd")
        assert tags["Organ"][GENERATED_TAG] == "1" and str(organ_model.resolve()) in tags["Organ"][MODEL_TAG]
        generated[case.case_id] = content.masks
    # the same physical image stored the other way round gives the same segments (lossless reorientation)
    for name in ("Organ", "Vessel"):
        assert np.array_equal(generated["case0flip"][name][::-1, :, ::-1], generated["case0"][name])

    report_file = tmp_path / "suggest.json"
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(["supports", "suggest", "--cases", str(out / "cases.csv"), "--target", "Lesion", "--json",
                     "--min-share", "0.25", "--distance", "20"]) == 0
    report = json.loads(buffer.getvalue())
    report_file.write_text(buffer.getvalue())
    assert report["cases"] == 3 and report["target_cases"] == 3
    assert {c["name"] for c in report["candidates"]} == {"Organ", "Vessel"}
    accepted = report["accepted"]
    assert accepted, report["candidates"]
    assert main(["export", "--cases", str(out / "cases.csv"), "--targets", "Lesion", "--supports", ",".join(accepted),
                 "--missing-as-absent", "--out", str(tmp_path / "raw"), "--id", "61", "--name", "Generated",
                 "--quiet"]) == 0
    dataset = json.loads((tmp_path / "raw" / "Dataset061_Generated" / "dataset.json").read_text(encoding="utf-8"))
    assert list(dataset["labels"]) == ["background", "Lesion", *accepted]
    assert (tmp_path / "raw" / "Dataset062_GeneratedBinary" / "dataset.json").is_file()


def test_plain_nnunet_folders_and_bad_model_input(tmp_path, organ_model):
    plain = tmp_path / "Dataset011_Tiny" / organ_model.name
    shutil.copytree(organ_model, plain, ignore=shutil.ignore_patterns("backsplit_model.json"))
    runner = NnUNetModelRunner(plain, classes=["organ"])                     # nnU-Net's own folder, no manifest
    assert runner.info.manifest["variant"] == "external" and runner.info.configuration == "2d"
    assert runner.class_names() == ["Organ"] and runner.info.manifest["folds"] == ["all"]
    with pytest.raises(InputError, match="holds model folders: BackSplitTrainer__nnUNetPlans__2d"):
        NnUNetModelRunner(plain.parent)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="not an nnU-Net v2 model folder"):
        NnUNetModelRunner(tmp_path / "empty")
    with pytest.raises(InputError, match=r"has no class 'Liver'; its classes are: Lesion, Vessel, Organ"):
        NnUNetModelRunner(organ_model, classes=["Liver"])
    write_case_files(tmp_path / "two", make_case("mc", channels=2))
    with pytest.raises(InputError, match="case 'mc'.*2 image channel.*takes 1"):
        generate_supports(cases_from_folder(tmp_path / "two"), runner, GenerateRequest(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_module_logic_end_to_end_in_the_scene(slicer_scene, tmp_path, organ_model):
    """Scene cases with only the lesion -> organ model in the child process, the volumes handed over in timer steps
    -> segments added (the same as the path before, which wrote each volume whole as NIfTI) -> suggest -> accept
    -> export through the scene adapter."""
    from fixtures_slicer import add_volume

    from backsplit.datasets.export import ExportRequest, export_dataset
    from backsplit.supports.suggest import SuggestOptions, suggest
    from backsplit.supports.worker import GenerationProcess, GenerationRequest
    from BackSplitSegmentLib.generation_run import run_to_end, start_generation
    from BackSplitSegmentLib.prediction_run import write_inputs
    from BackSplitSegmentLib.scene_cases import SceneCase
    from BackSplitSegmentLib.scene_nodes import segment_mask
    from BackSplitSegmentLib.supports_scene import suggest_cases_from_scene

    slicer = slicer_scene.slicer
    cases = []
    for i in range(2):
        case = make_case(f"s{i}", shape=(16, 32, 32), seed=20 + i)
        volume = add_volume(slicer, case.channels[0], case.geometry.ijk_to_ras(), f"s{i}")
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"s{i} segmentation")
        node.SetReferenceImageGeometryParameterFromVolumeNode(volume)
        segment_id = node.GetSegmentation().AddEmptySegment("Lesion", "Lesion")
        slicer.util.updateSegmentBinaryLabelmapFromArray(case.segments["Lesion"].astype(np.uint8), node, segment_id,
                                                         volume)
        cases.append(SceneCase(f"s{i}", volume, node))
    job = start_generation(cases, model_dir=organ_model, classes=["Organ", "Vessel"], device="cpu")
    try:
        run_to_end(job)                          # the volumes handed over in steps, as the panel's timer does
        assert job.outcome() == ("finished", ""), "\n".join(job.process.log_lines[-30:])
    finally:
        job.close()
    assert sorted(job.imported) == ["s0", "s1"] and not job.failed
    # the same segments as the path before the hand-over: each volume written whole as NIfTI, the child reading it
    inputs = []
    for case in cases:
        (tmp_path / "before" / case.case_id).mkdir(parents=True)
        inputs.append([case.case_id, write_inputs(case.volume, [], tmp_path / "before" / case.case_id)])
    before = GenerationProcess(GenerationRequest(inputs, str(tmp_path / "before" / "out"), str(organ_model),
                                                 ["Organ", "Vessel"], "cpu")).start()
    assert before.wait(600) == 0, "\n".join(before.log_lines[-30:])
    for case in cases:
        old = read_seg_nrrd(tmp_path / "before" / "out" / f"{case.case_id}.seg.nrrd", case.case_id).masks
        assert sorted(old) == ["Organ", "Vessel"] and any(mask.any() for mask in old.values())
        for name, mask in old.items():
            assert np.array_equal(segment_mask(case.segmentation, name, case.volume, case.case_id), mask), name
    report = suggest(suggest_cases_from_scene(cases), SuggestOptions("Lesion", neighbour_mm=20, min_case_share=0.25))
    accepted = report.accepted()
    assert accepted, [(c.name, c.reasons) for c in report.ranked]
    result = export_dataset([c.source() for c in cases],
                            ExportRequest(tmp_path / "raw", 71, "Scene", ["Lesion"], accepted,
                                          missing_segments="absent"))
    dataset = json.loads((result.dataset_dir / "dataset.json").read_text(encoding="utf-8"))
    assert list(dataset["labels"]) == ["background", "Lesion", *accepted]
