"""Fixtures of the training-variant tests: the tiny models' nnU-Net plans and labels, and the networks
nnU-Net builds from them (``nnUNetTrainer.build_network_architecture``, as BackSplit's inference does)."""

from __future__ import annotations

import json

import pytest

LABELS = {"background": 0, "Lesion": 1, "Vessel": 2, "Organ": 3}   # the tiny BackSplit export (fixtures_nnunet)
BINARY_LABELS = {"background": 0, "Lesion": 1}
TARGETS = ("Lesion",)
T, S = 1, 2


@pytest.fixture(scope="session")
def planned(tiny_model_dir, tiny_binary_model_dir):
    """{"plans", "dataset_json", "binary_dataset_json"}: read from the tiny trained models (real nnU-Net plans)."""
    def read(path):
        return (json.loads(path.read_text(encoding="utf-8")))
    return {"plans": read(tiny_model_dir / "plans.json"), "dataset_json": read(tiny_model_dir / "dataset.json"),
            "binary_dataset_json": read(tiny_binary_model_dir / "dataset.json")}


def build_network(plans: dict, configuration: str, n_outputs: int, deep_supervision: bool = True):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    manager = PlansManager(plans)
    return nnUNetTrainer.build_network_architecture(manager, manager.get_configuration(configuration), 1, n_outputs,
                                                    deep_supervision)
