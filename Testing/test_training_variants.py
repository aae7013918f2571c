"""Training variants end to end: tiny real nnU-Net trainings (child processes, CPU, 2d) of each support
schedule, the separate support head (exported as a plain nnU-Net lesion model that ``backsplit predict`` runs) and
function-preserving fine-tuning of the tiny binary model (first prediction = the binary model's, on a real case).
Checks wiring, not quality."""

import json
import math

import numpy as np
import pytest
from fixtures_dynamics import BINARY_LABELS, build_network
from fixtures_nnunet import run_training, tiny_options

from backsplit.errors import InputError

torch = pytest.importorskip("torch")
BUDGET = dict(epochs=2, iterations_per_epoch=3, val_iterations_per_epoch=1, save_every=1)


def _train(tiny_dataset, tmp_path, **kw):
    options = tiny_options(tiny_dataset.dataset_dir, tmp_path / "work", model_dir=tmp_path / "model", **BUDGET,
                           **kw)
    process, events = run_training(options)
    assert process.returncode == 0, "\n".join(process.log_lines[-40:])
    manifest = json.loads((tmp_path / "model" / "backsplit_model.json").read_text(encoding="utf-8"))
    epochs = [e.data for e in events if e.stage == "epoch"]
    assert len(epochs) == 2 and all(math.isfinite(e["train_loss"]) for e in epochs)
    assert all(len(e["pseudo_dice"]) == 3 for e in epochs)        # Lesion, Vessel, Organ: one value each
    return manifest, events


def test_tiny_training_with_a_support_schedule(tiny_dataset, tmp_path):
    """One training covers the three schedule pieces: constant lesion-vs-rest (lvr), the ramp and the Dice cap."""
    manifest, _ = _train(tiny_dataset, tmp_path, support_schedule="ramp:4,lvr=0.5,cap=0.5")
    assert manifest["recipe"] == "paper" and manifest["loss_schedule"]["option"] == "ramp:4,lvr=0.5,cap=0.5"
    # binary training's loss (+ lvr) at step 0, supports ramped in over 4 steps: (step, w_multi, w_lvr) per epoch
    assert manifest["loss_schedule"]["weights_at_epoch_start"] == [[0, 0.0, 1.5], [3, 0.75, 0.75]]
    assert manifest["labels"] == {"background": 0, "Lesion": 1, "Vessel": 2, "Organ": 3}


def test_the_papers_recipe_and_the_measured_default(tiny_model_dir, tiny_dataset, tmp_path):
    """``--recipe paper`` trains nnU-Net's own loss (the shared tiny model); the default is the recipe chosen by the
    rule (docs/results/2026-12-07-cpu2-dynamics.md): ramp:200,lvr=0.5, recorded in the manifest."""
    manifest = json.loads((tiny_model_dir / "backsplit_model.json").read_text(encoding="utf-8"))
    assert manifest["recipe"] == "paper" and manifest["loss_schedule"]["option"] == "plain"
    assert manifest["loss_schedule"]["weights_at_epoch_start"] == [] and "support_head" not in manifest
    manifest, _ = _train(tiny_dataset, tmp_path, recipe="default")
    assert manifest["recipe"] == "default" and manifest["loss_schedule"]["option"] == "ramp:200,lvr=0.5"
    assert manifest["loss_schedule"]["weights_at_epoch_start"][0] == [0, 0.0, 1.5]   # binary training's loss + lvr


def test_support_head_is_exported_as_a_plain_lesion_model(tiny_dataset, tmp_path):
    from backsplit.inference.files import InputCase, predict_files

    manifest, _ = _train(tiny_dataset, tmp_path, support_head=1.0)
    model = tmp_path / "model"
    assert json.loads((model / "dataset.json").read_text(encoding="utf-8"))["labels"] == BINARY_LABELS
    assert manifest["labels"] == BINARY_LABELS and [t["name"] for t in manifest["schema"]["targets"]] == ["Lesion"]
    assert not manifest["schema"].get("supports")
    assert manifest["support_head"]["supports"] == ["Vessel", "Organ"]
    assert manifest["support_head"]["side_file"] == "support_head.pth"
    saved = torch.load(model / "fold_all" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert saved["trainer_name"] == "nnUNetTrainer" and saved["init_args"]["dataset_json"]["labels"] == BINARY_LABELS
    stock = build_network(json.loads((model / "plans.json").read_text(encoding="utf-8")), "2d", 2, False)
    stock.load_state_dict(saved["network_weights"], strict=True)          # the network inference builds
    side = torch.load(model / "fold_all" / "support_head.pth", map_location="cpu", weights_only=False)
    assert side["format"] == "backsplit-support-head" and side["weights"]["0.weight"].shape[0] == 3
    case = tiny_dataset.dataset_dir / "imagesTr"
    image = sorted(case.iterdir())[0]
    summaries = predict_files(model, [InputCase("c0", [image])], tmp_path / "pred", device="cpu",
                              use_mirroring=False, estimate=False)
    assert len(summaries) == 1 and (tmp_path / "pred" / "c0.nii.gz").is_file()


def test_support_head_refuses_final_validation(tiny_dataset, tmp_path):
    with pytest.raises(InputError, match="support head"):
        tiny_options(tiny_dataset.dataset_dir, tmp_path, support_head=1.0, final_validation=True).validate()
    with pytest.raises(InputError, match="support schedule"):
        tiny_options(tiny_dataset.dataset_dir, tmp_path, support_schedule="ramp:abc").validate()
    with pytest.raises(InputError, match="only when fine-tuning"):
        tiny_options(tiny_dataset.dataset_dir, tmp_path, head_init="preserve").validate()


def test_function_preserving_start_from_the_trained_binary_model(tiny_dataset, tiny_binary_model_dir):
    """What the worker calls (``load_into_trainer`` with head init 'preserve'), on the real tiny binary model and a
    real case: the BackSplit network's first lesion probability equals the binary model's (< 1e-5)."""
    from types import SimpleNamespace

    import SimpleITK as sitk

    from backsplit.training.pretrained import load_into_trainer

    plans = json.loads((tiny_binary_model_dir / "plans.json").read_text(encoding="utf-8"))
    labels = json.loads((tiny_dataset.dataset_dir / "dataset.json").read_text(encoding="utf-8"))["labels"]
    checkpoint = tiny_binary_model_dir / "fold_all" / "checkpoint_final.pth"
    binary = build_network(plans, "2d", 2).eval()
    binary.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=False)["network_weights"])
    trainer = SimpleNamespace(was_initialized=True, network=build_network(plans, "2d", 4).eval())
    report = load_into_trainer(trainer, checkpoint, labels, "preserve", ["Lesion"])
    assert report["counts"]["output_layers"] == "function-preserving" and report["counts"]["reinitialised"] == 0
    assert report["function_preserving"]["rows_from"]["Organ"] == "background"
    image = sitk.GetArrayFromImage(sitk.ReadImage(str(sorted((tiny_dataset.dataset_dir / "imagesTr").iterdir())[0])))
    patch = plans["configurations"]["2d"]["patch_size"]
    x = torch.from_numpy(((image - image.mean()) / (image.std() + 1e-8)).astype(np.float32))[:, None]
    x = x[:, :, :patch[0], :patch[1]]
    with torch.no_grad():
        p_bin = torch.softmax(binary(x)[0].double(), 1)[:, 1]
        p_new = torch.softmax(trainer.network(x)[0].double(), 1)[:, 1]
    assert float((p_new - p_bin).abs().max()) < 1e-5
    trainer = SimpleNamespace(was_initialized=True, network=build_network(plans, "2d", 4))
    with pytest.raises(InputError, match="predicts Lesion, which is not a target"):   # only a binary model's
        load_into_trainer(trainer, checkpoint, {"background": 0, "Vessel": 1, "Organ": 2, "x": 3}, "preserve",
                          ["Organ"])


def test_fine_tune_binary_model_with_preserve(tiny_dataset, tiny_binary_model_dir, tmp_path):
    manifest, _ = _train(tiny_dataset, tmp_path / "a", pretrained_model=tiny_binary_model_dir,
                         head_init="preserve", support_schedule="ramp:3")
    transfer = manifest["weights_transfer"]
    assert transfer["output_layers"] == "function-preserving" and transfer["bias_shift"] == pytest.approx(
        -math.log(3)) and transfer["reinitialised"] == 0
    assert manifest["head_init"] == "preserve" and manifest["initial_lr"] == 1e-3


def test_support_head_network_takes_the_binary_model_as_its_lesion_head(tiny_binary_model_dir):
    """Fine-tuning a binary model with the support head: every stock weight (output layers too: the lesion head has
    the binary model's classes) is loaded; only the support head is new."""
    from types import SimpleNamespace

    from backsplit.training.dynamics import lesion_meta
    from backsplit.training.pretrained import load_into_trainer
    from backsplit.training.supporthead import attach_support_head

    plans = json.loads((tiny_binary_model_dir / "plans.json").read_text(encoding="utf-8"))
    checkpoint = tiny_binary_model_dir / "fold_all" / "checkpoint_final.pth"
    network = attach_support_head(build_network(plans, "2d", 2), 3)
    labels = lesion_meta({"labels": {"background": 0, "Lesion": 1, "Vessel": 2, "Organ": 3}}, 1)["labels"]
    report = load_into_trainer(SimpleNamespace(was_initialized=True, network=network), checkpoint, labels, "preserve",
                               ["Lesion"])
    assert report["counts"]["output_layers_kept"] is True
    assert report["reinitialised"] and all(k.startswith("decoder.support_layers.") for k in report["reinitialised"])
    binary = torch.load(checkpoint, map_location="cpu", weights_only=False)["network_weights"]
    state = network.state_dict()
    assert all(torch.equal(state[k], v) for k, v in binary.items())
    assert sorted(set(state) - set(binary)) == sorted(k for k in state if k.startswith("decoder.support_layers."))
