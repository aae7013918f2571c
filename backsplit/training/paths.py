"""Where nnU-Net keeps a dataset's preprocessed data and a model's results, in one place.

Two ways to ask: from the nnU-Net variables of the running child process (``preprocessed_dir``, ``results_dir``;
``training/environment.py`` sets them), or from a work folder before any variable is set (``preprocessed_folder``,
``results_folder``; the study reads its units' folders this way). Both give the same paths for the same work folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from backsplit.training.options import PLANS_NAME, TRAINER_NAME, trainer_folder_name

PREPROCESSED = "nnUNet_preprocessed"     # sub-folder of a work folder, and nnU-Net's variable of the same name
RESULTS = "nnUNet_results"


def preprocessed_folder(work_dir: Path, dataset_name: str) -> Path:
    """``<work>/nnUNet_preprocessed/<DatasetNNN_Name>``."""
    return Path(work_dir) / PREPROCESSED / dataset_name


def results_folder(work_dir: Path, dataset_name: str, configuration: str, trainer: str = TRAINER_NAME) -> Path:
    """``<work>/nnUNet_results/<DatasetNNN_Name>/<trainer>__nnUNetPlans__<configuration>``: the model folder."""
    return Path(work_dir) / RESULTS / dataset_name / trainer_folder_name(configuration, trainer)


def preprocessed_dir(dataset) -> Path:
    """The preprocessed folder of ``dataset`` (a ``DatasetFolder``) under this process's ``nnUNet_preprocessed``;
    raises KeyError when the variable is not set (a process not started by BackSplit's training)."""
    return Path(os.environ[PREPROCESSED]) / dataset.folder_name


def results_dir(dataset, configuration: str, trainer: str = TRAINER_NAME, plans_name: str = PLANS_NAME) -> Path:
    """The model folder of ``dataset`` for ``configuration``, ``trainer`` and ``plans_name`` under this process's
    ``nnUNet_results``; raises KeyError when the variable is not set."""
    return Path(os.environ[RESULTS]) / dataset.folder_name / trainer_folder_name(configuration, trainer, plans_name)


def prepared_marker(dataset, configuration: str, plans_name: str = PLANS_NAME) -> Path:
    """The file that records a finished preparation of ``dataset`` for ``configuration`` and ``plans_name`` (its
    content hash); nnU-Net's default plans keep the name without the plans name."""
    infix = "" if plans_name == PLANS_NAME else f"{plans_name}_"
    return preprocessed_dir(dataset) / f"backsplit_prepared_{infix}{configuration}.json"
