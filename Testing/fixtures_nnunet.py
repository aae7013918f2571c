"""Tiny real nnU-Net trainings shared by the training and inference tests (trained once per test session).

The dataset: 5 synthetic cases of 16x32x32 voxels (a box 'Organ', a 'Lesion' inside it, a 'Vessel' crossing it),
exported as a BackSplit dataset (Lesion; supports Vessel, Organ) with its binary twin. Models: 2d, 3 epochs of
4 iterations, on the CPU.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures_data import make_case

TINY_SHAPE = (16, 32, 32)


def export_tiny(root: Path, n_cases: int = 5, dataset_id: int = 11):
    from backsplit.datasets.export import ExportRequest, export_dataset
    from backsplit.io.cases import InMemoryCaseSource

    sources = [InMemoryCaseSource(make_case(f"tiny{i}", shape=TINY_SHAPE, seed=i)) for i in range(n_cases)]
    return export_dataset(sources, ExportRequest(root, dataset_id, "Tiny", ["Lesion"], ["Vessel", "Organ"]))


def tiny_options(dataset_dir: Path, work_dir: Path, **kw):
    from backsplit.training.options import TrainOptions

    # recipe "paper": the shared tiny models keep the paper's recipe (nnU-Net's own loss) that the tests were written
    # for; the default recipe (ramp:200,lvr=0.5) is trained by test_training_variants.py
    defaults = dict(dataset_dir=dataset_dir, work_dir=work_dir, configuration="2d", fold="all", epochs=3,
                    iterations_per_epoch=4, val_iterations_per_epoch=2, save_every=1, device="cpu", seed=1,
                    recipe="paper")
    defaults.update(kw)
    return TrainOptions(**defaults)


def run_training(options, timeout: float = 600):
    """Run a training child process to the end; returns (process, events without log lines)."""
    from backsplit.training.process import TrainingProcess

    process = TrainingProcess(options).start()
    process.wait(timeout)
    events = [e for e in process.poll_events() if e.stage != "log"]
    return process, events


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """The exported BackSplit dataset and binary twin (ExportResult)."""
    return export_tiny(tmp_path_factory.mktemp("tiny raw"))


@pytest.fixture(scope="session")
def tiny_training(tiny_dataset, tmp_path_factory):
    """A finished side-by-side training: (options, process, events, [backsplit model dir, binary model dir])."""
    work = tmp_path_factory.mktemp("tiny work")
    options = tiny_options(tiny_dataset.dataset_dir, work, with_binary=True)
    process, events = run_training(options)
    assert process.returncode == 0, "\n".join(process.log_lines[-40:])
    models = [Path(m) for m in process.result_models]
    return options, process, events, models


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_training) -> Path:
    """A trained BackSplit model folder (manifest, dataset.json, plans.json, fold_all/checkpoint_final.pth)."""
    return tiny_training[3][0]


@pytest.fixture(scope="session")
def tiny_binary_model_dir(tiny_training) -> Path:
    return tiny_training[3][1]
