"""The training child process: ``python -m backsplit.training.worker OPTIONS.json``.

Runs with nnU-Net's variables already in its environment (see ``environment.py``). Prints progress events (one
prefixed JSON line each) among nnU-Net's own output. Steps: check the dataset(s); plan and preprocess with nnU-Net's
integrity check (plans shared with the binary twin, or taken from the model being fine-tuned); train with
``BackSplitTrainer``; write the model folder's manifest. Exit code 0 on success, 1 on a user error (message in the
final 'error' event), 2 on an unexpected error.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Optional, Sequence

from backsplit.runtime.devices import resolve_device, usable_cpu_count
from backsplit.errors import BackSplitError, InputError, OutputError
from backsplit.training.timing import TrainingClock
from backsplit.runtime.progress import ProgressEvent, emit_event
from backsplit.training.case_counter import FolderProgress
from backsplit.datasets.folder import TrainingDataset, load_training_dataset
from backsplit.training.lock import TrainingLock, refuse_existing_model
from backsplit.models.lineage import model_lineage
from backsplit.models.usage import ModelInUse
from backsplit.training.manifest import build_manifest, read_manifest, write_manifest
from backsplit.training.pretrained import load_into_trainer
from backsplit.training.dynamics import (export_support_head_model, lesion_meta, manifest_record, target_names,
                                        variant_settings)
from backsplit.training.ddp import check_request, train_one_ddp
from backsplit.training.options import PLANS_NAME, TRAINER_NAME, TrainOptions, CROSS_VALIDATION, resolve_folds, trainer_folder_name


_CLOCK: Optional[TrainingClock] = None   # times the first iterations: the up-front estimate (set by ``run``)


emit = emit_event   # one JSON event line per call, read back by the parent process


def preprocessed_dir(dataset: TrainingDataset) -> Path:
    return Path(os.environ["nnUNet_preprocessed"]) / dataset.folder_name


def results_dir(dataset: TrainingDataset, configuration: str, trainer: str = TRAINER_NAME) -> Path:
    return Path(os.environ["nnUNet_results"]) / dataset.folder_name / trainer_folder_name(configuration, trainer)


def _marker(dataset: TrainingDataset, configuration: str) -> Path:
    return preprocessed_dir(dataset) / f"backsplit_prepared_{configuration}.json"


def prepare(dataset: TrainingDataset, options: TrainOptions, plans_from: Optional[dict]) -> dict:
    """Plan and preprocess ``dataset`` once (again when the export changed or a run was interrupted).

    ``plans_from``: plans to use instead of planning (the BackSplit dataset's plans for its binary twin, or the
    pretrained model's plans when fine-tuning), so that both models see identical inputs and networks.
    """
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprints, plan_experiments,
                                                                      preprocess)
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    config = options.configuration
    folder = preprocessed_dir(dataset)
    plans_file = folder / f"{PLANS_NAME}.json"
    content = dataset.content_hash()
    wanted_plans = _plans_for(dataset, plans_from) if plans_from is not None else None
    marker = _marker(dataset, config)
    required = [plans_file, folder / "dataset.json", folder / "dataset_fingerprint.json"]
    if marker.is_file() and all(p.is_file() for p in required):
        recorded = json.loads(marker.read_text())
        current = json.loads(plans_file.read_text())
        if recorded.get("content") == content and (wanted_plans is None or _same_plans(current, wanted_plans)):
            emit(ProgressEvent("preprocess", f"{dataset.folder_name}: already preprocessed ({config})", 1, 1))
            return current
    marker.unlink(missing_ok=True)  # an interrupted or outdated preparation is redone from scratch
    n = max(1, options.preprocess_processes)
    emit(ProgressEvent("plan", f"{dataset.folder_name}: checking the dataset with nnU-Net", 0, 3))
    verify_dataset_integrity(str(dataset.folder), n)
    folder.mkdir(parents=True, exist_ok=True)
    emit(ProgressEvent("plan", f"{dataset.folder_name}: extracting the dataset fingerprint", 1, 3))
    extract_fingerprints([dataset.dataset_id], num_processes=n, check_dataset_integrity=False, clean=True,
                         verbose=False, show_progress_bar=False)
    if wanted_plans is None:
        plan_experiments([dataset.dataset_id])
    else:
        emit(ProgressEvent("plan", f"{dataset.folder_name}: using shared plans", 1, 3))
        plans_file.write_text(json.dumps(wanted_plans, indent=2))
        shutil.copy2(dataset.folder / "dataset.json", folder / "dataset.json")  # nnU-Net's preprocessor reads it here
    plans = json.loads(plans_file.read_text())
    if config not in plans["configurations"]:
        raise InputError(f"nnU-Net planned no '{config}' configuration for this dataset (it planned "
                         f"{', '.join(plans['configurations'])}); choose one of those", path=str(dataset.folder))
    data_identifier = plans["configurations"][config]["data_identifier"]
    shutil.rmtree(folder / data_identifier, ignore_errors=True)
    emit(ProgressEvent("preprocess", f"{dataset.folder_name}: preprocessing ({config})", 2, 3))
    cases = len(dataset.case_ids)   # per-case progress, on the 2/3..3/3 stretch of the bar: cases written so far

    def preprocessed(done: int, total: int) -> None:
        emit(ProgressEvent("preprocess", f"{dataset.folder_name}: preprocessing ({config}), case {done}/{total}",
                           2 * total + done, 3 * total, {"phase": "cases", "cases_done": done, "cases": total}))

    with FolderProgress(folder / data_identifier, "*.pkl", cases, preprocessed):
        preprocess([dataset.dataset_id], PLANS_NAME, (config,), (n,), verbose=False, show_progress_bar=False)
    marker.write_text(json.dumps({"content": content, "configuration": config}))
    emit(ProgressEvent("preprocess", f"{dataset.folder_name}: preprocessed", 3, 3))
    return plans


def _plans_for(dataset: TrainingDataset, source: dict) -> dict:
    plans = json.loads(json.dumps(source))
    plans["dataset_name"] = dataset.folder_name
    plans["plans_name"] = PLANS_NAME
    return plans


def _same_plans(a: dict, b: dict) -> bool:
    keys = ("configurations", "foreground_intensity_properties_per_channel", "transpose_forward", "original_median_spacing_after_transp")
    return all(a.get(k) == b.get(k) for k in keys)


def check_pretrained(model_dir: Path, dataset: TrainingDataset, configuration: str) -> tuple[dict, Path]:
    """The plans and checkpoint of the model to fine-tune from; refuse a model that cannot fit this dataset."""
    model_dir = Path(model_dir)
    plans_path = model_dir / "plans.json"
    if not plans_path.is_file():
        raise InputError("the model to fine-tune has no plans.json; choose a model folder written by BackSplit "
                         "training or nnU-Net", path=str(model_dir))
    plans = json.loads(plans_path.read_text())
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
    model_channels = json.loads((model_dir / "dataset.json").read_text())["channel_names"] \
        if (model_dir / "dataset.json").is_file() else None
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


def train_one(dataset: TrainingDataset, options: TrainOptions, fold: str, device, plans: dict,
              pretrained_checkpoint: Optional[Path], label: str, run_folds: Sequence[str] = (),
              context: str = "none") -> Path:
    """Train one fold of one dataset; the manifest lists ``fold`` or, for cross-validation (``run_folds``), every
    fold of ``run_folds`` that has finished (prediction ensembles them). ``context``: "learned[:t]..." trains the
    learned-context trainer (``colab``) with the dataset.json extended by the context classes."""
    import numpy as np
    import torch
    from nnunetv2.run.run_training import maybe_load_checkpoint

    from backsplit.training.colab.setup import learned_context_trainer, manifest_entry
    from backsplit.training.trainer import BackSplitTrainer

    trainer_class, meta = learned_context_trainer(context, dataset.meta) or (BackSplitTrainer, dataset.meta)
    base = results_dir(dataset, options.configuration, trainer_class.__name__)
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
            **variant_settings(options, dataset)}                                  # issue 19 (training/dynamics.py)
        BackSplitTrainer.event_sink = _CLOCK.observing(emit) if _CLOCK else emit   # the clock refines its estimate
        BackSplitTrainer.step_sink = _CLOCK.step if _CLOCK else None               # ... from timed iterations
        if _CLOCK:
            _CLOCK.start_run()
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
                raise InputError(f"the model to fine-tune does not fit this dataset's network ({exc or 'shape mismatch'})"
                                 "; fine-tune from a model trained with the same plans (e.g. the binary twin trained "
                                 "by BackSplit)", path=str(pretrained_checkpoint)) from None
        elif options.resume:
            maybe_load_checkpoint(trainer, True, False, None)
            emit(ProgressEvent("train", f"{label}: resuming at epoch {trainer.current_epoch}", trainer.current_epoch,
                               options.epochs, {"start_epoch": trainer.current_epoch}))
        trainer.run_training()
        export = None
        if BackSplitTrainer.settings.get("support_head") is not None:   # the lesion head as a plain nnU-Net model
            export = export_support_head_model(base, fold, meta, len(dataset.target_labels))
            meta = lesion_meta(meta, len(dataset.target_labels))
        if options.final_validation:
            emit(ProgressEvent("validate", f"{label}: nnU-Net validation of fold {fold}"))
            trainer.perform_actual_validation(False)
        elapsed = time.time() - started
        folds = [f for f in run_folds if f == fold or (base / f"fold_{f}" / "checkpoint_final.pth").is_file()] \
            if run_folds else [fold]
        earlier = read_manifest_or_none(base) if run_folds and fold != run_folds[0] else None
        if earlier:  # cross-validation: the manifest's time covers all folds so far
            elapsed += float(earlier.get("training_time_s", 0.0))
        manifest = build_manifest(
            dataset_meta=meta, plans=plans, configuration=options.configuration, folds=folds,
            trainer=trainer_class.__name__, plans_name=PLANS_NAME, epochs=options.epochs,
            iterations_per_epoch=options.iterations_per_epoch, initial_lr=options.learning_rate,
            sampling=options.sampling if dataset.variant != "binary" else "stock (binary: targets are all classes)",
            pretrained_from=str(options.pretrained_model) if pretrained_checkpoint else None,
            source_dataset=dataset.folder_name, training_time_s=elapsed, device=str(device),
            completed_epochs=int(trainer.current_epoch), training_orientation=training_orientation(dataset),
            batch_size=int(trainer.batch_size),
            lineage=model_lineage(meta, options.pretrained_model if pretrained_checkpoint else None, transfer))
        if _CLOCK:
            manifest["estimate"] = _CLOCK.record()   # the up-front estimate next to the real time
        if manifest_entry(meta):
            manifest["learned_context"] = manifest_entry(meta)
        if trainer_class is BackSplitTrainer:
            manifest.update(manifest_record(options, trainer, export, transfer))
        write_manifest(base, manifest)
    return base


def training_orientation(dataset: TrainingDataset) -> Optional[str]:
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


def run(options: TrainOptions) -> list[Path]:
    import torch

    global _CLOCK
    job_started = time.time()
    options.validate()
    dataset = load_training_dataset(options.dataset_dir)
    if Path(os.environ.get("nnUNet_raw", "")).resolve() != dataset.folder.parent:
        raise BackSplitError("the training process was started without nnU-Net's variables for this dataset; start "
                             "it through backsplit.training.process.TrainingProcess")
    datasets = [dataset]
    if options.with_binary:
        if options.pretrained_model is not None:
            raise InputError("fine-tuning and training the binary twin side by side cannot be combined; train the "
                             "twin first, then fine-tune from it")
        twin_folder = dataset.twin_folder
        if twin_folder is None or not twin_folder.is_dir():
            raise InputError("the dataset has no binary twin next to it (dataset.json 'backsplit.twin'); export it with "
                             "the binary twin", path=str(dataset.folder))
        twin = load_training_dataset(twin_folder)
        if twin.case_ids != dataset.case_ids:
            raise InputError("the binary twin does not hold the same cases; export both again", path=str(twin.folder))
        datasets.append(twin)
    folds = resolve_folds(options.fold, len(dataset.case_ids))
    cross_validation = options.fold == CROSS_VALIDATION
    device = resolve_device(options.device)
    if options.num_gpus > 1:   # refused before preprocessing: not CUDA, or fewer GPUs visible than asked
        if options.device == "auto" and device.type != "cuda":
            raise InputError(f"--num-gpus {options.num_gpus} needs {options.num_gpus} NVIDIA GPUs, but --device auto "
                             f"found none (PyTorch sees {torch.cuda.device_count()} CUDA GPU(s), CUDA_VISIBLE_DEVICES="
                             f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'not set')}); use --num-gpus 1 on this machine")
        check_request(options.num_gpus, device.type, torch.cuda.device_count(), options.batch_size)
    if device.type == "cpu" and not os.environ.get("OMP_NUM_THREADS", "").strip().isdigit():
        torch.set_num_threads(usable_cpu_count())    # all cores unless OMP_NUM_THREADS says otherwise
    pretrained_plans, checkpoint = (check_pretrained(options.pretrained_model, dataset, options.configuration)
                                    if options.pretrained_model is not None else (None, None))
    _in_use = ModelInUse(options.pretrained_model, "fine-tuning").hold() if checkpoint else None  # noqa: F841
    plans = prepare(dataset, options, pretrained_plans)
    all_plans = [plans] + [prepare(twin, options, plans) for twin in datasets[1:]]
    os.environ["nnUNet_n_proc_DA"] = os.environ.get("BACKSPLIT_N_PROC_DA", "0")  # this process only, for training
    _CLOCK = TrainingClock(emit, epochs=options.epochs, iterations_per_epoch=options.iterations_per_epoch,
                           val_iterations_per_epoch=options.val_iterations_per_epoch, runs=options.runs_total,
                           configuration=options.configuration, device=device.type, job_started=job_started)
    outputs = []
    for index, (ds, ds_plans) in enumerate(zip(datasets, all_plans)):
        label = "BackSplit model" if ds.variant == "backsplit" else f"{ds.variant} model"
        for fold in folds:
            fold_checkpoint = None
            if index == 0 and checkpoint is not None:  # fine-tune fold k from the pretrained model's fold k if any
                same_fold = checkpoint.parent.parent / f"fold_{fold}" / checkpoint.name
                fold_checkpoint = same_fold if same_fold.is_file() else checkpoint
            output = (train_one_ddp if options.num_gpus > 1 else train_one)(   # DDP: one training on N GPUs
                ds, options, fold, device, ds_plans, fold_checkpoint,
                f"{label} fold {fold}" if cross_validation else label, folds if cross_validation else (),
                context=options.context if index == 0 else "none")
        outputs.append(output)
    if len(outputs) == 2:  # record the pairing in both manifests
        for this, other in ((outputs[0], outputs[1]), (outputs[1], outputs[0])):
            manifest = read_manifest(this)
            manifest["twin_model"] = str(other)
            write_manifest(this, manifest)
    if options.model_dir is not None:
        copies = [copy_model(outputs[0], options.model_dir, folds)]
        if len(outputs) == 2:
            copies.append(copy_model(outputs[1], options.model_dir.with_name(options.model_dir.name + "_binary"),
                                     folds))
        outputs = copies
    return outputs


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m backsplit.training.worker OPTIONS.json", file=sys.stderr)
        return 2
    started = time.time()
    try:
        options = TrainOptions.from_json(Path(argv[0]).read_text(encoding="utf-8"))
        outputs = run(options)
    except BackSplitError as exc:
        emit(ProgressEvent("error", str(exc)))
        return 1
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            emit(ProgressEvent("error", "the disk is full; free space or choose another work folder (finished "
                                        "models and checkpoints already written are kept)"))
            return 1
        traceback.print_exc()
        emit(ProgressEvent("error", f"training failed: {exc}"))
        return 2
    except Exception as exc:  # noqa: BLE001 - reported to the user, traceback in the log
        message = str(exc)
        if type(exc).__name__ == "OutOfMemoryError" or "out of memory" in message.lower():
            emit(ProgressEvent("error", "the GPU ran out of memory; choose the 2d configuration, a smaller patch or "
                                        "batch size, or close other programs that use the GPU"))
            return 1
        traceback.print_exc()
        emit(ProgressEvent("error", f"training failed: {type(exc).__name__}: {message}"))
        return 2
    emit(ProgressEvent("done", "training finished: " + ", ".join(str(p) for p in outputs), None, None,
                       {"models": [str(p) for p in outputs], "seconds": time.time() - started}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
