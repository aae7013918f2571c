"""``backsplit context show``: a tiny real learned-context training (nnU-Net 2d, one epoch of two iterations, CPU),
then the generator's context labels written per case and loaded into a real MRML scene (slicer-core).

The context is checked against distances computed here independently (scipy's exact EDT with the image spacing)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fixtures_nnunet import export_tiny, run_training, tiny_options

MARGIN_MM, TAU_MM = 8.0, 4.0
CONTEXT = f"learned:2,k=1,m={MARGIN_MM:g},tau={TAU_MM:g}"   # a margin smaller than the tiny cases
LABELS = {"background": 0, "Lesion": 1, "Vessel": 2, "Organ": 3}
CONTEXT_VALUES = {"learned context 1 of 2": 4, "learned context 2 of 2": 5}


@pytest.fixture(scope="module")
def learned_work(tmp_path_factory):
    """(dataset folder, training work folder, exported model folder) of a finished learned-context training."""
    root = tmp_path_factory.mktemp("context show")
    dataset = export_tiny(root / "raw", n_cases=3).dataset_dir
    work, model_dir = root / "work", root / "exported model"
    process, _ = run_training(tiny_options(dataset, work, epochs=1, iterations_per_epoch=2,
                                           val_iterations_per_epoch=1, context=CONTEXT, model_dir=model_dir))
    assert process.returncode == 0, "\n".join(process.log_lines[-40:])
    return dataset, work, model_dir


@pytest.fixture(scope="module")
def shown(learned_work, tmp_path_factory):
    """The command line run over every case (in this process); returns (exit code, output folder)."""
    from backsplit.cli import main

    dataset, work, _ = learned_work
    out = tmp_path_factory.mktemp("shown") / "context"
    code = main(["context", "show", "--work-dir", str(work), "--dataset", str(dataset), "--out", str(out),
                 "--device", "cpu", "--quiet"])
    return code, out


def read(path: Path):
    import SimpleITK as sitk

    image = sitk.ReadImage(str(path))
    return image, sitk.GetArrayFromImage(image)


def test_one_label_map_per_case_on_the_image_grid_with_context_only_within_the_margin(learned_work, shown):
    from scipy.ndimage import distance_transform_edt

    from backsplit.io.segnrrd import read_seg_nrrd

    dataset, work, _ = learned_work
    code, out = shown
    assert code == 0
    plans = json.loads(next(work.glob("nnUNet_preprocessed/*/nnUNetPlans.json")).read_text(encoding="utf-8"))
    axis = plans["transpose_forward"][0]      # a 2d training: distances within the slices nnU-Net trained on
    case_ids = sorted(p.name[:-len(".nii.gz")] for p in (dataset / "labelsTr").glob("*.nii.gz"))
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{c}.nii.gz" for c in case_ids] + [f"{c}.seg.nrrd" for c in case_ids] + ["learned_context.json"])
    summary = json.loads((out / "learned_context.json").read_text(encoding="utf-8"))
    assert [c["case_id"] for c in summary["cases"]] == case_ids and summary["extent"] == "margin"
    assert {c["name"]: c["value"] for c in summary["classes"]} == {**{k: v for k, v in LABELS.items() if v},
                                                                    **CONTEXT_VALUES}
    assert summary["learned_context"]["margin_mm"] == MARGIN_MM and summary["generator_updates"] == 2
    context_seen = 0
    for case_id in case_ids:
        image, _ = read(dataset / "imagesTr" / f"{case_id}_0000.nii.gz")
        written, labels = read(out / f"{case_id}.nii.gz")
        _, reference = read(dataset / "labelsTr" / f"{case_id}.nii.gz")
        assert written.GetSize() == image.GetSize() and written.GetSpacing() == image.GetSpacing()
        assert written.GetOrigin() == image.GetOrigin() and written.GetDirection() == image.GetDirection()
        assert set(np.unique(labels)) <= {0, 1, 2, 3, 4, 5}
        labelled = reference > 0
        assert np.array_equal(labels[labelled], reference[labelled])          # targets and supports kept
        spacing = image.GetSpacing()[::-1]
        distance = np.full(reference.shape, np.inf)
        for k in range(reference.shape[axis]):
            plane = np.take(reference, k, axis=axis) != 1
            if not plane.all():
                index = [slice(None)] * 3
                index[axis] = k
                distance[tuple(index)] = distance_transform_edt(
                    plane, sampling=[s for a, s in enumerate(spacing) if a != axis])
        context = labels >= 4
        assert not (context & labelled).any()                                  # only on background
        assert (distance[context] < MARGIN_MM).all()                           # only within the margin
        near = (reference == 0) & (distance < MARGIN_MM)
        assert np.array_equal(context, near)                                   # all of the margin's background
        context_seen += int(context.sum())
        segments = read_seg_nrrd(out / f"{case_id}.seg.nrrd", case_id)
        assert segments.geometry.shape == labels.shape
        for name, value in {**{k: v for k, v in LABELS.items() if v}, **CONTEXT_VALUES}.items():
            assert np.array_equal(segments.masks[name], labels == value), name
        entry = next(c for c in summary["cases"] if c["case_id"] == case_id)
        assert sum(entry["context_voxels"].values()) == int(context.sum())
    assert context_seen > 0


def test_label_extent_is_the_argmax_of_the_eq9_soft_label():
    """``extent='label'``: context where ``M * max q > 1 - M`` (Eq. 8-9), which reaches past the margin."""
    from backsplit.training.colab.show import context_label_map

    reference = np.zeros((1, 1, 40), np.uint8)
    reference[0, 0, 0] = 1                                                    # a target voxel at x = 0
    index = np.zeros_like(reference)
    index[..., 20:] = 1
    probability = np.full(reference.shape, 0.9, np.float32)
    labels = context_label_map(reference, index, probability, (1.0, 1.0, 1.0), [1], 4, 10.0, 5.0, "label")
    d = np.arange(40.0)
    mask = np.where(d < 10, 1.0, np.exp((10 - d) / 5.0))
    expected = np.where(mask * 0.9 > 1 - mask, 4 + index[0, 0], 0)
    expected[0] = 1
    assert np.array_equal(labels[0, 0], expected)
    assert labels[0, 0, 11] == 4 and labels[0, 0, 30] == 0                   # past m = 10 mm, not far away
    margin = context_label_map(reference, index, probability, (1.0, 1.0, 1.0), [1], 4, 10.0, 5.0, "margin")
    assert (margin[0, 0, 1:10] == 4).all() and (margin[0, 0, 10:] == 0).all()     # d < m
    no_target = context_label_map(reference * 0 + (reference > 0) * 2, index, probability, (1, 1, 1), [1], 4, 10, 5)
    assert set(np.unique(no_target)) <= {0, 2}                                # no target: no context
    reference2 = np.zeros((3, 1, 40), np.uint8)
    reference2[1, 0, 0] = 1                                                   # a target in slice 1 only
    index2, probability2 = np.zeros_like(reference2), np.full(reference2.shape, 0.9, np.float32)
    by_slice = context_label_map(reference2, index2, probability2, (2.0, 1.0, 1.0), [1], 4, 10.0, 5.0, "margin",
                                 slice_axis=0)
    assert (by_slice[1, 0, 1:10] == 4).all() and (by_slice[1, 0, 10:] == 0).all()
    assert not by_slice[0].any() and not by_slice[2].any()                   # 2d: no target in the slice, no context
    whole = context_label_map(reference2, index2, probability2, (2.0, 1.0, 1.0), [1], 4, 10.0, 5.0, "margin")
    assert whole[0, 0, 0] == 4                                                # 3d: 2 mm away in the next slice


def test_user_errors(learned_work, shown, tmp_path, capsys):
    from backsplit.cli import main
    from backsplit.errors import InputError, OutputError
    from backsplit.training.colab.show_cases import ShowRequest, show_learned_context

    dataset, work, model_dir = learned_work
    _, out = shown

    def request(**kw):
        return ShowRequest(**{"work_dir": str(work), "dataset_dir": str(dataset),
                              "out_dir": str(tmp_path / "new"), "device": "cpu", **kw})

    with pytest.raises(InputError, match="exported model folder.*generator is stripped.*training work folder"):
        show_learned_context(request(work_dir=str(model_dir)))
    with pytest.raises(InputError, match="no learned-context generator.*training work folder"):
        show_learned_context(request(work_dir=str(model_dir / "fold_all" / "checkpoint_final.pth")))
    (tmp_path / "plain work" / "nnUNet_results").mkdir(parents=True)
    with pytest.raises(InputError, match="no learned-context training"):
        show_learned_context(request(work_dir=str(tmp_path / "plain work")))
    with pytest.raises(InputError, match="case 'nosuch'.*not a training case"):
        show_learned_context(request(cases=["nosuch"]))
    with pytest.raises(InputError, match="fold 3 was not trained.*--fold"):
        show_learned_context(request(fold="3"))
    with pytest.raises(InputError, match="no checkpoint_latest.pth.*--checkpoint final"):
        show_learned_context(request(checkpoint="latest"))
    with pytest.raises(OutputError, match="inside the dataset folder"):
        show_learned_context(request(out_dir=str(dataset / "context")))
    other = tmp_path / "Dataset012_Other"                                    # same cases, other label names
    shutil.copytree(dataset, other)
    meta = json.loads((other / "dataset.json").read_text(encoding="utf-8"))
    meta["labels"] = {"background": 0, "Tumour": 1, "Vessel": 2, "Organ": 3}
    (other / "dataset.json").write_text(json.dumps(meta))
    trainer = work / "nnUNet_results" / "Dataset011_Tiny" / "BackSplitLearnedContextTrainer__nnUNetPlans__2d"
    with pytest.raises(InputError, match="no learned-context training .* for Dataset012_Other"):
        show_learned_context(request(dataset_dir=str(other)))               # the work folder has none for it
    with pytest.raises(InputError, match="labels .* differ from those the generator was trained with"):
        show_learned_context(request(dataset_dir=str(other), work_dir=str(trainer)))
    assert not (tmp_path / "new").exists()                                  # nothing written on an error
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    argv = ["context", "show", "--work-dir", str(work), "--dataset", str(dataset), "--out", str(out),
            "--device", "cpu", "--quiet"]
    assert main(argv) == 1 and "not empty" in capsys.readouterr().err     # the user's folder is refused...
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert main(argv + ["--overwrite", "--cases", "tiny1"]) == 0           # ...unless --overwrite
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no staging left
    assert (out / "tiny1.seg.nrrd").stat().st_mtime_ns != before["tiny1.seg.nrrd"]
    assert (out / "tiny0.seg.nrrd").stat().st_mtime_ns == before["tiny0.seg.nrrd"]


def test_panel_helper_runs_the_child_process_and_loads_segments_on_the_case_volume(slicer_scene, learned_work,
                                                                                    tmp_path):
    from backsplit.io.geometry import Geometry
    from BackSplitSegmentLib.scene_nodes import segment_mask, segment_names, volume_geometry
    from BackSplitTrainLib.context_view import NODE_SUFFIX, finish_context_show, start_context_show

    dataset, work, model_dir = learned_work
    job = start_context_show(work, dataset, cases=["tiny2"], out_dir=tmp_path / "panel", device="cpu")
    job.wait(300)
    [(case_id, volume, node)] = finish_context_show(job)
    assert case_id == "tiny2" and node.GetName() == f"tiny2{NODE_SUFFIX}"
    image, labels = read(dataset / "imagesTr" / "tiny2_0000.nii.gz")
    assert volume_geometry(volume).differences(Geometry.from_sitk(image)) == []
    assert segment_names(node) == ["Lesion", "Vessel", "Organ", *CONTEXT_VALUES]
    _, written = read(tmp_path / "panel" / "tiny2.nii.gz")
    for name, value in CONTEXT_VALUES.items():
        assert np.array_equal(segment_mask(node, name, volume, case_id), written == value), name
    assert (written >= 4).any()
    assert slicer_scene.scene.GetNodesByClass("vtkMRMLSegmentationStorageNode").GetNumberOfItems() == 0
    failed = start_context_show(model_dir, dataset, cases=["tiny2"], out_dir=tmp_path / "failed", device="cpu")
    failed.wait(300)
    from backsplit.errors import InputError

    with pytest.raises(InputError, match="exported model folder"):
        finish_context_show(failed)
