"""The interactive loop's fine-tuning step: from the current model, on the dataset's newest version, into the models
location, with a short budget (learning rate 1e-3, as the BackSplit paper fine-tunes). Pure: builds the options;
``training.process.TrainingProcess`` runs them (the command line's equivalent is ``backsplit train DATASET
--pretrained MODEL --model-dir MODELS/NAME --epochs N``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from backsplit.datasets.layout import read_dataset_json
from backsplit.datasets.versions import current_version
from backsplit.models.location import free_name
from backsplit.training.options import FINE_TUNE_LR, TrainOptions

LOOP_EPOCHS = 5                 # a short budget: the parent model already knows the task
LOOP_ITERATIONS = 50


@dataclass
class FineTuneRequest:
    dataset_dir: Path            # the BackSplit dataset (its newest version is trained on)
    parent_model: Path           # the model to start from (a folder under the models location, or any model folder)
    models_dir: Path             # where the new model goes
    work_dir: Path               # nnUNet_preprocessed / nnUNet_results for this training
    epochs: int = LOOP_EPOCHS
    iterations_per_epoch: int = LOOP_ITERATIONS
    learning_rate: float = FINE_TUNE_LR
    device: str = "auto"
    name: Optional[str] = None   # default: <dataset name>-v<version>, made unique
    batch_size: Optional[int] = None   # default: the parent model's batch size


def new_model_name(models_dir: Path, dataset_dir: Path) -> str:
    """``<dataset name without DatasetNNN_>-v<version>``, or with ``_2``, ``_3`` ... when taken."""
    meta = read_dataset_json(dataset_dir)
    base = re.sub(r"^Dataset\d{3}_", "", Path(dataset_dir).name) or "model"
    return free_name(Path(models_dir), f"{base}-v{current_version(meta)}")


def fine_tune_options(request: FineTuneRequest) -> TrainOptions:
    """The training options of one loop round; the configuration is the parent model's (its plans are reused)."""
    from backsplit.training.manifest import read_manifest

    parent = read_manifest(request.parent_model)
    name = request.name or new_model_name(request.models_dir, request.dataset_dir)
    return TrainOptions(dataset_dir=Path(request.dataset_dir), work_dir=Path(request.work_dir),
                        configuration=parent.get("configuration", "2d"), fold="all", epochs=int(request.epochs),
                        iterations_per_epoch=int(request.iterations_per_epoch),
                        val_iterations_per_epoch=max(1, int(request.iterations_per_epoch) // 5),
                        device=request.device, sampling=parent.get("sampling", "target")
                        if parent.get("sampling") in ("target", "stock") else "target",
                        pretrained_model=Path(request.parent_model), initial_lr=float(request.learning_rate),
                        model_dir=Path(request.models_dir) / name,
                        batch_size=request.batch_size or parent.get("batch_size"),   # the parent's, as trained
                        extra={"overwrite": True})
