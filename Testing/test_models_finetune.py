"""Fine-tuning from the previous model on the enlarged dataset: which weights are loaded (nnU-Net's rule, output
layers kept when the label sets are equal), and the new manifest's links to its parent model and dataset version.
Real networks built from the tiny models' plans, and real tiny trainings in child processes on the CPU."""

import json

import pytest
from fixtures_data import make_case
from fixtures_nnunet import TINY_SHAPE, export_tiny, run_training, tiny_options

from backsplit.datasets.add import AddRequest, add_cases
from backsplit.errors import InputError
from backsplit.io.cases import InMemoryCaseSource
from backsplit.training.manifest import read_manifest
from backsplit.training.pretrained import OUTPUT_LAYER_KEY, label_sets_match, transfer_weights

torch = pytest.importorskip("torch")


def network_for(model_dir, heads):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = PlansManager(json.loads((model_dir / "plans.json").read_text(encoding="utf-8")))
    torch.manual_seed(0)
    return nnUNetTrainer.build_network_architecture(plans, plans.get_configuration("2d"), 1, heads, True)


def weights(model_dir):
    return torch.load(model_dir / "fold_all" / "checkpoint_final.pth", map_location="cpu",
                      weights_only=False)["network_weights"]


def test_weight_transfer_rules(tiny_model_dir, tiny_binary_model_dir):
    binary, backsplit = weights(tiny_binary_model_dir), weights(tiny_model_dir)
    net = network_for(tiny_model_dir, 4)
    fresh = {k: v.clone() for k, v in net.state_dict().items()}
    report = transfer_weights(net, binary, keep_output_layers=False)         # 2 classes -> 4: nnU-Net's rule
    state = net.state_dict()
    assert report["reinitialised"] and all(OUTPUT_LAYER_KEY in k for k in report["reinitialised"])
    for key, value in state.items():
        expected = fresh[key] if OUTPUT_LAYER_KEY in key else binary[key]
        assert torch.equal(value, expected), key
    net = network_for(tiny_model_dir, 4)
    report = transfer_weights(net, backsplit, keep_output_layers=True)       # same label set: everything
    assert report["reinitialised"] == []
    assert all(torch.equal(v, backsplit[k]) for k, v in net.state_dict().items())
    with pytest.raises(InputError, match=r"seg_layers.* shape \(2, .*\) in the model to fine-tune but \(4, "):
        transfer_weights(network_for(tiny_model_dir, 4), binary, keep_output_layers=True)
    assert label_sets_match({"background": 0, "a": 1}, {"a": 1, "background": 0})
    assert not label_sets_match({"background": 0, "a": 1}, {"background": 0, "a": 1, "b": 2})
    assert not label_sets_match(None, {"background": 0})


def test_trainer_loading_choice(tiny_model_dir, tiny_binary_model_dir, tiny_dataset):
    """What the training worker calls: the output layers are kept exactly when the parent's dataset.json names the
    dataset's labels. (The trainer is a stand-in holding a real network: building nnU-Net's trainer needs a
    preprocessed dataset, which the end-to-end test below has.)"""
    from types import SimpleNamespace

    from backsplit.training.pretrained import load_into_trainer

    labels = json.loads((tiny_dataset.dataset_dir / "dataset.json").read_text(encoding="utf-8"))["labels"]
    for parent, kept in ((tiny_model_dir, True), (tiny_binary_model_dir, False)):
        trainer = SimpleNamespace(was_initialized=True, network=network_for(tiny_model_dir, 4))
        report = load_into_trainer(trainer, parent / "fold_all" / "checkpoint_final.pth", labels)
        assert report["counts"]["output_layers_kept"] is kept and (report["counts"]["reinitialised"] == 0) is kept
        source = weights(parent)
        head = [k for k in trainer.network.state_dict() if OUTPUT_LAYER_KEY in k][-1]
        assert torch.equal(trainer.network.state_dict()[head], source[head]) is kept


def test_fine_tune_on_the_new_version_links_parent_and_version(tiny_model_dir, tiny_binary_model_dir, tmp_path):
    result = export_tiny(tmp_path / "raw")          # the parent models' dataset (Dataset011_Tiny), version 1
    new_case = InMemoryCaseSource(make_case("tiny9", shape=TINY_SHAPE, seed=9))
    assert add_cases([new_case], AddRequest(result.dataset_dir)).version == 2
    for parent, same_labels in ((tiny_binary_model_dir, False),):   # same labels: test_trainer_loading_choice
        out = tmp_path / "models" / f"child-of-{parent.parent.name}"
        options = tiny_options(result.dataset_dir, tmp_path / "work", pretrained_model=parent, epochs=1,
                               iterations_per_epoch=2, val_iterations_per_epoch=1, model_dir=out,
                               extra={"overwrite": True})
        process, events = run_training(options)
        assert process.returncode == 0, "\n".join(process.log_lines[-40:])
        transfer = [e.data["weights_transfer"] for e in events if e.data and "weights_transfer" in e.data]
        assert len(transfer) == 1 and transfer[0]["output_layers_kept"] is same_labels
        assert (transfer[0]["reinitialised"] == 0) is same_labels and transfer[0]["loaded"] > 0
        manifest, parent_manifest = read_manifest(out), read_manifest(parent)
        assert manifest["dataset_version"] == 2 and manifest["dataset_content"]
        assert manifest["parent_model"]["model_id"] == parent_manifest["model_id"] != manifest["model_id"]
        assert manifest["parent_model"]["path"] == str(parent.resolve())
        assert manifest["parent_model"]["dataset_version"] == 1 and manifest["initial_lr"] == 1e-3
        assert manifest["weights_transfer"]["output_layers_kept"] is same_labels
        assert not (parent / ".backsplit-in-use").exists()       # the fine-tuning mark is gone with the process


def test_loop_round_options(tiny_model_dir, tmp_path):
    from backsplit.models.loop import FineTuneRequest, fine_tune_options

    result = export_tiny(tmp_path / "raw")
    add_cases([InMemoryCaseSource(make_case("tiny9", shape=TINY_SHAPE, seed=9))], AddRequest(result.dataset_dir))
    request = FineTuneRequest(result.dataset_dir, tiny_model_dir, tmp_path / "models", tmp_path / "work", epochs=3)
    options = fine_tune_options(request)
    parent = read_manifest(tiny_model_dir)
    assert options.model_dir == tmp_path / "models" / "Tiny-v2" and options.pretrained_model == tiny_model_dir
    assert options.learning_rate == 1e-3 and options.epochs == 3 and options.fold == "all"
    assert options.configuration == parent["configuration"] and options.batch_size == parent["batch_size"]
    options.validate()
    (tmp_path / "models" / "Tiny-v2").mkdir(parents=True)
    assert fine_tune_options(request).model_dir.name == "Tiny-v2_2"
