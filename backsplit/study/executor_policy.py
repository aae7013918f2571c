"""Which executor runs a study's units, and how: the GPU and parallelism rules of ``backsplit study``.

Local: units spread over the visible GPUs (one per GPU, or N per unit with ``num_gpus`` N > 1, PyTorch DDP); on the
CPU one at a time, or ``parallel`` side by side. SLURM: one array job, each task asking for ``gpu:N`` when
``num_gpus`` N > 1. The messages name the command's options (``--parallel``, ``--gpus``, ``--device``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from backsplit.errors import InputError
from backsplit.study import local
from backsplit.study.executors import Executor
from backsplit.study.gpus import slurm_gres
from backsplit.study.slurm import SlurmConfig, SlurmExecutor


def slurm_executor(num_gpus: int = 1, config_file: Optional[Path] = None, **overrides) -> SlurmExecutor:
    """A SLURM executor from the config file (or none) and the given overrides (``partition``, ``time``,
    ``cpus_per_task``, ``mem``, ``gres``, ``poll_s``; None keeps the file's value). With ``num_gpus`` N > 1 each
    array task asks for gpu:N (keeping a GPU type). Raises InputError for an unreadable config or a config that
    asks for GPUs another way (see ``study.gpus.slurm_gres``)."""
    config = SlurmConfig.load(config_file, **overrides)
    config.gres = slurm_gres(config.gres, num_gpus, config.extra_args)   # N > 1: each array task asks gpu:N
    return SlurmExecutor(config)


def local_gpus(gpus: str = "auto", device: str = "auto") -> list[str]:
    """The GPU indices units may use: ``gpus`` 'auto' (CUDA_VISIBLE_DEVICES, else what nvidia-smi lists; none
    unless ``device`` is auto or cuda), 'none' / '' (no GPU spreading) or comma-separated indices."""
    if gpus == "auto":
        return local.visible_gpus() if device in ("auto", "cuda") else []
    if gpus in ("none", ""):
        return []
    return [g.strip() for g in gpus.split(",") if g.strip()]


def local_executor(device: str = "auto", gpus: str = "auto", num_gpus: int = 1, parallel: int = 1,
                   nice: int = 0) -> local.LocalExecutor:
    """A local executor: units one per GPU (``num_gpus`` N > 1: N GPUs a unit), or on the CPU one at a time or
    ``parallel`` side by side. Raises InputError for ``parallel`` < 1 or ``parallel`` > 1 on GPUs."""
    visible = local_gpus(gpus, device)
    if parallel < 1:
        raise InputError(f"--parallel must be at least 1 unit, not {parallel}")
    if parallel > 1 and device != "cpu" and (visible or num_gpus > 1):
        raise InputError(f"--parallel {parallel} runs units side by side on the CPU, but this study uses GPUs "
                         f"({', '.join(visible) or 'DDP'}); on GPUs units run one per GPU (--gpus), so drop "
                         "--parallel, or train on the CPU with --device cpu")
    if num_gpus > 1:   # N GPUs a unit; 'auto' seeing fewer: one unit at a time, the training checks what torch sees
        return local.LocalExecutor(gpus=[] if gpus == "auto" and len(visible) < num_gpus else visible, nice=nice,
                                   gpus_per_unit=num_gpus)
    return local.LocalExecutor(gpus=visible if len(visible) > 1 else [], nice=nice, parallel=parallel)


def study_executor(executor: str = "local", *, device: str = "auto", gpus: str = "auto", num_gpus: int = 1,
                   parallel: int = 1, nice: int = 0, slurm_config: Optional[Path] = None, **slurm_overrides
                   ) -> Executor:
    """``executor`` 'slurm' -> ``slurm_executor``; anything else -> ``local_executor`` (see both)."""
    if executor == "slurm":
        return slurm_executor(num_gpus, slurm_config, **slurm_overrides)
    return local_executor(device, gpus, num_gpus, parallel, nice)
