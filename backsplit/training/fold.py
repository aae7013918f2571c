"""One training run: one fold of one dataset in this process (``train_one``), the checks of a model to fine-tune
from (``check_pretrained``), and the copy of a finished model aside (``copy_model``).

Runs inside the training child (``training/worker.py``), with nnU-Net's variables set; the multi-GPU variant of
``train_one`` is ``training/ddp.train_one_ddp``, which writes the same manifest.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Optional, Sequence

from backsplit.datasets.folder import DatasetFolder
from backsplit.datasets.layout import DATASET_JSON, read_dataset_json
from backsplit.errors import BackSplitError, InputError, OutputError
from backsplit.models.lineage import model_lineage
from backsplit.runtime.progress import ProgressEvent
from backsplit.runtime.progress import emit_event as emit  # one JSON event line on stdout, read by the parent
from backsplit.training.dynamics import (
    export_support_head_model,
    lesion_meta,
    manifest_record,
    target_names,
    variant_settings,
)
from backsplit.training.lock import TrainingLock, refuse_existing_model
from backsplit.training.manifest import build_manifest, read_manifest, write_manifest
from backsplit.training.options import TrainOptions
from backsplit.training.paths import results_dir
from backsplit.training.pretrained import load_into_trainer
from backsplit.training.timing import TrainingClock


def check_pretrained(model_dir: Path, dataset: DatasetFolder, configuration: str) -> tuple[dict, Path]:
    """The plans and checkpoint of the model to fine-tune from; refuse a model that cannot fit this dataset."""
    model_dir = Path(model_dir)
    plans_path = model_dir / "plans.json"
    if not plans_path.is_file():
        raise InputError("the model to fine-tune has no plans.json; choose a model folder written by BackSplit "
                         "training or nnU-Net", path=str(model_dir))
    plans = json.loads(plans_path.read_text(encoding="utf-8"))
    if os.environ.get("nnUNet_results") and model_dir.resolve() == results_dir(dataset, configuration).resolve():
        raise InputError("the model to fine-tune is this training's own output folder, which the new model would "
                         "overwrite; copy it aside first (train it with --model-dir, or 'backsplit model import'), or "
                         "use another work folder", path=str(model_dir))
    try:
        manifest = read_manifest(model_dir)
        folds = manifest.get("folds", ["all"])
        if manifest.get("configuration") != configuration:
            raise InputError(f"the model to fine-tune was trained with configuration '{manifest.get('configuration')}'"
                             f", not '{configuration}'; choose the same configuration", path=str(model_dir))
    except InputError as exc:
        if "configuration" in str(exc):
            raise
        folds = [p.name[len("fold_"):] for p in sorted(model_dir.glob("fold_*"))]
        emit(ProgressEvent("train", "warning: fine-tuning from a plain nnU-Net model folder (no "
                                    f"backsplit_model.json): its description is derived from plans.json and "
                                    f"dataset.json ({model_dir})"))
    model_channels = read_dataset_json(model_dir, required=("channel_names",), fix="choose a complete model folder")[
        "channel_names"] if (model_dir / DATASET_JSON).is_file() else None
    if model_channels is not None and len(model_channels) != len(dataset.meta["channel_names"]):
        raise InputError(f"the model to fine-tune takes {len(model_channels)} input channel(s) "
                         f"({', '.join(model_channels.values())}) but the dataset has "
                         f"{len(dataset.meta['channel_names'])}; fine-tune from a model with the same channels",
                         path=str(model_dir))
    if configuration not in plans.get("configurations", {}):
        raise InputError(f"the model to fine-tune has no '{configuration}' configuration in its plans",
                         path=str(model_dir))
    for fold in folds:
        for name in ("checkpoint_final.pth", "checkpoint_best.pth", "checkpoint_latest.pth"):
            checkpoint = model_dir / f"fold_{fold}" / name
            if checkpoint.is_file():
                return plans, checkpoint
    raise InputError("the model to fine-tune has no checkpoint (fold_*/checkpoint_final.pth)", path=str(model_dir))


def train_one(dataset: DatasetFolder, options: TrainOptions, fold: str, device, plans: dict,
              pretrained_checkpoint: Optional[Path], label: str, run_folds: Sequence[str] = (),
              context: str = "none", clock: Optional[TrainingClock] = None) -> Path:
    """Train one fold of one dataset in this process; returns the model folder (nnU-Net's results folder).

    The manifest lists ``fold`` or, for cross-validation (``run_folds``), every fold of ``run_folds`` that has
    finished (prediction ensembles them). ``context``: "learned[:t]..." trains the learned-context trainer
    (``colab``) with the dataset.json extended by the context classes. ``clock``: the job's ``TrainingClock``
    (times the first iterations for the up-front estimate; None: no estimate). Raises InputError (a model to
    fine-tune that does not fit), OutputError (a model already there; ``lock.refuse_existing_model``)."""
    import numpy as np
    import torch
    from nnunetv2.run.run_training import maybe_load_checkpoint

    from backsplit.training.colab.setup import learned_context_trainer, manifest_entry
    from backsplit.training.trainer import BackSplitTrainer

    trainer_class, meta = learned_context_trainer(context, dataset.meta) or (BackSplitTrainer, dataset.meta)
    base = results_dir(dataset, options.configuration, trainer_class.__name__, options.plans_name)
    fold_dir = base / f"fold_{fold}"
    with TrainingLock(base.parent / f".backsplit-train-{base.name}-fold_{fold}.lock"):
        refuse_existing_model(fold_dir, options.resume, bool(options.extra.get("overwrite")))
        if options.seed is not None:
            np.random.seed(options.seed)
            torch.manual_seed(options.seed)
        BackSplitTrainer.settings = {
            "epochs": options.epochs, "iterations_per_epoch": options.iterations_per_epoch,
            "val_iterations_per_epoch": options.val_iterations_per_epoch, "initial_lr": options.learning_rate,
            "save_every": options.save_every, "sampling": options.sampling, "target_labels": dataset.target_labels,
            **variant_settings(options, dataset)}                                  # training/dynamics.py
        BackSplitTrainer.event_sink = clock.observing(emit) if clock else emit   # the clock refines its estimate
        BackSplitTrainer.step_sink = clock.step if clock else None               # ... from timed iterations
        if clock:
            clock.start_run()
        run_plans = json.loads(json.dumps(plans))
        run_plans["continue_training"] = bool(options.resume)
        if options.batch_size:  # this run only: the preprocessed plans (shared with the twin) stay as planned
            run_plans["configurations"][options.configuration]["batch_size"] = int(options.batch_size)
        trainer = trainer_class(run_plans, options.configuration, fold if fold == "all" else int(fold), meta, device)
        started = time.time()
        emit(ProgressEvent("train", f"{label}: starting ({options.configuration}, fold {fold}, {device})", 0,
                           options.epochs, {"model": label, "output_folder": str(base)}))
        transfer = None
        if pretrained_checkpoint is not None:
            try:  # nnU-Net's rule; output layers kept when the label sets are equal (training/pretrained.py)
                support_head = BackSplitTrainer.settings["support_head"] is not None   # lesion head: binary labels
                head_meta = lesion_meta(meta, len(dataset.target_labels)) if support_head else meta
                transfer = load_into_trainer(trainer, pretrained_checkpoint, head_meta["labels"],
                                             options.variants["head_init"], target_names(meta, dataset.target_labels))
                emit(ProgressEvent("train", f"{label}: fine-tuning from {options.pretrained_model}: "
                                            f"{transfer['message']}", 0, options.epochs,
                                   {"weights_transfer": transfer["counts"]}))
            except (AssertionError, RuntimeError, KeyError) as exc:
                raise InputError(f"the model to fine-tune does not fit this dataset's network "
                                 f"({exc or 'shape mismatch'}); fine-tune from a model trained with the same plans "
                                 "(e.g. the binary baseline trained by BackSplit)",
                                 path=str(pretrained_checkpoint)) from None
        elif options.resume:
            maybe_load_checkpoint(trainer, True, False, None)
            emit(ProgressEvent("train", f"{label}: resuming at epoch {trainer.current_epoch}", trainer.current_epoch,
                               options.epochs, {"start_epoch": trainer.current_epoch}))
        trainer.run_training()
        export = None
        if BackSplitTrainer.settings.get("support_head") is not None:   # the lesion head as a plain nnU-Net model
            export = export_support_head_model(base, fold, meta, len(dataset.target_labels))
            meta = lesion_meta(meta, len(dataset.target_labels))
        validation_s = None
        if options.final_validation_for(fold):   # its cost: predicting the fold's validation cases once, mirrored
            emit(ProgressEvent("validate", f"{label}: nnU-Net validation of fold {fold}"))
            validation_started = time.time()
            trainer.perform_actual_validation(options.validation_probabilities)
            validation_s = round(time.time() - validation_started, 1)
            emit(ProgressEvent("validate", f"{label}: validation of fold {fold} took {validation_s:.0f} s "
                                           "(fold_*/validation/summary.json; --no-final-validation skips it)",
                               None, None, {"final_validation_s": validation_s}))
        elapsed = time.time() - started
        folds = [f for f in run_folds if f == fold or (base / f"fold_{f}" / "checkpoint_final.pth").is_file()] \
            if run_folds else [fold]
        earlier = read_manifest_or_none(base) if run_folds and fold != run_folds[0] else None
        if earlier:  # cross-validation: the manifest's time covers all folds so far
            elapsed += float(earlier.get("training_time_s", 0.0))
        manifest = build_manifest(
            dataset_meta=meta, plans=plans, configuration=options.configuration, folds=folds,
            trainer=trainer_class.__name__, plans_name=options.plans_name, epochs=options.epochs,
            iterations_per_epoch=options.iterations_per_epoch, initial_lr=options.learning_rate,
            sampling=options.sampling if dataset.variant != "binary" else "stock (binary: targets are all classes)",
            pretrained_from=str(options.pretrained_model) if pretrained_checkpoint else None,
            source_dataset=dataset.folder_name, training_time_s=elapsed, device=str(device),
            completed_epochs=int(trainer.current_epoch), training_orientation=training_orientation(dataset),
            batch_size=int(trainer.batch_size),
            lineage=model_lineage(meta, options.pretrained_model if pretrained_checkpoint else None, transfer))
        if validation_s is not None:
            manifest["final_validation_s"] = validation_s
        if clock:
            manifest["estimate"] = clock.record()   # the up-front estimate next to the real time
        if manifest_entry(meta):
            manifest["learned_context"] = manifest_entry(meta)
        if trainer_class is BackSplitTrainer:
            manifest.update(manifest_record(options, trainer, export, transfer))
        write_manifest(base, manifest)
    return base


def training_orientation(dataset: DatasetFolder) -> Optional[str]:
    """The most common orientation code (e.g. 'LPS') of the training images; inference reorients inputs to it."""
    import collections

    import SimpleITK as sitk

    codes = collections.Counter()
    for case in dataset.case_ids:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(dataset.folder / "imagesTr" / f"{case}_0000{dataset.meta['file_ending']}"))
        reader.ReadImageInformation()
        codes[sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(reader.GetDirection())] += 1
    return codes.most_common(1)[0][0] if codes else None


def read_manifest_or_none(folder: Path) -> Optional[dict]:
    """The model manifest in ``folder``, or None where there is none (or it cannot be read)."""
    try:
        return read_manifest(folder)
    except BackSplitError:
        return None


def copy_model(source: Path, target: Path, folds: Sequence[str]) -> Path:
    """Copy a finished model (manifest, dataset.json, plans.json, the folds' final checkpoints and logs) aside."""
    if target.exists():
        raise OutputError(f"the model folder '{target}' already exists; choose another one")
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in ("backsplit_model.json", "dataset.json", "plans.json", "dataset_fingerprint.json"):
        if (source / name).is_file():
            shutil.copy2(source / name, staging / name)
    for fold in folds:
        (staging / f"fold_{fold}").mkdir()
        for item in (source / f"fold_{fold}").iterdir():
            if item.is_file() and item.name != "checkpoint_latest.pth":
                shutil.copy2(item, staging / f"fold_{fold}" / item.name)
        if (read_manifest_or_none(source) or {}).get("learned_context"):  # the exported model: segmentation only
            from backsplit.training.colab.checkpoints import strip_generator

            strip_generator(staging / f"fold_{fold}")
    staging.replace(target)
    return target
