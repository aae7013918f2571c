"""Training: pure translation steps, and tiny real nnU-Net trainings on the CPU (child processes, real files)."""

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from fixtures_nnunet import export_tiny, run_training, tiny_options

from backsplit.errors import InputError
from backsplit.training.options import TrainOptions, resolve_fold, resolve_folds
from backsplit.training.process import TrainingProcess, training_command, training_environment
from backsplit.training.sampling import choose_forced_class
from backsplit.training.status import TrainingStatus

psutil = pytest.importorskip("psutil")


# ---- pure parts ------------------------------------------------------------------------------------------------

def test_fold_choice():
    assert resolve_fold("auto", 4) == "all"
    assert resolve_fold("auto", 5) == "0"
    assert resolve_fold("all", 2) == "all"
    assert resolve_fold("3", 10) == "3"
    with pytest.raises(InputError, match="at least 5 cases.*has 4"):
        resolve_fold("0", 4)
    assert resolve_folds("5fold", 5) == ["0", "1", "2", "3", "4"]
    assert resolve_folds("auto", 3) == ["all"] and resolve_folds("2", 9) == ["2"]
    with pytest.raises(InputError, match="5-fold cross-validation needs .* at least 5 cases"):
        resolve_folds("5fold", 4)
    with pytest.raises(InputError, match="5fold"):
        TrainOptions(Path("d"), Path("w"), fold="6").validate()
    assert TrainOptions(Path("d"), Path("w"), fold="5fold", with_binary=True).runs_total == 10
    assert TrainOptions(Path("d"), Path("w"), fold="all").runs_total == 1
    with pytest.raises(InputError, match="batch size"):
        TrainOptions(Path("d"), Path("w"), batch_size=0).validate()


def test_options_round_trip_and_defaults(tmp_path):
    options = TrainOptions(tmp_path / "Dataset001_A", tmp_path / "work", pretrained_model=tmp_path / "m", epochs=7)
    again = TrainOptions.from_json(options.to_json())
    assert again == options
    assert options.learning_rate == 1e-3                       # fine-tuning default, as in the paper
    assert TrainOptions(tmp_path, tmp_path).learning_rate == 1e-2
    assert TrainOptions(tmp_path, tmp_path, initial_lr=3e-3).learning_rate == 3e-3
    with pytest.raises(InputError, match="resume and fine-tune"):
        TrainOptions(tmp_path, tmp_path, pretrained_model=tmp_path, resume=True).validate()
    with pytest.raises(InputError, match="configuration"):
        TrainOptions(tmp_path, tmp_path, configuration="3d_fast").validate()   # 3d_lowres is accepted (when planned)


def test_environment_is_for_the_child_only(tmp_path):
    options = TrainOptions(tmp_path / "raw" / "Dataset001_A", tmp_path / "work")
    before = dict(os.environ)
    env = training_environment(options, {"PATH": "/bin", "nnUNet_raw": "/elsewhere"})
    assert env["nnUNet_raw"] == str((tmp_path / "raw").resolve())
    assert env["nnUNet_preprocessed"] == str((tmp_path / "work").resolve() / "nnUNet_preprocessed")
    assert env["nnUNet_results"] == str((tmp_path / "work").resolve() / "nnUNet_results")
    assert env["PATH"] == "/bin" and env["BACKSPLIT_N_PROC_DA"] == "0"
    assert dict(os.environ) == before
    command = training_command(Path("o.json"), "/py")
    assert command == ["/py", "-m", "backsplit.training.worker", "o.json"]


def test_target_class_choice():
    locations = {1: np.zeros((0, 4)), 2: np.ones((3, 4)), 3: np.ones((9, 4))}
    rng = np.random.default_rng(0)
    assert {choose_forced_class(locations, [1, 2], rng) for _ in range(20)} == {2}   # 1 absent in this case
    assert choose_forced_class(locations, [1], rng) is None                            # negative case: nnU-Net picks
    assert {choose_forced_class(locations, [2, 3], rng) for _ in range(50)} == {2, 3}


def test_target_aware_loader_centres_forced_patches_on_targets():
    """nnU-Net's own get_bbox, driven by the target-aware choice: every forced patch holds a target voxel."""
    from backsplit.training.trainer import TargetAwareDataLoader

    loader = TargetAwareDataLoader.__new__(TargetAwareDataLoader)  # no dataset needed for get_bbox
    loader.need_to_pad = np.array([0, 0, 0])
    loader.patch_size = [8, 8, 8]
    loader.has_ignore = False
    loader.annotated_classes_key = (1, 2, 3)
    loader.target_labels = (1,)
    shape = (64, 64, 64)
    lesion = np.array([[0, 50, 50, 50]])              # one target voxel
    organ = np.array([[0, z, 10, 10] for z in range(0, 40)])
    locations = {1: lesion, 2: organ, 3: organ}
    for _ in range(30):
        lbs, ubs = loader.get_bbox(shape, True, locations)
        assert all(lb <= 50 < ub for lb, ub in zip(lbs, ubs))
    stock = {tuple(TargetAwareDataLoader.__bases__[0].get_bbox(loader, shape, True, locations)[0]) for _ in range(30)}
    assert any(not all(lb <= 50 < lb + 8 for lb in lbs) for lbs in stock)  # stock sampling often misses it


def test_status_eta_and_curves():
    from backsplit.runtime.progress import ProgressEvent

    status = TrainingStatus(models_total=2)
    status.update(ProgressEvent("train", "start", data={"model": "BackSplit model"}))
    status.update(ProgressEvent("train", "", 0, 10, {"num_epochs": 10, "start_epoch": 0}))
    for epoch in (1, 2):
        status.update(ProgressEvent("epoch", "", epoch, 10, {"epoch": epoch, "num_epochs": 10, "epoch_time": 3.0,
                                                             "train_loss": 1.0 / epoch, "val_loss": 0.5,
                                                             "pseudo_dice": [0.1, 0.2]}))
    assert status.seconds_left() == pytest.approx(3.0 * (8 + 10))
    assert status.curves["BackSplit model"].pseudo_dice == [[0.1, 0.2], [0.1, 0.2]]
    assert status.fraction == pytest.approx(0.1)


# ---- real trainings ----------------------------------------------------------------------------------------------

def test_training_writes_models_with_manifests_and_events(tiny_training, tiny_dataset):
    options, process, events, models = tiny_training
    assert not [k for k in os.environ if k.startswith("nnUNet_")]      # never set in this process
    epochs = [e for e in events if e.stage == "epoch"]
    assert len(epochs) == 2 * options.epochs                            # BackSplit + binary, every epoch reported
    first = epochs[0].data
    assert first["epoch"] == 1 and first["num_epochs"] == 3
    assert np.isfinite(first["train_loss"]) and np.isfinite(first["val_loss"])
    assert len(first["pseudo_dice"]) == 3                               # Lesion, Vessel, Organ
    assert len(epochs[-1].data["pseudo_dice"]) == 1                     # binary: Lesion only
    assert events[-1].stage == "done"
    backsplit_dir, binary_dir = models
    manifest = json.loads((backsplit_dir / "backsplit_model.json").read_text(encoding="utf-8"))
    assert manifest["variant"] == "backsplit" and manifest["labels"] == {"background": 0, "Lesion": 1, "Vessel": 2,
                                                                         "Organ": 3}
    assert [t["name"] for t in manifest["schema"]["targets"]] == ["Lesion"]
    assert manifest["folds"] == ["all"] and manifest["configuration"] == "2d" and manifest["completed_epochs"] == 3
    assert manifest["sampling"] == "target" and manifest["initial_lr"] == 0.01
    assert manifest["versions"]["torch"] and manifest["versions"]["nnunetv2"].startswith("2.")
    assert manifest["training_time_s"] > 0 and manifest["twin_model"] == str(binary_dir)
    assert (backsplit_dir / "fold_all" / "checkpoint_final.pth").is_file()


def test_binary_twin_uses_identical_settings(tiny_training):
    _, _, _, (backsplit_dir, binary_dir) = tiny_training
    plans_a = json.loads((backsplit_dir / "plans.json").read_text(encoding="utf-8"))
    plans_b = json.loads((binary_dir / "plans.json").read_text(encoding="utf-8"))
    for key in ("configurations", "foreground_intensity_properties_per_channel", "transpose_forward"):
        assert plans_a[key] == plans_b[key]                              # same network, same normalisation
    a = json.loads((backsplit_dir / "backsplit_model.json").read_text(encoding="utf-8"))
    b = json.loads((binary_dir / "backsplit_model.json").read_text(encoding="utf-8"))
    for key in ("configuration", "folds", "epochs", "iterations_per_epoch", "initial_lr", "patch_size", "spacing"):
        assert a[key] == b[key]
    assert b["variant"] == "binary" and b["labels"] == {"background": 0, "Lesion": 1}


def test_model_loads_for_prediction(tiny_model_dir):
    """The model folder is enough to predict: the network is built from the plans with nnU-Net's stock trainer."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = PlansManager(json.loads((tiny_model_dir / "plans.json").read_text(encoding="utf-8")))
    dataset_json = json.loads((tiny_model_dir / "dataset.json").read_text(encoding="utf-8"))
    config = plans.get_configuration("2d")
    checkpoint = torch.load(tiny_model_dir / "fold_all" / "checkpoint_final.pth", map_location="cpu",
                            weights_only=False)
    network = nnUNetTrainer.build_network_architecture(plans, config, 1, 4, False)
    predictor = nnUNetPredictor(use_mirroring=False, device=torch.device("cpu"), perform_everything_on_device=False)
    predictor.manual_initialization(network, plans, config, [checkpoint["network_weights"]], dataset_json,
                                    "BackSplitTrainer", None)
    image = np.random.default_rng(0).normal(40, 10, (1, 16, 32, 32)).astype(np.float32)
    labels = predictor.predict_single_npy_array(image, {"spacing": [2.0, 1.5, 1.0]}, None, None, False)
    assert labels.shape == (16, 32, 32) and set(np.unique(labels)) <= {0, 1, 2, 3}


def _wait_for(process, predicate, timeout=240):
    events = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        for event in process.poll_events():
            events.append(event)
            if predicate(event):
                return events
        if not process.is_running():
            break
        time.sleep(0.05)
    raise AssertionError("expected event did not come:\n" + "\n".join(process.log_lines[-30:]))


def test_cancel_ends_the_whole_process_tree(tiny_dataset, tmp_path):
    options = tiny_options(tiny_dataset.dataset_dir, tmp_path / "work", epochs=200, preprocess_processes=2)
    process = TrainingProcess(options).start()
    # Cancel during preprocessing, where nnU-Net runs a pool of worker processes.
    _wait_for(process, lambda e: e.stage == "plan" and e.current == 1)
    tree = [process.pid] + [p.pid for p in psutil.Process(process.pid).children(recursive=True)]
    started = time.time()
    process.cancel(grace_seconds=3)
    assert time.time() - started < 10
    gone, alive = psutil.wait_procs([psutil.Process(p) for p in tree if psutil.pid_exists(p)], timeout=5)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], alive
    assert not process.is_running() and process.returncode != 0


def test_resume_after_hard_kill_continues_at_checkpoint(tiny_dataset, tmp_path):
    import torch

    options = tiny_options(tiny_dataset.dataset_dir, tmp_path / "work", epochs=6)
    process = TrainingProcess(options).start()
    _wait_for(process, lambda e: e.stage == "epoch" and e.data.get("epoch") == 2)
    os.killpg(os.getpgid(process.pid), signal.SIGKILL)                 # like a crash or a closed application
    process.wait(30)
    results = tmp_path / "work" / "nnUNet_results" / "Dataset011_Tiny"
    fold_dir = results / "BackSplitTrainer__nnUNetPlans__2d" / "fold_all"
    checkpoint_epoch = torch.load(fold_dir / "checkpoint_latest.pth", map_location="cpu",
                                  weights_only=False)["current_epoch"]
    assert checkpoint_epoch >= 2
    # A fresh start is refused (it would overwrite the unfinished run) ...
    refused, events = run_training(tiny_options(tiny_dataset.dataset_dir, tmp_path / "work", epochs=6))
    assert refused.returncode == 1 and "unfinished training" in events[-1].message and "resume" in events[-1].message
    # ... and resume continues at the checkpoint's epoch.
    resumed, events = run_training(tiny_options(tiny_dataset.dataset_dir, tmp_path / "work", epochs=6, resume=True))
    assert resumed.returncode == 0, "\n".join(resumed.log_lines[-30:])
    resume_event = next(e for e in events if e.stage == "train" and "resuming" in e.message)
    assert resume_event.data["start_epoch"] == checkpoint_epoch
    epochs = [e.data["epoch"] for e in events if e.stage == "epoch"]
    assert epochs == list(range(checkpoint_epoch + 1, 7))
    manifest = json.loads((fold_dir.parent / "backsplit_model.json").read_text(encoding="utf-8"))
    assert manifest["completed_epochs"] == 6


def test_fine_tune_binary_model_into_backsplit_model(tiny_dataset, tiny_binary_model_dir, tmp_path):
    options = tiny_options(tiny_dataset.dataset_dir, tmp_path / "work", epochs=1,
                           pretrained_model=tiny_binary_model_dir, model_dir=tmp_path / "fine tuned")
    process, events = run_training(options)
    assert process.returncode == 0, "\n".join(process.log_lines[-30:])
    # nnU-Net's rule: everything but the output layers loaded; the binary model's 2-class output layers re-initialised
    [transfer] = [e.data["weights_transfer"] for e in events if "weights_transfer" in (e.data or {})]
    assert transfer["loaded"] > 0 and transfer["reinitialised"] > 0 and not transfer["output_layers_kept"]
    manifest = json.loads((tmp_path / "fine tuned" / "backsplit_model.json").read_text(encoding="utf-8"))
    assert manifest["initial_lr"] == 1e-3 and manifest["pretrained_from"] == str(tiny_binary_model_dir)
    assert manifest["labels"] == {"background": 0, "Lesion": 1, "Vessel": 2, "Organ": 3}
    assert (tmp_path / "fine tuned" / "fold_all" / "checkpoint_final.pth").is_file()
    assert len([e for e in events if e.stage == "epoch"][0].data["pseudo_dice"]) == 3


@pytest.mark.parametrize("case", ["not_export", "too_few_cases_for_fold", "cuda_missing", "foreign_model"])
def test_bad_training_input_gives_clear_error(case, tiny_dataset, tmp_path):
    import torch

    dataset = tiny_dataset.dataset_dir
    kw = {}
    if case == "not_export":
        dataset = tmp_path / "Dataset099_Nothing"
        dataset.mkdir()
        expected = "no dataset.json"
    elif case == "too_few_cases_for_fold":
        dataset = export_tiny(tmp_path / "raw", n_cases=3, dataset_id=21).dataset_dir
        kw["fold"] = "0"
        expected = "at least 5 cases"
    elif case == "cuda_missing":
        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
        kw["device"] = "cuda"
        expected = "no CUDA GPU"
    else:
        foreign = tmp_path / "foreign"
        (foreign / "fold_all").mkdir(parents=True)
        (foreign / "plans.json").write_text(json.dumps({"configurations": {"2d": {}}}))
        (foreign / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT", "1": "PET"}}))
        kw["pretrained_model"] = foreign
        expected = "2 input channel"
    process, events = run_training(tiny_options(dataset, tmp_path / "work", **kw))
    assert process.returncode == 1
    assert events[-1].stage == "error" and expected in events[-1].message, events[-1].message


def test_second_training_on_same_output_is_refused(tiny_dataset, tmp_path):
    from backsplit.training.lock import TrainingLock

    results = tmp_path / "work" / "nnUNet_results" / "Dataset011_Tiny"
    lock = TrainingLock(results / ".backsplit-train-BackSplitTrainer__nnUNetPlans__2d-fold_all.lock")
    lock.acquire()                                   # held by this (live) process, as by a running training
    try:
        process, events = run_training(tiny_options(tiny_dataset.dataset_dir, tmp_path / "work"))
    finally:
        lock.release()
    assert process.returncode == 1 and "another training" in events[-1].message
    assert not (results / "BackSplitTrainer__nnUNetPlans__2d" / "fold_all" / "checkpoint_final.pth").exists()


def test_interrupted_preprocessing_is_redone(tiny_dataset, tmp_path):
    options = tiny_options(tiny_dataset.dataset_dir, tmp_path / "work", epochs=1)
    first, _ = run_training(options)
    assert first.returncode == 0
    pre = tmp_path / "work" / "nnUNet_preprocessed" / "Dataset011_Tiny"
    (pre / "backsplit_prepared_2d.json").unlink()                        # as if killed during preprocessing
    for item in sorted((pre / "nnUNetPlans_2d").iterdir())[:2]:
        item.unlink()
    again, events = run_training(tiny_options(tiny_dataset.dataset_dir, tmp_path / "work", epochs=1,
                                              extra={"overwrite": True}))
    assert again.returncode == 0, "\n".join(again.log_lines[-30:])
    assert any(e.stage == "preprocess" and "preprocessing" in e.message for e in events)


def test_five_fold_cross_validation_gives_an_ensemble_model(tiny_dataset, tmp_path):
    """'5fold' trains folds 0-4 one after the other (real tiny CPU trainings); the manifest lists the five folds, the
    copied model folder holds their final checkpoints, and prediction ensembles them."""
    from backsplit.inference.files import InputCase, predict_files
    from backsplit.inference.model import read_model_info
    from backsplit.training.status import TrainingStatus

    options = tiny_options(tiny_dataset.dataset_dir, tmp_path / "work", fold="5fold", epochs=1,
                           iterations_per_epoch=2, val_iterations_per_epoch=1, model_dir=tmp_path / "cv model",
                           batch_size=3)
    process, events = run_training(options)
    assert process.returncode == 0, "\n".join(process.log_lines[-40:])
    status = TrainingStatus(models_total=options.runs_total)
    for event in events:
        status.update(event)
        if event.stage == "train" and "model" in event.data and event.data["model"].endswith("fold 2"):
            assert 0.35 < status.fraction < 0.45  # two of five folds done
    assert status.finished and status.error is None and status.fraction == 1.0
    started = [e.data["model"] for e in events if e.stage == "train" and "model" in e.data]
    assert started == [f"BackSplit model fold {k}" for k in range(5)]
    model = tmp_path / "cv model"
    manifest = json.loads((model / "backsplit_model.json").read_text(encoding="utf-8"))
    assert manifest["folds"] == ["0", "1", "2", "3", "4"]
    assert manifest["batch_size"] == 3                      # the override reached nnU-Net's trainer
    planned = json.loads((model / "plans.json").read_text(encoding="utf-8"))["configurations"]["2d"]["batch_size"]
    on_disk = json.loads((tmp_path / "work" / "nnUNet_preprocessed" / "Dataset011_Tiny" / "nnUNetPlans.json")
                         .read_text(encoding="utf-8"))["configurations"]["2d"]["batch_size"]
    assert on_disk != 3                                     # the preprocessed plans (shared with the twin) unchanged
    assert planned == 3                                     # the model's plans.json says how it was trained
    info = read_model_info(model)
    assert [p.parent.name for p in info.checkpoints] == [f"fold_{k}" for k in range(5)]
    assert not list(model.rglob("checkpoint_latest.pth"))
    image = tiny_dataset.dataset_dir / "imagesTr" / "tiny0_0000.nii.gz"
    summaries = predict_files(model, [InputCase("tiny0", [image])], tmp_path / "pred", device="cpu")
    assert (tmp_path / "pred" / "tiny0.nii.gz").is_file() and summaries[0].case_id == "tiny0"
