"""``backsplit study``: does BackSplit help on my data? Train every arm on the same folds with identical plans, budget
and seeds, predict each fold's held-out cases, evaluate, and write a report with paired statistics.

Arms: binary (always included: the reference), backsplit, drop:<support>, noisy:erode:<mm>, noisy:dilate:<mm>,
noisy:missing:<fraction>, rings[:W1,W2], kmeans[:T], learned[:t] (CoLab's learned context), finetune,
sampling:stock, sampling:target.

The study folder holds plan.json, units/<unit>/ (log.txt, model, predictions, per-case tables), results/ (all
per-case numbers as CSV) and report/ (report.md + PNG plots). Run the same command again to continue an interrupted
study: finished steps are verified by content hash (dataset files + settings) and reused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backsplit.evaluation.metrics import LESION_MATCH_HELP
from backsplit.runtime import argtypes


def register(subparsers) -> None:
    p = subparsers.add_parser("study", help="compare arms (binary, BackSplit, ...) by cross-validation with paired "
                                            "statistics, locally or on a SLURM cluster",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset",
                   help="the exported BackSplit dataset (DatasetNNN_Name, its binary baseline dataset beside it), or "
                        "its nnU-Net id / name in $nnUNet_raw (e.g. 501)")
    p.add_argument("--out", type=Path, required=True, help="the study folder (created; reused to resume)")
    p.add_argument("--arms", default="binary,backsplit", help="comma-separated arms (default binary,backsplit)")
    p.add_argument("--folds", type=argtypes.folds, default=5, help="cross-validation folds, 2-5 (default 5)")
    p.add_argument("--seeds", default="1", help="comma-separated training seeds (default 1)")
    p.add_argument("--configuration", "-c", default="3d_fullres", choices=["2d", "3d_fullres"],
                   help="nnU-Net configuration (default 3d_fullres)")
    p.add_argument("--epochs", type=argtypes.count, default=50, help="epochs per training (default 50)")
    p.add_argument("--iterations-per-epoch", type=argtypes.count, default=250,
                   help="training iterations per epoch (default 250)")
    p.add_argument("--val-iterations", type=argtypes.count, default=50,
                   help="validation iterations per epoch (default 50)")
    p.add_argument("--batch-size", type=argtypes.count, help="override the plans' batch size (default: as planned)")
    p.add_argument("--sampling", default="target", choices=["target", "stock"],
                   help="patch sampling of arms that do not set their own (default target)")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"],
                   help="where every unit trains and predicts (default auto: CUDA when present, else MPS, else CPU)")
    p.add_argument("--no-mirroring", action="store_true", help="predict without test-time mirroring (faster)")
    p.add_argument("--nsd-tolerance", type=argtypes.positive_mm, default=2.0, help="NSD tolerance in mm (default 2)")
    p.add_argument("--lesion-match", default="overlap", metavar="overlap|iou:T|dice:T", help=LESION_MATCH_HELP)
    p.add_argument("--sensitivity", type=argtypes.sensitivity, default=0.95,
                   help="sensitivity the case rule's minimum volume is calibrated for, on training folds "
                        "(default 0.95)")
    p.add_argument("--save-every", type=argtypes.count, default=5, help="epochs between resume checkpoints (default 5)")
    p.add_argument("--num-gpus", type=argtypes.count, default=1, metavar="N",
                   help="GPUs per training: N > 1 trains each unit on N GPUs with PyTorch DDP (CUDA only; batch size "
                        "at least N; not with learned-context arms); local: each unit gets N GPUs of --gpus, SLURM: "
                        "each array task requests gpu:N (--gres); part of the training hash when > 1 (default 1)")
    p.add_argument("--executor", default="local", choices=["local", "slurm"], help="where units run (default local)")
    p.add_argument("--gpus", default="auto",
                   help="local: GPU indices to run units on in parallel, one per GPU (e.g. 0,1; with --num-gpus N: "
                        "N per unit, e.g. 0,1,2,3 runs two units on 0,1 and 2,3), 'auto' (the entries of "
                        "CUDA_VISIBLE_DEVICES when set, else all that nvidia-smi lists) or 'none' (no GPU spreading: "
                        "one unit at a time, or --parallel on the CPU; default auto)")
    p.add_argument("--nice", type=argtypes.nice_value, default=0,
                   help="local: run units with this nice value (default 0)")
    p.add_argument("--parallel", type=argtypes.count, default=1, metavar="N",
                   help="local, --device cpu or no GPU visible: run N units at the same time, each with cores/N "
                        "CPU threads (default 1; can be faster on a few cores, since nnU-Net's data loading runs in "
                        "each unit's main thread)")
    g = p.add_argument_group("SLURM (--executor slurm)")
    g.add_argument("--slurm-config", type=Path, help="JSON file with partition, time, cpus_per_task, mem, gres, "
                                                     "account, extra_args, python, max_parallel, poll_s")
    g.add_argument("--partition", help="SLURM partition (default: the cluster's default)")
    g.add_argument("--time", dest="slurm_time", help="wall time per unit, SLURM format, e.g. 04:00:00 "
                                                         "(default: the partition's)")
    g.add_argument("--cpus-per-task", type=argtypes.count, help="CPUs per unit (default: the partition's)")
    g.add_argument("--mem", help="memory per unit, e.g. 32G (default: the partition's)")
    g.add_argument("--gres", help="generic resources per unit, e.g. gpu:1 (--num-gpus N sets its GPU count to N, "
                                  "keeping a GPU type such as gpu:a100)")
    g.add_argument("--poll", type=argtypes.positive_seconds, help="seconds between squeue checks (default 5)")
    p.add_argument("--plan-only", action="store_true", help="print the plan (units and content hashes) and stop")
    p.add_argument("--report-only", action="store_true", help="rebuild the report from finished units and stop")
    p.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace):
    from backsplit.errors import InputError
    from backsplit.study.plan import StudySettings

    try:
        seeds = tuple(int(s) for s in str(args.seeds).split(",") if s.strip())
    except ValueError:
        raise InputError(f"--seeds '{args.seeds}' must be whole numbers separated by commas, e.g. 1,2,3") from None
    if any(not 0 <= s < 2**32 for s in seeds):   # NumPy's seeds are 32-bit unsigned (argtypes.seed)
        raise InputError(f"--seeds '{args.seeds}' must be whole numbers from 0 to 4294967295, e.g. 1,2,3")
    return StudySettings(configuration=args.configuration, folds=args.folds, seeds=seeds, epochs=args.epochs,
                         iterations_per_epoch=args.iterations_per_epoch, val_iterations_per_epoch=args.val_iterations,
                         batch_size=args.batch_size, sampling=args.sampling, device=args.device,
                         mirroring=not args.no_mirroring, nsd_tolerance_mm=args.nsd_tolerance,
                         lesion_match=args.lesion_match, sensitivity=args.sensitivity, save_every=args.save_every,
                         num_gpus=getattr(args, "num_gpus", 1))


def executor_from_args(args: argparse.Namespace):
    """The executor the options ask for (rules in ``backsplit.study.executor_policy``)."""
    from backsplit.study.executor_policy import study_executor

    return study_executor(args.executor, device=args.device, gpus=args.gpus, num_gpus=getattr(args, "num_gpus", 1),
                          parallel=getattr(args, "parallel", 1), nice=args.nice, slurm_config=args.slurm_config,
                          partition=args.partition, time=args.slurm_time, cpus_per_task=args.cpus_per_task,
                          mem=args.mem, gres=args.gres, poll_s=args.poll)


def _interrupt_on_signals() -> None:
    """Ctrl-C and SIGTERM (also when started in the background, where SIGINT is ignored) raise KeyboardInterrupt,
    so the executor ends the running units (local: their process groups; SLURM: scancel)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


def run(args: argparse.Namespace) -> int:
    from backsplit.study.arms import split_arms
    from backsplit.study.runner import plan_lines, plan_study, report_finished, require_success, run_study

    def echo(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    settings = settings_from_args(args)
    executor = None if args.plan_only or args.report_only else executor_from_args(args)   # its errors come first
    from backsplit.training.environment import resolve_dataset

    plan = plan_study(resolve_dataset(args.dataset), args.out, split_arms(args.arms), settings)
    if args.plan_only:
        for line in plan_lines(plan):
            print(line)
        return 0
    if args.report_only:
        print(report_finished(plan))
        return 0
    _interrupt_on_signals()
    outcome = run_study(plan, executor, echo)
    print(Path(plan.study_dir) / "report" / "report.md")
    require_success(outcome)
    return 0
