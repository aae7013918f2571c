"""nnU-Net's environment variables, built for one child process (never set in the calling process), and the lookup
of a dataset named as nnU-Net users name it (``-d 501``, ``Dataset501_Name``, or a folder).

A training started from the command line or the Slicer panel honours ``nnUNet_preprocessed`` and ``nnUNet_results``
when the user has set them (existing preprocessing is reused, models land where nnU-Net's own tools look); a study
keeps its units in its own folders (``honour_user=False``). ``nnUNet_raw`` is always the dataset's parent folder, where
nnU-Net's own code finds the dataset by its id.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping, Optional

from backsplit.errors import InputError
from backsplit.training.paths import PREPROCESSED, RESULTS

NNUNET_VARIABLES = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_n_proc_DA", "nnUNet_def_n_proc",
                    "nnUNet_compile")
RAW = "nnUNet_raw"


def user_folders(base_env: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """The nnU-Net folder variables (``nnUNet_raw``, ``nnUNet_preprocessed``, ``nnUNet_results``) set to a non-empty
    value in ``base_env`` (default: this process's environment)."""
    env = os.environ if base_env is None else base_env
    return {k: env[k] for k in (RAW, PREPROCESSED, RESULTS) if (env.get(k) or "").strip()}


def nnunet_environment(raw_dir: Path, work_dir: Path, base_env: Optional[Mapping[str, str]] = None, *,
                       augmentation_workers: int = 0, processes: int = 2, honour_user: bool = False) -> dict[str, str]:
    """The environment of a child process that runs nnU-Net on ``raw_dir`` with outputs under ``work_dir``.

    ``honour_user``: keep ``nnUNet_preprocessed`` / ``nnUNet_results`` from ``base_env`` where set (else
    ``<work_dir>/nnUNet_preprocessed|results``). ``nnUNet_n_proc_DA`` is the number of augmentation workers (0: none,
    fastest on 2 CPU cores; nnU-Net's planning crashes on 0, so the worker sets it only for training).
    ``nnUNet_def_n_proc`` sizes nnU-Net's pools.
    """
    base = os.environ if base_env is None else base_env
    kept = user_folders(base) if honour_user else {}
    env = {k: v for k, v in base.items() if k not in NNUNET_VARIABLES}
    env.update({
        RAW: str(Path(raw_dir)),
        PREPROCESSED: kept.get(PREPROCESSED) or str(Path(work_dir) / PREPROCESSED),   # ``paths.preprocessed_folder``
        RESULTS: kept.get(RESULTS) or str(Path(work_dir) / RESULTS),                  # ``paths.results_folder``
        "nnUNet_def_n_proc": str(max(1, processes)),
        "nnUNet_compile": "f",
        "BACKSPLIT_N_PROC_DA": str(max(0, augmentation_workers)),
        "PYTHONUNBUFFERED": "1",
    })
    return env


DATASET_NAME = re.compile(r"^Dataset(\d{3,})_.+$")


def resolve_dataset(value, base_env: Optional[Mapping[str, str]] = None) -> Path:
    """The raw dataset folder named by ``value``: a folder, a dataset id (``501``) or a dataset name
    (``Dataset501_Tiny``) looked up in ``$nnUNet_raw`` as nnU-Net does (``Dataset%03d_*``;
    ``nnunetv2/utilities/dataset_name_id_conversion.py``). Raises InputError naming the value, the variable and
    what was found."""
    text = str(value).strip()
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    match = DATASET_NAME.match(path.name)
    if not text.isdigit() and match is None:
        raise InputError("the dataset folder does not exist; give the DatasetNNN_Name folder written by export, or a "
                         "dataset id (e.g. 501) with nnUNet_raw set", path=text)
    raw = user_folders(base_env).get(RAW)
    if raw is None and not text.isdigit():   # a path to a DatasetNNN_Name folder that is not there
        raise InputError("the dataset folder does not exist; give the DatasetNNN_Name folder written by export, or a "
                         "dataset id (e.g. 501) with nnUNet_raw set", path=text)
    if raw is None:
        raise InputError(f"dataset '{text}' is not a folder here, and nnUNet_raw is not set, so its id cannot be "
                         "looked up; give the dataset folder, or set nnUNet_raw to the folder that holds "
                         "DatasetNNN_Name folders")
    number = int(text) if text.isdigit() else int(match.group(1))
    candidates = sorted(p for p in Path(raw).glob(f"Dataset{number:03d}_*") if p.is_dir()) \
        if Path(raw).is_dir() else []
    if match is not None:
        candidates = [p for p in candidates if p.name == path.name]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise InputError(f"no dataset {text} in nnUNet_raw ('{raw}'): no folder Dataset{number:03d}_*; export it "
                         "there, or give the dataset folder")
    raise InputError(f"dataset id {number} names {len(candidates)} folders in nnUNet_raw ('{raw}'): "
                     f"{', '.join(p.name for p in candidates)}; give the full name or the folder")


def nnunet_ext_folder() -> Path:
    """The folder to put in ``nnUNet_extTrainer`` so that nnU-Net's own tools (``nnUNetv2_predict -tr
    BackSplitTrainer``, ``nnUNetv2_find_best_configuration``) find BackSplit's trainer (``nnunet_ext/``)."""
    return Path(__file__).resolve().parent / "nnunet_ext"


def torch_pairing_problem() -> Optional[str]:
    """A one-line message when the installed torchvision was not built for the installed torch, else None.

    nnU-Net's lookup of a trainer by name (``nnUNetv2_train/predict -tr``, ``nnUNetv2_find_best_configuration``)
    imports every trainer module, the Primus trainers among them (dynamic-network-architectures -> timm ->
    torchvision); a torchvision of another torch fails there ("operator torchvision::nms does not exist").
    BackSplit's own training and prediction never import torchvision. The pairing rule of PyTorch's releases
    (pytorch.org "previous versions", torchvision's README table): torch 2.N goes with torchvision 0.(N+15).
    Read from the installed packages' metadata (nothing imported)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        torch_version, vision_version = version("torch"), version("torchvision")
    except PackageNotFoundError:
        return None
    torch_parts, vision_parts = torch_version.split("+")[0].split("."), vision_version.split("+")[0].split(".")
    try:
        major, minor, vision_minor = int(torch_parts[0]), int(torch_parts[1]), int(vision_parts[1])
    except (IndexError, ValueError):
        return None
    if major != 2 or vision_parts[0] != "0" or vision_minor == minor + 15:
        return None
    return (f"torch {torch_version} and torchvision {vision_version} are not a matching pair (torch 2.{minor} goes "
            f"with torchvision 0.{minor + 15}): nnU-Net's own tools will fail to look up trainers by name; install "
            f"the torchvision built for your torch (pip install 'torchvision==0.{minor + 15}.*' from the same index "
            "as torch). BackSplit's own train and predict are not affected.")
