"""What to train: a dataclass with a JSON round trip (it travels to the child process as a file), and the checks of
a request that need no GPU, plans or dataset (the multi-GPU ones included: ``check_request``, ``check_options``)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from backsplit.errors import InputError
from backsplit.runtime.workerprocess import JsonRequest

CONFIGURATIONS = ("2d", "3d_fullres", "3d_lowres")   # 3d_lowres: only where nnU-Net planned it (large images)
DEVICES = ("auto", "cuda", "mps", "cpu")
SAMPLINGS = ("target", "stock")
DEFAULT_LR = 1e-2
FINE_TUNE_LR = 1e-3   # the BackSplit paper fine-tunes binary models with support labels at 1e-3
TRAINER_NAME = "BackSplitTrainer"
PLANS_NAME = "nnUNetPlans"
# nnU-Net's planner presets -> (planner class, plans name); nnunetv2/experiment_planning/experiment_planners/
# residual_unets/residual_encoder_unet_planners.py (ResEnc M/L/XL target 8/24/40 GB of GPU memory)
PLANNERS = {"default": ("ExperimentPlanner", PLANS_NAME),
            "ResEncM": ("nnUNetPlannerResEncM", "nnUNetResEncUNetMPlans"),
            "ResEncL": ("nnUNetPlannerResEncL", "nnUNetResEncUNetLPlans"),
            "ResEncXL": ("nnUNetPlannerResEncXL", "nnUNetResEncUNetXLPlans")}


@dataclass
class TrainOptions(JsonRequest):
    dataset_dir: Path                         # exported BackSplit (or binary) dataset: .../DatasetNNN_Name
    work_dir: Path                            # holds nnUNet_preprocessed/ and nnUNet_results/
    configuration: str = "2d"
    fold: str = "auto"                        # "auto" (all when < 5 cases, else 0), "all", "0".."4", "5fold"
    epochs: int = 50
    iterations_per_epoch: int = 250
    val_iterations_per_epoch: int = 50
    device: str = "auto"
    sampling: str = "target"                  # "target": forced-foreground patches centred on targets; "stock"
    pretrained_model: Optional[Path] = None   # fine-tune from this model folder (its output layer is replaced)
    initial_lr: Optional[float] = None        # default 1e-2, or 1e-3 when fine-tuning
    resume: bool = False                      # continue from the last checkpoint
    with_binary: bool = False                 # also train the binary twin with identical settings
    model_dir: Optional[Path] = None          # copy the finished model here (default: it stays in nnUNet_results)
    save_every: int = 5                       # epochs between checkpoint_latest.pth writes (resume points)
    num_workers: int = 0                      # augmentation worker processes (0: in the training process)
    final_validation: Optional[bool] = None   # nnU-Net's validation of the fold at the end; None: on where it can run
    validation_probabilities: bool = False    # final validation also saves .npz probabilities (nnU-Net's --npz)
    seed: Optional[int] = None
    batch_size: Optional[int] = None          # override the plans' batch size (GPU memory; more steps on a CPU)
    preprocess_processes: int = 2
    context: str = "none"                     # "learned[:t][,m=MM,...]": learned context classes (CoLab), or "none"
    num_gpus: int = 1                         # > 1: one training on that many GPUs with PyTorch DDP (training/ddp.py)
    # how the supports enter training (training/schedule.py): None = the recipe's value; "default" = the paper's
    recipe: str = "default"                   # "paper" | "default"
    support_schedule: Optional[str] = None    # plain | lvr:W | ramp:N[,delay=D][,lvr=W][,cap=C] | cap:C[,lvr=W]
    support_head: Optional[float] = None      # separate support head with this loss weight (exported: lesion head)
    head_init: Optional[str] = None           # preserve | reinit: output layers when fine-tuning a binary model
    nnunet_folders: bool = False              # honour the user's nnUNet_preprocessed / nnUNet_results variables
    plans: str = "default"                    # planner preset: default | ResEncM | ResEncL | ResEncXL (PLANNERS)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.dataset_dir = Path(self.dataset_dir)
        self.work_dir = Path(self.work_dir)
        if self.pretrained_model is not None:
            self.pretrained_model = Path(self.pretrained_model)
        if self.model_dir is not None:
            self.model_dir = Path(self.model_dir)
        self.fold = str(self.fold)

    def validate(self) -> None:
        """Refuse options that cannot run, before anything starts; raises InputError naming the value and the
        choices."""
        if self.configuration not in CONFIGURATIONS:
            raise InputError(f"configuration '{self.configuration}' is not supported; choose one of "
                             f"{', '.join(CONFIGURATIONS)}")
        if self.device not in DEVICES:
            raise InputError(f"device '{self.device}' is unknown; choose one of {', '.join(DEVICES)}")
        if self.plans not in PLANNERS:
            raise InputError(f"plans preset '{self.plans}' is unknown; choose one of {', '.join(PLANNERS)}")
        if self.sampling not in SAMPLINGS:
            raise InputError(f"sampling '{self.sampling}' is unknown; choose 'target' or 'stock'")
        if self.fold not in FOLD_CHOICES:
            raise InputError(f"fold '{self.fold}' is not valid; choose auto, all, 0-4 or 5fold (all five folds)")
        if (self.context or "none") != "none":
            from backsplit.training.colab.spec import parse_context

            parse_context(self.context)  # raises InputError naming the accepted form
        if self.batch_size is not None and int(self.batch_size) < 1:
            raise InputError("batch size must be at least 1 (or left empty for the plans' value)")
        if self.num_gpus != 1:
            check_options(self.num_gpus, self.device, self.batch_size, self.context)  # CUDA, batch >= GPUs, no learned
        for name in ("epochs", "iterations_per_epoch", "val_iterations_per_epoch", "save_every"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"{name.replace('_', ' ')} must be at least 1")
        variants = self.variants   # InputError naming the accepted forms
        if self.head_init is not None and self.pretrained_model is None:
            raise InputError(f"head init '{self.head_init}' applies only when fine-tuning (--pretrained); remove it or "
                             "choose the model to fine-tune from")
        if variants["support_head"] is not None and self.final_validation:
            raise InputError("nnU-Net's final validation cannot run with the separate support head (the exported "
                             "model predicts the targets only); remove --validate or --support-head")
        if variants["support_head"] is not None and self.num_gpus > 1:
            raise InputError("the separate support head is not available with --num-gpus above 1 yet (its lesion-head "
                             "export runs in the single-GPU worker); use --num-gpus 1 or a support schedule")
        if (variants["support_head"] is not None or variants["support_schedule"] != "plain") and \
                (self.context or "none") != "none":
            raise InputError(f"the support schedule / support head cannot be combined with --context "
                             f"{self.context}; use one of them")
        if self.resume and self.pretrained_model is not None:
            raise InputError("resume and fine-tune cannot be combined: resume continues an earlier run of this model, "
                             "fine-tuning starts a new one from another model's weights")

    @property
    def runs_total(self) -> int:
        """How many trainings this request starts: per dataset (BackSplit, and the twin) one per fold."""
        return (2 if self.with_binary else 1) * (5 if self.fold == CROSS_VALIDATION else 1)

    @property
    def variants(self) -> dict:
        """The effective support schedule, support head and head init (``schedule.resolve_recipe``). Learned context
        (``--context learned``) trains its own context classes with the plain loss: the recipe's schedule is not
        applied to it unless a schedule is asked for explicitly (then refused by ``check``)."""
        from backsplit.training.schedule import resolve_recipe

        schedule = self.support_schedule
        if schedule is None and self.support_head is None and (self.context or "none") != "none":
            schedule = "plain"
        try:
            return resolve_recipe(self.recipe, schedule, self.support_head, self.head_init)
        except ValueError as exc:
            raise InputError(str(exc)) from None

    def final_validation_for(self, fold: str) -> bool:
        """Whether nnU-Net's final validation runs after training ``fold``: as asked, else on for the folds 0-4 (so
        ``nnUNetv2_find_best_configuration`` finds ``fold_<f>/validation/summary.json``; the cost is one mirrored
        prediction of the fold's held-out fifth of the cases) and off for fold 'all' (its "validation" would
        predict every training case, a cost with nothing held out), the separate support head and learned context
        (the exported network is not the trained one)."""
        if self.final_validation is not None:
            return bool(self.final_validation)
        return str(fold) != "all" and self.variants["support_head"] is None and (self.context or "none") == "none"

    @property
    def plans_name(self) -> str:
        """nnU-Net's plans name of the preset (``nnUNetPlans``, ``nnUNetResEncUNetMPlans``, ...)."""
        return PLANNERS[self.plans][1]

    @property
    def learning_rate(self) -> float:
        if self.initial_lr is not None:
            return float(self.initial_lr)
        return FINE_TUNE_LR if self.pretrained_model is not None else DEFAULT_LR

    def to_json(self) -> str:
        """The options as a JSON object (paths as strings); read back by ``from_json``."""
        raw = asdict(self)
        for key, value in raw.items():
            if isinstance(value, Path):
                raw[key] = str(value)
        return json.dumps(raw, indent=2)

    @classmethod
    def from_json(cls, text: str) -> "TrainOptions":
        """The options written by ``to_json``; keys this version does not know are left out (an older or newer
        BackSplit's options file still loads)."""
        raw = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})


FOLD_CHOICES = ("auto", "all", "0", "1", "2", "3", "4", "5fold")
CROSS_VALIDATION = "5fold"


def resolve_fold(fold: str, n_cases: int) -> str:
    """'auto' -> 'all' for fewer than 5 cases (5-fold splits need 5), else '0'. Explicit folds need >= 5 cases."""
    if fold == "auto":
        return "all" if n_cases < 5 else "0"
    if fold != "all" and n_cases < 5:
        what = "5-fold cross-validation" if fold == CROSS_VALIDATION else f"fold {fold}"
        raise InputError(f"{what} needs a 5-fold split, which needs at least 5 cases, but the dataset has "
                         f"{n_cases}; choose fold 'all' (or 'auto') or export more cases")
    return fold


def resolve_folds(fold: str, n_cases: int) -> list[str]:
    """The folds to train, in order: one fold, or '0'..'4' for 5-fold cross-validation ('5fold')."""
    resolved = resolve_fold(fold, n_cases)
    return [str(i) for i in range(5)] if resolved == CROSS_VALIDATION else [resolved]


def trainer_folder_name(configuration: str, trainer: str = TRAINER_NAME, plans: str = PLANS_NAME) -> str:
    """nnU-Net's name of a model's results folder: "<trainer>__<plans>__<configuration>"."""
    return f"{trainer}__{plans}__{configuration}"


def check_request(num_gpus: int, device_type: Optional[str] = None, cuda_devices: Optional[int] = None,
                  batch_size: Optional[int] = None) -> None:
    """Refuse a multi-GPU request that cannot run. ``device_type``: the resolved torch device type ('cuda', 'mps',
    'cpu', or 'auto' before resolving); ``cuda_devices``: how many GPUs PyTorch sees; ``batch_size``: the global
    batch size (samples per iteration over all GPUs). None skips a check. Raises InputError naming the values."""
    if isinstance(num_gpus, bool) or not isinstance(num_gpus, int) or num_gpus < 1:
        raise InputError(f"--num-gpus {num_gpus!r} is not valid; give a whole number of GPUs, at least 1 (1: no DDP)")
    if num_gpus == 1:
        return
    if device_type is not None and device_type not in ("cuda", "auto"):
        raise InputError(f"--num-gpus {num_gpus} trains with PyTorch DDP over NCCL, which needs CUDA GPUs, but the "
                         f"device is '{device_type}'; choose --device cuda (or auto on a machine with NVIDIA GPUs), or "
                         "--num-gpus 1")
    if cuda_devices is not None and cuda_devices < num_gpus:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise InputError(f"--num-gpus {num_gpus} asks for {num_gpus} GPUs but PyTorch sees {cuda_devices} "
                         f"(CUDA_VISIBLE_DEVICES={visible if visible is not None else 'not set'}); choose --num-gpus "
                         f"{max(1, cuda_devices)} or fewer, or run where {num_gpus} GPUs are visible")
    if batch_size is not None and int(batch_size) < num_gpus:
        raise InputError(f"the batch size is {batch_size} but --num-gpus is {num_gpus}: DDP splits every batch across "
                         f"the GPUs and needs at least one sample per GPU; set --batch-size {num_gpus} or more, or use "
                         f"at most {batch_size} GPU(s)")


def check_options(num_gpus: Any, device: str, batch_size: Optional[int], context: Optional[str]) -> None:
    """The checks that need no GPU and no plans (``TrainOptions.validate``, ``StudySettings.validate``)."""
    check_request(num_gpus, device, None, batch_size)
    if num_gpus > 1 and (context or "none") != "none":
        raise InputError(f"--context {context} cannot be trained with --num-gpus {num_gpus}: the learned-context "
                         "task generator is not synchronised across GPUs (each GPU would meta-learn its own generator "
                         "from its own part of the batch); train learned context on one GPU (--num-gpus 1)")
