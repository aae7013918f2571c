"""Plan and preprocess a dataset with nnU-Net, once: again only when the export changed or a run was interrupted.

Runs inside the training child (nnU-Net's variables set; ``training/environment.py``) or a study's prepare unit.
Plans can be shared (the binary twin uses the BackSplit dataset's plans; fine-tuning uses the pretrained model's),
so that both models see identical inputs and networks.
"""

from __future__ import annotations

import json
import shutil
from typing import Optional

from backsplit.datasets.folder import DatasetFolder
from backsplit.errors import InputError
from backsplit.runtime.progress import ProgressEvent
from backsplit.runtime.progress import emit_event as emit  # one JSON event line on stdout, read by the parent
from backsplit.training.case_counter import FolderProgress
from backsplit.training.options import PLANS_NAME, TrainOptions
from backsplit.training.paths import prepared_marker, preprocessed_dir


def prepare(dataset: DatasetFolder, options: TrainOptions, plans_from: Optional[dict]) -> dict:
    """Plan and preprocess ``dataset`` once (again when the export changed or a run was interrupted).

    ``plans_from``: plans to use instead of planning (the BackSplit dataset's plans for its binary twin, or the
    pretrained model's plans when fine-tuning), so that both models see identical inputs and networks.
    """
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    config = options.configuration
    folder = preprocessed_dir(dataset)
    plans_file = folder / f"{PLANS_NAME}.json"
    content = dataset.content_hash()
    wanted_plans = _plans_for(dataset, plans_from) if plans_from is not None else None
    marker = prepared_marker(dataset, config)
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


def _plans_for(dataset: DatasetFolder, source: dict) -> dict:
    plans = json.loads(json.dumps(source))
    plans["dataset_name"] = dataset.folder_name
    plans["plans_name"] = PLANS_NAME
    return plans


def _same_plans(a: dict, b: dict) -> bool:
    keys = ("configurations", "foreground_intensity_properties_per_channel", "transpose_forward",
            "original_median_spacing_after_transp")
    return all(a.get(k) == b.get(k) for k in keys)
