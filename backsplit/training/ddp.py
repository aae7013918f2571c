"""One training on several GPUs with PyTorch DDP (``--num-gpus N``): BackSplit's own launcher.

nnU-Net's launcher (``nnunetv2.run.run_training.run_ddp``) cannot start BackSplit's trainers: it builds the trainer
by *name* from nnunetv2's own trainer package, and BackSplit's trainers take their settings (epochs, iterations,
learning rate, sampling, target labels) and progress sinks through class attributes, which a spawned process does
not inherit. So this module does what ``run_ddp`` does, with BackSplit's trainer:

* the training process (``worker.run``) holds the fold's training lock and starts N rank processes with
  ``torch.multiprocessing.spawn`` (a fresh interpreter each), rendezvous on 127.0.0.1 at a free port (given as
  ``init_method``, where nnU-Net sets MASTER_ADDR / MASTER_PORT);
* each rank calls ``init_process_group`` (NCCL on CUDA), sets the trainer's class settings, builds the same trainer as
  ``fold.train_one`` and trains; nnU-Net's trainer then sees ``dist.is_initialized()``: it takes the GPU of its rank
  (``cuda:<rank>``, i.e. the rank-th of CUDA_VISIBLE_DEVICES), wraps the network in DDP, splits the plans' batch size
  across the ranks (``_set_batch_size_and_oversample``), gathers losses and Dice, and writes checkpoints on rank 0;
* only rank 0 prints progress events and writes the model's manifest; every rank ends with
  ``destroy_process_group``.

A rank's BackSplit error (e.g. a model to fine-tune that does not fit) is written to a small JSON record and raised
again, with its type and message, in the training process; when one rank fails, ``spawn`` ends the others.

Limits (checked by ``options.check_options`` / ``options.check_request``, each an ``InputError``): CUDA only
(nnU-Net's trainer hard-codes ``cuda:<rank>`` and NCCL in DDP mode); at least N GPUs visible; a batch size of at
least N (one sample per GPU); not with learned context (``--context learned``): its task generator is not wrapped
in DDP and its meta-gradients are not all-reduced, so each rank would update its own generator from its own part of
the batch, the generators would drift apart, and the checkpoints would keep rank 0's only.
"""

from __future__ import annotations

import json
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from backsplit.datasets.folder import load_dataset_folder
from backsplit.errors import BackSplitError, InputError, OutputError
from backsplit.models.lineage import model_lineage
from backsplit.runtime.progress import ProgressEvent, emit_event
from backsplit.training.fold import read_manifest_or_none, training_orientation
from backsplit.training.lock import TrainingLock, refuse_existing_model
from backsplit.training.manifest import build_manifest, write_manifest
from backsplit.training.options import TRAINER_NAME, TrainOptions, check_options, check_request
from backsplit.training.paths import results_dir
from backsplit.training.pretrained import load_into_trainer
from backsplit.training.timing import TrainingClock

ERROR_TYPES = {"InputError": InputError, "OutputError": OutputError, "BackSplitError": BackSplitError}


def free_port() -> int:
    """A TCP port free on this machine now (for the rendezvous of one single-node job; as nnU-Net finds one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_entry(rank: int, fn: Callable, world_size: int, port: int, backend: str, args: tuple,
                error_dir: str) -> None:
    """Run in each spawned process: join the process group, call ``fn(rank, world_size, *args)``, leave the group."""
    import torch
    import torch.distributed as dist

    if backend == "nccl":
        torch.cuda.set_device(rank)      # before the group: NCCL binds each rank to its own GPU
    # the rendezvous address given directly (MASTER_ADDR/MASTER_PORT's role): the environment stays as it was
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        fn(rank, world_size, *args)
    except BackSplitError as exc:        # kept for the parent, which raises it again with its type and message
        record = {"rank": rank, "type": type(exc).__name__, "message": str(exc)}
        Path(error_dir, f"rank{rank}.json").write_text(json.dumps(record), encoding="utf-8")
        raise
    dist.barrier()    # rank 0 may still be writing the manifest: leave together
    dist.destroy_process_group()


def launch(fn: Callable, world_size: int, args: Sequence = (), backend: str = "nccl") -> None:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` spawned processes joined in one process group
    (``backend``: 'nccl' for CUDA, 'gloo' for CPU). ``fn`` and ``args`` must be picklable (a module-level function).
    Waits for all ranks. Raises the first failed rank's BackSplitError again (same type and message), else
    torch's ProcessRaisedException / ProcessExitedException (the rank's traceback in its message)."""
    import torch.multiprocessing as mp
    from torch.multiprocessing.spawn import ProcessException

    with tempfile.TemporaryDirectory(prefix="backsplit-ddp-") as error_dir:
        try:
            mp.spawn(_rank_entry, args=(fn, world_size, free_port(), backend, tuple(args), error_dir),
                     nprocs=world_size, join=True)
        except ProcessException:
            records = sorted(Path(error_dir).glob("rank*.json"))
            if records:
                record = json.loads(records[0].read_text(encoding="utf-8"))
                raise ERROR_TYPES.get(record["type"], BackSplitError)(record["message"]) from None
            raise


# ---- the training ----------------------------------------------------------------------------------------------------
@dataclass
class RankJob:
    """What every rank needs to build and train the trainer (picklable: it travels to the spawned processes)."""
    options_json: str                       # TrainOptions.to_json()
    dataset_dir: str
    fold: str
    plans: dict
    label: str
    settings: dict                          # BackSplitTrainer.settings
    pretrained_checkpoint: Optional[str] = None
    run_folds: tuple = ()
    clock: Optional[dict] = None            # TrainingClock arguments (first run of the job: the up-front estimate)
    device: str = "cuda"                    # "cpu": one rank without a process group (the test that runs here)


def configure_trainer_class(trainer_class, settings: dict, rank: int, event_sink=None, step_sink=None) -> None:
    """Set the trainer's class settings in this rank; only rank 0 gets the progress and timing sinks."""
    trainer_class.settings = dict(settings)
    trainer_class.event_sink = event_sink if rank == 0 else None
    trainer_class.step_sink = step_sink if rank == 0 else None


def train_one_ddp(dataset, options, fold: str, device, plans: dict, pretrained_checkpoint: Optional[Path],
                  label: str, run_folds: Sequence[str] = (), context: str = "none",
                  clock: Optional[TrainingClock] = None) -> Path:
    """``fold.train_one`` on ``options.num_gpus`` GPUs (BackSplitTrainer only: ``context`` must be "none").
    ``clock``: the job's ``TrainingClock``; on its first run rank 0 rebuilds it to time the up-front estimate.
    Returns the model folder. Raises InputError (see ``options.check_request``), OutputError (a model already
    there), or a rank's error."""
    import torch

    n = int(options.num_gpus)
    batch = options.batch_size or plans["configurations"][options.configuration].get("batch_size")
    check_request(n, device.type, torch.cuda.device_count(), batch)
    check_options(n, device.type, batch, context)
    base = results_dir(dataset, options.configuration, TRAINER_NAME, options.plans_name)
    fold_dir = base / f"fold_{fold}"
    with TrainingLock(base.parent / f".backsplit-train-{base.name}-fold_{fold}.lock"):
        refuse_existing_model(fold_dir, options.resume, bool(options.extra.get("overwrite")))
        rank_clock = None
        if clock is not None:
            clock.start_run()
            if clock.run_index == 0:
                rank_clock = {"epochs": clock.epochs, "iterations_per_epoch": clock.iterations, "runs": clock.runs,
                              "val_iterations_per_epoch": clock.val_iterations,
                              "configuration": clock.configuration, "device": clock.device,
                              "job_started": clock.job_started}
        job = RankJob(options.to_json(), str(dataset.folder), str(fold), plans, label,
                      trainer_settings(options, dataset),
                      str(pretrained_checkpoint) if pretrained_checkpoint else None, tuple(run_folds), rank_clock)
        launch(train_rank, n, (job,), backend="nccl")
    return base


def trainer_settings(options, dataset) -> dict:
    """BackSplitTrainer.settings for ``options`` (as ``fold.train_one`` sets them)."""
    from backsplit.training.dynamics import variant_settings

    return {"epochs": options.epochs, "iterations_per_epoch": options.iterations_per_epoch,
            "val_iterations_per_epoch": options.val_iterations_per_epoch, "initial_lr": options.learning_rate,
            "save_every": options.save_every, "sampling": options.sampling,
            "target_labels": list(dataset.target_labels), **variant_settings(options, dataset)}


def train_rank(rank: int, world_size: int, job: RankJob) -> None:
    """One rank of ``train_one_ddp`` (runs in a spawned process inside the process group; nnU-Net's trainer then
    takes ``cuda:<rank>``). Outside a process group (world size 1, ``job.device`` 'cpu') it trains as one process."""
    import numpy as np
    import torch
    from nnunetv2.run.run_training import maybe_load_checkpoint

    from backsplit.training.trainer import BackSplitTrainer

    options = TrainOptions.from_json(job.options_json)
    dataset = load_dataset_folder(job.dataset_dir)
    lead = rank == 0

    def emit(event) -> None:
        if lead:
            emit_event(event)

    clock = TrainingClock(emit_event, **job.clock) if lead and job.clock else None
    if options.seed is not None:    # a different stream per rank: each GPU samples other patches
        np.random.seed(options.seed + rank)
        torch.manual_seed(options.seed + rank)   # the weights still start equal: DDP copies rank 0's to all
    # the clock times rank 0's steps but gets no batch: its extra validation forward (a probe) would run on rank 0
    # alone, and a network with synchronised layers (SyncBatchNorm) would wait there for the other ranks
    configure_trainer_class(BackSplitTrainer, job.settings, rank, clock.observing(emit_event) if clock else emit_event,
                            (lambda kind, trainer=None, batch=None: clock.step(kind, trainer)) if clock else None)
    if clock:
        clock.start_run()
    run_plans = json.loads(json.dumps(job.plans))
    run_plans["continue_training"] = bool(options.resume)
    if options.batch_size:   # the global batch; nnU-Net splits it across the ranks
        run_plans["configurations"][options.configuration]["batch_size"] = int(options.batch_size)
    fold = job.fold
    device = torch.device("cuda", rank) if job.device == "cuda" else torch.device(job.device)
    trainer = BackSplitTrainer(run_plans, options.configuration, fold if fold == "all" else int(fold), dataset.meta,
                               device)
    started = time.time()
    base = results_dir(dataset, options.configuration, TRAINER_NAME, options.plans_name)
    emit(ProgressEvent("train", f"{job.label}: starting ({options.configuration}, fold {fold}, {world_size} GPUs, "
                                "DDP)", 0, options.epochs,
                       {"model": job.label, "output_folder": str(base), "num_gpus": world_size}))
    transfer = None
    if job.pretrained_checkpoint is not None:   # every rank loads the weights: the network is already DDP-wrapped
        try:
            transfer = load_into_trainer(trainer, Path(job.pretrained_checkpoint), dataset.meta["labels"])
        except (AssertionError, RuntimeError, KeyError) as exc:
            raise InputError(f"the model to fine-tune does not fit this dataset's network ({exc or 'shape mismatch'})"
                             "; fine-tune from a model trained with the same plans (e.g. the binary baseline "
                             "trained by BackSplit)", path=job.pretrained_checkpoint) from None
        emit(ProgressEvent("train", f"{job.label}: fine-tuning from {options.pretrained_model}: {transfer['message']}",
                           0, options.epochs, {"weights_transfer": transfer["counts"]}))
    elif options.resume:
        maybe_load_checkpoint(trainer, True, False, None)
        emit(ProgressEvent("train", f"{job.label}: resuming at epoch {trainer.current_epoch}", trainer.current_epoch,
                           options.epochs, {"start_epoch": trainer.current_epoch}))
    trainer.run_training()
    if options.final_validation_for(fold):   # nnU-Net's validation shares the cases across the ranks
        emit(ProgressEvent("validate", f"{job.label}: nnU-Net validation of fold {fold}"))
        trainer.perform_actual_validation(options.validation_probabilities)
    if lead:
        _write_manifest(trainer, options, dataset, job, base, time.time() - started, transfer, world_size, clock)


def _write_manifest(trainer, options, dataset, job: RankJob, base: Path, elapsed: float, transfer, world_size: int,
                    clock) -> None:
    """The model's manifest, as ``fold.train_one`` writes it, plus ``num_gpus`` (rank 0 only)."""
    fold, run_folds = job.fold, list(job.run_folds)
    folds = [f for f in run_folds if f == fold or (base / f"fold_{f}" / "checkpoint_final.pth").is_file()] \
        if run_folds else [fold]
    earlier = read_manifest_or_none(base) if run_folds and fold != run_folds[0] else None
    if earlier:
        elapsed += float(earlier.get("training_time_s", 0.0))
    pretrained = options.pretrained_model if job.pretrained_checkpoint else None
    manifest = build_manifest(
        dataset_meta=dataset.meta, plans=job.plans, configuration=options.configuration, folds=folds,
        trainer=TRAINER_NAME, plans_name=options.plans_name, epochs=options.epochs,
        iterations_per_epoch=options.iterations_per_epoch, initial_lr=options.learning_rate,
        sampling=options.sampling if dataset.variant != "binary" else "stock (binary: targets are all classes)",
        pretrained_from=str(options.pretrained_model) if pretrained else None, source_dataset=dataset.folder_name,
        training_time_s=elapsed, device=job.device, completed_epochs=int(trainer.current_epoch),
        training_orientation=training_orientation(dataset),
        batch_size=int(trainer.configuration_manager.batch_size),   # global: trainer.batch_size is one GPU's share
        lineage=model_lineage(dataset.meta, pretrained, transfer))
    manifest["num_gpus"] = world_size
    if clock:
        manifest["estimate"] = clock.record()
    write_manifest(base, manifest)
