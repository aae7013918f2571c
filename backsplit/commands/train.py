"""``backsplit train``: train nnU-Net on an exported BackSplit dataset (and its binary baseline dataset) in a child
process."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backsplit.runtime import argtypes
from backsplit.training.follow import follow


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train nnU-Net v2 on an exported BackSplit dataset",
                              description=__doc__)
    p.add_argument("dataset", nargs="?", help="the exported dataset folder (DatasetNNN_Name), or its id / name in "
                                              "$nnUNet_raw (as -d)")
    p.add_argument("-d", "--dataset-id", dest="dataset_id", metavar="ID",
                   help="the dataset by nnU-Net's id (501) or name (Dataset501_Name), looked up in $nnUNet_raw")
    p.add_argument("--work-dir", type=Path,
                   help="folder for nnUNet_preprocessed and nnUNet_results (default: the folders of the variables "
                        "nnUNet_preprocessed and nnUNet_results when both are set: existing preprocessing is reused, "
                        "job logs go to $nnUNet_results/jobs)")
    p.add_argument("--plans", default="default", choices=["default", "ResEncM", "ResEncL", "ResEncXL"],
                   help="nnU-Net planner preset: default (nnUNetPlans) or the residual-encoder presets nnU-Net "
                        "recommends, ResEncM/L/XL (nnUNetResEncUNetM/L/XLPlans, planned for 8/24/40 GB of GPU "
                        "memory); default: default")
    p.add_argument("--model-dir", type=Path,
                   help="copy the finished model here (binary baseline: <model-dir>_binary; default: the model stays "
                        "in <work-dir>/nnUNet_results)")
    p.add_argument("--configuration", "-c", default="2d", choices=["2d", "3d_fullres", "3d_lowres"],
                   help="nnU-Net configuration: 2d (slice by slice, fastest), 3d_fullres, or 3d_lowres (only where "
                        "nnU-Net plans it: large images; the cascade is not offered); default 2d")
    p.add_argument("--fold", default="auto", help="auto (all when < 5 cases, else 0), all, 0-4, or 5fold (all five "
                                                  "folds in turn: cross-validation, predicted as an ensemble); "
                                                  "default auto")
    p.add_argument("--epochs", type=argtypes.count, default=50,
                   help="training epochs (default 50; nnU-Net's own is 1000)")
    p.add_argument("--iterations-per-epoch", type=argtypes.count, default=250,
                   help="training iterations (batches) per epoch (default 250)")
    p.add_argument("--val-iterations", type=argtypes.count, default=50,
                   help="validation iterations per epoch, each about a third of a training iteration's time "
                        "(default 50)")
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"],
                   help="where to train; auto picks cuda, then mps, then cpu (default auto)")
    p.add_argument("--sampling", default="target", choices=["target", "stock"],
                   help="target: forced-foreground patches centred on target classes (default); stock: nnU-Net's")
    p.add_argument("--pretrained", type=Path, help="fine-tune from this model folder (learning rate 1e-3 by default)")
    p.add_argument("--trust-model", action="store_true",
                   help="fine-tune from an imported model not yet trusted, for this run only (its checkpoints are "
                        "pickles that can run code; default: refuse until 'backsplit model trust')")
    p.add_argument("--lr", type=argtypes.positive_number, help="initial learning rate (default 1e-2, fine-tuning 1e-3)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint (or train more epochs)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier model in the same work folder")
    p.add_argument("--with-binary", action="store_true", help="also train the binary baseline with identical settings")
    p.add_argument("--save-every", type=argtypes.count, default=5, help="epochs between resume checkpoints (default 5)")
    p.add_argument("--workers", type=argtypes.non_negative_int, default=0,
                   help="augmentation worker processes (default 0, fastest on few cores)")
    p.add_argument("--validate", "--final-validation", dest="validate", action="store_true", default=None,
                   help="run nnU-Net's final validation of each fold (fold_*/validation/summary.json, which "
                        "nnUNetv2_find_best_configuration reads); default: on for folds 0-4, off for fold all (nothing "
                        "held out), --support-head and --context learned; its cost is one mirrored prediction of the "
                        "fold's validation cases, reported at the end and in the manifest (final_validation_s)")
    p.add_argument("--no-final-validation", dest="validate", action="store_false",
                   help="skip nnU-Net's final validation (faster; nnU-Net's tools then find no summary.json)")
    p.add_argument("--validation-npz", action="store_true",
                   help="final validation also saves the probabilities (.npz, as nnU-Net's --npz), which "
                        "nnUNetv2_find_best_configuration needs to evaluate ensembles (default: off, they are large)")
    p.add_argument("--batch-size", type=argtypes.count,
                   help="override the plans' batch size (smaller: less GPU memory, more "
                                                  "optimiser steps per minute on a CPU)")
    p.add_argument("--seed", type=argtypes.seed, help="random seed for repeatable runs (default: none, random)")
    p.add_argument("--num-gpus", type=argtypes.count, default=1, metavar="N",
                   help="train one model on N GPUs of this machine with PyTorch DDP (nnU-Net's multi-GPU training): "
                        "the batch is split across the GPUs (CUDA only; needs a batch size of at least N; not with "
                        "--context learned); the first N GPUs of CUDA_VISIBLE_DEVICES are used (default 1)")
    p.add_argument("--context", default="none", metavar="learned[:t]",
                   help="learned context (CoLab's task generator, meta-learned during training): learned[:t] adds "
                        "t support structures (default 2) for background near the targets; settings as "
                        "learned:2,m=48,tau=32,k=8 (margin and temperature in mm from the lesion, generator step every "
                        "k iterations; also w=generator width, meta=fd|exact, lr=generator Adam rate). Default: none")
    p.add_argument("--recipe", default="default", choices=["default", "paper"],
                   help="how the support structures enter training: default (chosen by measurement: "
                        "--support-schedule ramp:200,lvr=0.5 and, fine-tuning a binary model, --head-init preserve; "
                        "docs/results/2026-12-07-cpu2-dynamics.md) or paper (the BackSplit paper's: multi-class loss "
                        "from the first step, one output head, fine-tuning re-initialises the output layers); the "
                        "three options below override it")
    p.add_argument("--support-schedule", metavar="SCHEDULE",
                   help="plain (the paper's loss), lvr:W (add W x binary training's loss of target vs the rest), "
                        "ramp:N[,delay=D][,lvr=W][,cap=C] (start with binary training's loss, support structures "
                        "ramped in over N optimiser steps) or cap:C[,lvr=W] (support structures hold at most C of the "
                        "Dice term)")
    p.add_argument("--support-head", nargs="?", type=argtypes.positive_number, const=1.0, metavar="W",
                   help="train the support structures on a separate output head with loss weight W (default 1); the "
                        "model is exported as the target head alone, a plain nnU-Net model (support head in "
                        "fold_*/support_head.pth); not with --validate")
    p.add_argument("--head-init", choices=["preserve", "reinit"],
                   help="fine-tuning a binary model (--pretrained): preserve = the new output layers start with the "
                        "binary model's prediction; reinit = new output layers (nnU-Net's rule); default: the recipe's")
    p.add_argument("--jsonl", action="store_true", help="print progress events as JSON lines instead of a bar")
    p.add_argument("--verbose", "--log", action="store_true", dest="log",
                   help="also print nnU-Net's and torch's own output (default: only in the job's log file, "
                        "<work-dir>/jobs/train-*.log)")
    p.set_defaults(func=run)


def options_from_args(args: argparse.Namespace):
    from backsplit.training.options import TrainOptions

    return TrainOptions(
        dataset_dir=args.dataset, work_dir=args.work_dir, model_dir=args.model_dir, configuration=args.configuration,
        fold=args.fold, epochs=args.epochs, iterations_per_epoch=args.iterations_per_epoch,
        val_iterations_per_epoch=args.val_iterations, device=args.device, sampling=args.sampling,
        pretrained_model=args.pretrained, initial_lr=args.lr, resume=args.resume, with_binary=args.with_binary,
        save_every=args.save_every, num_workers=args.workers, final_validation=args.validate, seed=args.seed,
        batch_size=args.batch_size, context=getattr(args, "context", "none"), num_gpus=getattr(args, "num_gpus", 1),
        recipe=getattr(args, "recipe", "default"), support_schedule=getattr(args, "support_schedule", None),
        support_head=getattr(args, "support_head", None), head_init=getattr(args, "head_init", None),
        validation_probabilities=getattr(args, "validation_npz", False), plans=getattr(args, "plans", "default"),
        nnunet_folders=getattr(args, "nnunet_folders", False),
        extra={"overwrite": True} if args.overwrite else {})


def resolve_location(args: argparse.Namespace) -> None:
    """Fill ``args.dataset`` (a folder, from a folder, an id or a name; ``-d``) and ``args.work_dir`` (default: the
    user's nnUNet_results, with ``args.nnunet_folders`` set); prints which of the user's variables are used. Raises
    InputError before a child process or a jobs folder is made."""
    from backsplit.errors import InputError
    from backsplit.training.environment import resolve_dataset, user_folders

    named = [v for v in (args.dataset, getattr(args, "dataset_id", None)) if v]
    if len(named) != 1:
        raise InputError("name the dataset once: a folder or id as the first argument, or -d ID" if named else
                         "no dataset given; name the exported DatasetNNN_Name folder, or its id with -d (e.g. -d 501) "
                         "and nnUNet_raw set")
    args.dataset = resolve_dataset(named[0])
    folders = user_folders()
    args.nnunet_folders = args.work_dir is None
    if args.work_dir is None:
        missing = [k for k in ("nnUNet_preprocessed", "nnUNet_results") if k not in folders]
        if missing:
            verb = "is" if len(missing) == 1 else "are"
            raise InputError(f"--work-dir is not given and {' and '.join(missing)} {verb} not set; "
                             "give --work-dir (it holds nnUNet_preprocessed and nnUNet_results), or set "
                             "nnU-Net's variables nnUNet_preprocessed and nnUNet_results")
        args.work_dir = Path(folders["nnUNet_results"])
        print(f"using nnUNet_preprocessed={folders['nnUNet_preprocessed']} and "
              f"nnUNet_results={folders['nnUNet_results']} from your environment")


def run(args: argparse.Namespace) -> int:
    from backsplit.training.process import TrainingProcess

    resolve_location(args)   # a typo: answered at once, before a child process and <work-dir>/jobs/
    from backsplit.training.environment import torch_pairing_problem

    problem = torch_pairing_problem()
    if problem:
        print(f"backsplit: warning: {problem}", file=sys.stderr)
    if args.pretrained:   # an imported model's pickled checkpoints are not loaded until the user trusts it
        from backsplit.models.trust import require_trusted

        require_trusted(args.pretrained, args.trust_model)
    process = TrainingProcess(options_from_args(args)).start()
    code = follow(process, jsonl=args.jsonl, show_log=args.log)
    if code == 0 and process.result_models:
        print("models:\n" + "\n".join(f"  {m}" for m in process.result_models))
        if args.nnunet_folders:   # the user works with nnU-Net's folders: say how nnU-Net's own tools find the trainer
            from backsplit.training.environment import nnunet_ext_folder

            print(f"nnU-Net's own tools (nnUNetv2_find_best_configuration, nnUNetv2_predict -tr BackSplitTrainer) "
                  f"find BackSplit's trainer with: export nnUNet_extTrainer={nnunet_ext_folder()}")
    return code
