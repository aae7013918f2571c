"""Learned context end to end: a tiny real CPU training (nnU-Net 2d, child process) that updates the generator,
checkpoints both networks, resumes, and exports a model that BackSplit's existing predictor runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fixtures_data import make_case
from fixtures_nnunet import TINY_SHAPE, run_training, tiny_options

CONTEXT = "learned:2,k=1"          # a generator meta step every iteration, so two iterations update it twice
TRAINER = "BackSplitLearnedContextTrainer"


@pytest.fixture(scope="module")
def learned_runs(tiny_dataset, tmp_path_factory):
    """Run 1: one epoch of 2 iterations. Run 2: resume to 2 epochs and export the model (generator stripped)."""
    import torch

    work = tmp_path_factory.mktemp("learned work")
    fold_dir = work / "nnUNet_results" / "Dataset011_Tiny" / f"{TRAINER}__nnUNetPlans__2d" / "fold_all"
    first, events_1 = run_training(tiny_options(tiny_dataset.dataset_dir, work, epochs=1, iterations_per_epoch=2,
                                                val_iterations_per_epoch=1, context=CONTEXT))
    assert first.returncode == 0, "\n".join(first.log_lines[-40:])
    after_1 = torch.load(fold_dir / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    model_dir = work / "exported model"
    second, events_2 = run_training(tiny_options(tiny_dataset.dataset_dir, work, epochs=2, iterations_per_epoch=2,
                                                 val_iterations_per_epoch=1, context=CONTEXT, resume=True,
                                                 model_dir=model_dir))
    assert second.returncode == 0, "\n".join(second.log_lines[-40:])
    after_2 = torch.load(fold_dir / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    return {"fold_dir": fold_dir, "model_dir": model_dir, "after_1": after_1, "after_2": after_2,
            "events_1": events_1, "events_2": events_2}


def test_generator_is_trained_checkpointed_and_resumed(learned_runs):
    import torch

    from backsplit.training.colab.checkpoints import GENERATOR_KEY

    g1, g2 = learned_runs["after_1"][GENERATOR_KEY], learned_runs["after_2"][GENERATOR_KEY]
    assert g1["updates"] == 2 and g1["iterations"] == 2 and g1["spec"]["classes"] == 2
    assert g2["updates"] == 4 and g2["iterations"] == 4                      # counters continued after resume
    steps = [int(s["step"]) for s in g2["optimizer"]["state"].values()]
    assert steps and set(steps) == {4}                                       # Adam's state was restored, not reset
    changed = [k for k in g1["weights"] if not torch.equal(g1["weights"][k], g2["weights"][k])]
    assert changed, "the generator's weights did not change in the resumed epoch"
    seg_1, seg_2 = learned_runs["after_1"]["network_weights"], learned_runs["after_2"]["network_weights"]
    assert all(not torch.equal(seg_1[k], seg_2[k]) for k in seg_1 if k.startswith("encoder.") and "conv.weight" in k)
    assert all(isinstance(v, torch.Tensor) and v.dtype == torch.float32 for v in seg_2.values())
    resumed = next(e for e in learned_runs["events_2"] if e.stage == "train" and "resuming" in e.message)
    assert resumed.data["start_epoch"] == 1
    epochs = [e.data for e in learned_runs["events_1"] + learned_runs["events_2"] if e.stage == "epoch"]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert all(np.isfinite(e["train_loss"]) and len(e["pseudo_dice"]) == 3 for e in epochs)  # Lesion, Vessel, Organ


def test_exported_model_has_context_outputs_manifest_and_no_generator(learned_runs):
    import torch

    from backsplit.training.colab.checkpoints import GENERATOR_KEY

    model_dir = learned_runs["model_dir"]
    manifest = json.loads((model_dir / "backsplit_model.json").read_text(encoding="utf-8"))
    labels = {"background": 0, "Lesion": 1, "Vessel": 2, "Organ": 3, "learned context 1 of 2": 4,
              "learned context 2 of 2": 5}
    assert manifest["labels"] == labels and manifest["trainer"] == TRAINER and manifest["completed_epochs"] == 2
    assert json.loads((model_dir / "dataset.json").read_text(encoding="utf-8"))["labels"] == labels
    assert [s["name"] for s in manifest["schema"]["supports"]][-2:] == ["learned context 1 of 2",
                                                                         "learned context 2 of 2"]
    assert manifest["learned_context"]["classes"] == 2 and manifest["learned_context"]["margin_mm"] == 48.0
    assert manifest["learned_context"]["classes_named"] == {"learned context 1 of 2": 4, "learned context 2 of 2": 5}
    checkpoint = torch.load(model_dir / "fold_all" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert GENERATOR_KEY not in checkpoint                                   # segmentation network only
    heads = [v for k, v in checkpoint["network_weights"].items() if ".seg_layers." in k and k.endswith(".weight")]
    assert heads[-1].shape[0] == 1 + 1 + 2 + 2                               # 1 + T + S + t outputs
    assert GENERATOR_KEY in learned_runs["after_2"]                           # the work folder keeps it for resume


def test_existing_predictor_runs_the_learned_context_model(learned_runs):
    from backsplit.inference.model import load_predictor, read_model_info
    from backsplit.inference.predict import predict_arrays

    info = read_model_info(learned_runs["model_dir"])
    assert info.n_targets == 1 and len(info.schema.supports) == 4
    predictor = load_predictor(info, device="cpu", use_mirroring=False)
    case = make_case("new", shape=TINY_SHAPE, seed=42)
    prediction = predict_arrays(predictor, info, case.channels, case.geometry, probabilities=True)
    assert prediction.labels.shape == TINY_SHAPE and set(np.unique(prediction.labels)) <= set(range(6))
    lesion = prediction.lesion_only()
    assert set(np.unique(lesion)) <= {0, 1}                                   # context folded into background
    assert prediction.target_probability.shape == TINY_SHAPE
    assert Path(info.checkpoints[0]).name == "checkpoint_final.pth"
