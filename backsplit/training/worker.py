"""The training child process: ``python -m backsplit.training.worker OPTIONS.json``.

Runs with nnU-Net's variables already in its environment (see ``environment.py``). Prints progress events (one
prefixed JSON line each) among nnU-Net's own output. Steps: check the dataset(s); plan and preprocess with nnU-Net's
integrity check (``prepare.py``: plans shared with the binary twin, or taken from the model being fine-tuned); train
each fold with ``BackSplitTrainer`` (``fold.py``, or ``ddp.py`` on several GPUs); write the model folder's manifest.
The start, the exit status and the final event are the shared worker protocol's (``runtime/workerprocess.py``):
0 done, 1 the user's error (message in the final 'error' event; a full disk or the GPU out of memory included),
2 an unexpected error.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Optional

from backsplit.datasets.folder import load_dataset_folder
from backsplit.errors import BackSplitError, InputError
from backsplit.models.usage import ModelInUse
from backsplit.runtime.devices import resolve_device, usable_cpu_count
from backsplit.runtime.progress import ProgressEvent, Stage
from backsplit.runtime.progress import emit_event as emit  # one JSON event line on stdout, read by the parent
from backsplit.runtime.workerprocess import run_worker
from backsplit.training.budget import recipe_key, short_training_warning
from backsplit.training.ddp import train_one_ddp
from backsplit.training.fold import check_pretrained, copy_model, train_one
from backsplit.training.manifest import read_manifest, write_manifest
from backsplit.training.options import CROSS_VALIDATION, TrainOptions, check_request, resolve_folds
from backsplit.training.prepare import prepare
from backsplit.training.timing import TrainingClock

MODULE = "backsplit.training.worker"
DISK_FULL_HINT = "free space or choose another work folder (finished models and checkpoints already written are kept)"
OUT_OF_MEMORY_HINT = ("choose the 2d configuration, a smaller patch or batch size, or close other programs that use "
                      "the GPU")


def run(options: TrainOptions) -> list[Path]:
    """The whole training job in this process (nnU-Net's variables already set, as ``TrainingProcess`` sets them):
    check the dataset(s), prepare (plan, preprocess), train every fold of every dataset (the binary twin too with
    ``with_binary``), pair the twins' manifests, copy the models to ``model_dir`` when given. Returns the model
    folders. Raises InputError / OutputError / BackSplitError with the user's message."""
    import torch

    job_started = time.time()
    options.validate()
    dataset = load_dataset_folder(options.dataset_dir)
    if Path(os.environ.get("nnUNet_raw", "")).resolve() != dataset.folder.parent:
        raise BackSplitError("the training process was started without nnU-Net's variables for this dataset; start "
                             "it through backsplit.training.process.TrainingProcess")
    datasets = [dataset]
    if options.with_binary:
        if options.pretrained_model is not None:
            raise InputError("fine-tuning and training the binary baseline side by side cannot be combined; train the "
                             "binary baseline first, then fine-tune from it")
        twin_folder = dataset.twin_folder
        if twin_folder is None or not twin_folder.is_dir():
            raise InputError("the dataset has no binary baseline dataset next to it (dataset.json 'backsplit.twin'); "
                             "export it again with the binary baseline dataset", path=str(dataset.folder))
        twin = load_dataset_folder(twin_folder)
        if twin.case_ids != dataset.case_ids:
            raise InputError("the binary baseline dataset does not hold the same cases; export both again",
                             path=str(twin.folder))
        datasets.append(twin)
    if dataset.schema is not None and dataset.schema.support_values:   # before a short BackSplit training
        warning = short_training_warning(options.epochs * options.iterations_per_epoch,
                                         recipe_key(options.variants, options.pretrained_model is not None))
        if warning:
            emit(ProgressEvent(Stage.WARNING, warning, None, None))
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
    clock = TrainingClock(emit, epochs=options.epochs, iterations_per_epoch=options.iterations_per_epoch,
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
                context=options.context if index == 0 else "none", clock=clock)
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


def _train(options: TrainOptions) -> ProgressEvent:
    started = time.time()
    outputs = run(options)
    return ProgressEvent(Stage.DONE, "training finished: " + ", ".join(str(p) for p in outputs), None, None,
                         {"models": [str(p) for p in outputs], "seconds": time.time() - started})


def main(argv: Optional[list[str]] = None) -> int:
    """``python -m backsplit.training.worker OPTIONS.json``: train, report events on stdout; the exit status of
    ``runtime.workerprocess.run_worker`` (0 done, 1 the user's error, 2 unexpected)."""
    return run_worker(_train, TrainOptions, "training", emit, argv, disk_full=DISK_FULL_HINT,
                      out_of_memory=OUT_OF_MEMORY_HINT)


if __name__ == "__main__":
    sys.exit(main())
