"""nnU-Net's environment variables, built for one child process (never set in the calling process)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional

from backsplit.training.paths import PREPROCESSED, RESULTS

NNUNET_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_n_proc_DA", "nnUNet_def_n_proc",
                    "nnUNet_compile")


def nnunet_environment(raw_dir: Path, work_dir: Path, base_env: Optional[Mapping[str, str]] = None, *,
                       augmentation_workers: int = 0, processes: int = 2) -> dict[str, str]:
    """The environment of a child process that runs nnU-Net on ``raw_dir`` with outputs under ``work_dir``.

    ``nnUNet_n_proc_DA`` is the number of augmentation workers (0: none, fastest on 2 CPU cores; nnU-Net's planning
    crashes on 0, so the worker sets it only for training). ``nnUNet_def_n_proc`` sizes nnU-Net's pools.
    """
    env = {k: v for k, v in (os.environ if base_env is None else base_env).items() if k not in NNUNET_VARIABLES}
    env.update({
        "nnUNet_raw": str(Path(raw_dir)),
        PREPROCESSED: str(Path(work_dir) / PREPROCESSED),   # the folders of ``paths.preprocessed_folder`` / ...
        RESULTS: str(Path(work_dir) / RESULTS),             # ... ``results_folder`` for this work folder
        "nnUNet_def_n_proc": str(max(1, processes)),
        "nnUNet_compile": "f",
        "BACKSPLIT_N_PROC_DA": str(max(0, augmentation_workers)),
        "PYTHONUNBUFFERED": "1",
    })
    return env
