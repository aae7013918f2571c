"""The study plan: arms x folds x seeds, waves, and content hashes that change when and only when inputs change."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backsplit.errors import InputError
from backsplit.study.arms import Arm, ArmContext, ArmType, arm_types, parse_arms, register_arm
from backsplit.study.plan import DatasetScan, StudySettings, build_plan, crossval_splits

CONTEXT = ArmContext(("cyst",), ("tumor", "kidney"))
CASES = tuple(f"case{i:02d}" for i in range(10))


def scan(folder="/data/Dataset501_K", label_change: str = "", image_change: str = "") -> DatasetScan:
    images = {c: [f"img-{c}" + (image_change if c == "case03" else "")] for c in CASES}
    labels = {c: f"lab-{c}" + (label_change if c == "case03" else "") for c in CASES}
    return DatasetScan(folder, CASES, "meta", images, labels, ("cyst",), ("tumor", "kidney"))


def plan(arms=("binary", "backsplit"), settings=None, source=None, twin=None, study="/tmp/study"):
    settings = settings or StudySettings(folds=2, seeds=(1, 2))
    return build_plan(Path(study), source or scan(), twin or scan("/data/Dataset502_KBinary"),
                      parse_arms(list(arms), CONTEXT), settings)


def hashes(p) -> dict:
    return {u.id: dict(u.hashes) for u in p.units}


def test_units_cover_arms_folds_seeds_in_waves():
    p = plan(("backsplit", "drop:tumor", "finetune"), StudySettings(folds=3, seeds=(1, 2)))
    runs = [u for u in p.units if u.kind == "run"]
    assert len(runs) == 4 * 3 * 2  # binary added as the reference, + backsplit, drop, finetune
    assert [a["name"] for a in p.arms] == ["binary", "backsplit", "drop:tumor", "finetune"]
    assert {u.id for u in p.units if u.kind == "prepare"} == {"prepare-source", "prepare-twin", "prepare-drop-tumor"}
    waves = [[u.id for u in w] for w in p.waves()]
    position = {uid: i for i, wave in enumerate(waves) for uid in wave}
    for unit in p.units:
        assert all(position[n] < position[unit.id] for n in unit.needs), unit.id
    finetune = p.unit("finetune-fold2-seed2")
    assert finetune.spec["pretrained_unit"] == "binary-fold2-seed2" and finetune.spec["initial_lr"] == 1e-3
    # every case is held out exactly once per arm and seed
    held_out = sorted(c for u in runs if u.spec["arm"] == "binary" and u.spec["seed"] == 1
                      for c in u.spec["test_cases"])
    assert held_out == sorted(CASES)
    assert p.splits == crossval_splits(reversed(CASES), 3)  # independent of the order the cases come in


def test_hashes_are_deterministic_and_independent_of_paths_and_arm_order():
    a = plan(("binary", "backsplit", "drop:kidney"))
    b = plan(("drop:kidney", "backsplit"), study="/elsewhere/study",
             source=scan("/other/Dataset501_K"), twin=scan("/other/Dataset502_KBinary"))
    assert hashes(a) == hashes(b)


def test_hashes_change_exactly_downstream_of_a_changed_input():
    base = hashes(plan())
    more_epochs = hashes(plan(settings=StudySettings(folds=2, seeds=(1, 2), epochs=51)))
    for uid, h in base.items():
        if uid.startswith("prepare"):
            assert more_epochs[uid] == h
        else:
            assert all(more_epochs[uid][k] != h[k] for k in ("train", "predict", "evaluate"))
    # device and checkpoint interval do not change results: no hash changes
    assert hashes(plan(settings=StudySettings(folds=2, seeds=(1, 2), device="cpu", save_every=1))) == base
    # NSD tolerance: only evaluation
    nsd = hashes(plan(settings=StudySettings(folds=2, seeds=(1, 2), nsd_tolerance_mm=1.0)))
    for uid, h in base.items():
        if not uid.startswith("prepare"):
            assert nsd[uid]["train"] == h["train"] and nsd[uid]["predict"] == h["predict"]
            assert nsd[uid]["evaluate"] != h["evaluate"]
    # lesion matching: only evaluation; the default (overlap) keeps the hashes of plans made before the option existed
    iou = hashes(plan(settings=StudySettings(folds=2, seeds=(1, 2), lesion_match="iou:0.5")))
    for uid, h in base.items():
        if not uid.startswith("prepare"):
            assert iou[uid]["predict"] == h["predict"] and iou[uid]["evaluate"] != h["evaluate"]
    assert hashes(plan(settings=StudySettings(folds=2, seeds=(1, 2), lesion_match="overlap"))) == base
    with pytest.raises(InputError, match="lesion match 'iou:2'"):
        StudySettings(lesion_match="iou:2").validate(10)
    # a changed label file of the source changes the BackSplit arm but not the binary arm (its twin is unchanged)
    changed = hashes(plan(source=scan(label_change="x")))
    assert changed["prepare-twin"] != base["prepare-twin"]  # the twin is preprocessed with the source's plans
    assert changed["backsplit-fold0-seed1"]["train"] != base["backsplit-fold0-seed1"]["train"]
    # a new seed adds units and leaves the others untouched
    seeds = hashes(plan(settings=StudySettings(folds=2, seeds=(1, 2, 3))))
    assert {k: v for k, v in seeds.items() if k in base} == base and "binary-fold1-seed3" in seeds


def test_arm_parsing_and_errors():
    arms = parse_arms(["noisy:erode:2", "noisy:missing:0.5", "rings:5,15", "kmeans", "sampling:stock"], CONTEXT)
    assert [a.name for a in arms][0] == "binary"
    assert arms[1].recipe == {"transform": {"op": "erode", "mm": 2.0}}
    assert arms[2].recipe["missing_fraction"] == 0.5 and arms[5].sampling == "stock"
    for bad in ("drop:liver", "noisy:blur", "sampling:odd", "nonsense", "binary:x", "rings:-5"):
        with pytest.raises(InputError):
            parse_arms([bad], CONTEXT)
    with pytest.raises(InputError):
        parse_arms(["backsplit", "backsplit"], CONTEXT)
    with pytest.raises(InputError):
        plan(settings=StudySettings(folds=7))


def test_a_new_arm_plugs_in_with_one_registration():
    register_arm(ArmType("organ", "supports from an organ model", lambda p, c: Arm(f"organ:{p}", "organ", "derived",
                                                                                   {"model": p})))
    try:
        p = plan(("backsplit", "organ:totalseg"))
        assert "prepare-organ-totalseg" in {u.id for u in p.units}
        assert p.unit("organ-totalseg-fold1-seed2").needs == ["prepare-organ-totalseg"]
    finally:
        arm_types()  # the registry is a module-level dict; remove the test arm
        from backsplit.study import arm_registry as module
        module._REGISTRY.pop("organ", None)


def test_scanned_file_hashes_follow_content_not_times(tmp_path):
    from fixtures_nnunet import export_tiny

    from backsplit.study.scan import scan_study_inputs

    result = export_tiny(tmp_path / "raw")
    source, twin = scan_study_inputs(result.dataset_dir)
    label = result.dataset_dir / "labelsTr" / "tiny0.nii.gz"
    data = label.read_bytes()
    label.write_bytes(data)  # same bytes, new modification time
    os.utime(label, (1, 1))
    again, _ = scan_study_inputs(result.dataset_dir)
    assert again.content_hash == source.content_hash
    import SimpleITK as sitk

    image = sitk.ReadImage(str(label))
    image[0, 0, 0] = 1  # one voxel of other content
    sitk.WriteImage(image, str(label), True)
    changed, twin_again = scan_study_inputs(result.dataset_dir)
    assert changed.content_hash != source.content_hash and twin_again.content_hash == twin.content_hash


def test_learned_context_arm_trains_the_twin_with_its_own_trainer():
    from backsplit.study.runtask import model_dir

    [binary, learned] = parse_arms(["learned:3"], CONTEXT)
    assert (learned.kind, learned.dataset, learned.train_context) == ("learned", "twin", "learned:3")
    p = plan(("learned:3",))
    unit = p.unit("learned-3-fold0-seed1")
    assert unit.spec["context"] == "learned:3" and unit.spec["dataset_dir"] == p.unit("binary-fold0-seed1").spec[
        "dataset_dir"]
    assert "BackSplitLearnedContextTrainer__" in model_dir(p, unit).name
    assert "BackSplitTrainer__" in model_dir(p, p.unit("binary-fold0-seed1")).name
    # the context is part of what is trained: another t changes the training hash
    other = plan(("learned:2",)).unit("learned-2-fold0-seed1")
    assert other.hashes["train"] != unit.hashes["train"]
    with pytest.raises(InputError):
        parse_arms(["learned:0"], CONTEXT)
