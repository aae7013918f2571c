"""Plan and preprocess a dataset with nnU-Net, once: again only when the export changed or a run was interrupted.

Runs inside the training child (nnU-Net's variables set; ``training/environment.py``) or a study's prepare unit.
Plans can be shared (the binary twin uses the BackSplit dataset's plans; fine-tuning uses the pretrained model's),
so that both models see identical inputs and networks.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional

from backsplit.datasets.folder import DatasetFolder
from backsplit.errors import InputError
from backsplit.runtime.progress import ProgressEvent
from backsplit.runtime.progress import emit_event as emit  # one JSON event line on stdout, read by the parent
from backsplit.training.case_counter import FolderProgress
from backsplit.training.lock import TrainingLock
from backsplit.training.options import PLANNERS, PLANS_NAME, TrainOptions
from backsplit.training.paths import prepared_marker, preprocessed_dir


def preparation_lock(dataset: DatasetFolder) -> Path:
    """The lock file of preparing ``dataset`` under this process's ``nnUNet_preprocessed`` (beside its folder)."""
    folder = preprocessed_dir(dataset)
    return folder.parent / f".backsplit-prepare-{folder.name}.lock"


def prepare(dataset: DatasetFolder, options: TrainOptions, plans_from: Optional[dict]) -> dict:
    """``prepare_unlocked`` with the dataset's preparation lock held: a second training (or study unit) on the
    same work folder waits until the first has preprocessed, then reuses its result (nnU-Net's preprocessing of
    one folder by two processes at once crashes one of them)."""
    lock = TrainingLock(preparation_lock(dataset))

    def announce(owner: int) -> None:
        who = f" (process {owner})" if owner else ""
        emit(ProgressEvent("preprocess", f"{dataset.folder_name}: waiting for another training{who} to finish "
                                         "preprocessing this dataset", 0, 3))

    lock.wait(announce)
    try:
        return prepare_unlocked(dataset, options, plans_from)
    finally:
        lock.release()


def prepare_unlocked(dataset: DatasetFolder, options: TrainOptions, plans_from: Optional[dict]) -> dict:
    """Plan and preprocess ``dataset`` once (again when the export changed or a run was interrupted).

    ``plans_from``: plans to use instead of planning (the BackSplit dataset's plans for its binary twin, or the
    pretrained model's plans when fine-tuning), so that both models see identical inputs and networks. The planner
    and plans name are the options' preset (``options.PLANNERS``). Preprocessing that nnU-Net's own tools made for
    this dataset (``nnUNetv2_plan_and_preprocess``, no BackSplit marker) is reused when it holds the same cases and
    labels; otherwise it is refused, never overwritten. Raises InputError.
    """
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    config, plans_name = options.configuration, options.plans_name
    folder = preprocessed_dir(dataset)
    plans_file = folder / f"{plans_name}.json"
    content = dataset.content_hash()
    wanted_plans = _plans_for(dataset, plans_from, plans_name) if plans_from is not None else None
    marker = prepared_marker(dataset, config, plans_name)
    required = [plans_file, folder / "dataset.json", folder / "dataset_fingerprint.json"]
    if marker.is_file() and all(p.is_file() for p in required):
        recorded = json.loads(marker.read_text(encoding="utf-8"))
        current = json.loads(plans_file.read_text(encoding="utf-8"))
        if recorded.get("content") == content and (wanted_plans is None or _same_plans(current, wanted_plans)):
            emit(ProgressEvent("preprocess", f"{dataset.folder_name}: already preprocessed ({config})", 1, 1))
            return current
    elif plans_file.is_file() and not _has_markers(folder):   # made by nnU-Net's own tools: reuse or refuse
        reused = _reuse_foreign(dataset, folder, plans_file, config, wanted_plans)
        if reused is not None:
            return reused
    marker.unlink(missing_ok=True)  # an interrupted or outdated preparation is redone from scratch
    n = max(1, options.preprocess_processes)
    emit(ProgressEvent("plan", f"{dataset.folder_name}: checking the dataset with nnU-Net", 0, 3))
    verify_dataset_integrity(str(dataset.folder), n)
    folder.mkdir(parents=True, exist_ok=True)
    fingerprint_done = (folder / "dataset_fingerprint.json").is_file() and (   # this export's, or nnU-Net's own
        _has_markers(folder, content) or (not _has_markers(folder) and _same_dataset(folder, dataset)))
    preparing = folder / "backsplit_preparing.json"   # ours, even if interrupted
    preparing.write_text(json.dumps({"content": content}), encoding="utf-8")
    if not fingerprint_done:   # another plans preset of the same export reuses the fingerprint
        emit(ProgressEvent("plan", f"{dataset.folder_name}: extracting the dataset fingerprint", 1, 3))
        extract_fingerprints([dataset.dataset_id], num_processes=n, check_dataset_integrity=False, clean=True,
                             verbose=False, show_progress_bar=False)
    if wanted_plans is None:
        plan_experiments([dataset.dataset_id], experiment_planner_class_name=PLANNERS[options.plans][0])
    else:
        emit(ProgressEvent("plan", f"{dataset.folder_name}: using shared plans", 1, 3))
        plans_file.write_text(json.dumps(wanted_plans, indent=2), encoding="utf-8")
        shutil.copy2(dataset.folder / "dataset.json", folder / "dataset.json")  # nnU-Net's preprocessor reads it here
    plans = json.loads(plans_file.read_text(encoding="utf-8"))
    _check_configuration(plans, config, dataset)
    data_identifier = plans["configurations"][config]["data_identifier"]
    if _data_ready(folder, data_identifier, dataset, content):   # ResEnc presets share nnUNetPlans_<config>'s data
        emit(ProgressEvent("preprocess", f"{dataset.folder_name}: reusing the preprocessed data {data_identifier}",
                           2, 3, {"reused": str(folder / data_identifier)}))
    else:
        shutil.rmtree(folder / data_identifier, ignore_errors=True)
        _preprocess(dataset, folder / data_identifier, plans_name, config, n, preprocess)
    marker.write_text(json.dumps({"content": content, "configuration": config, "plans": plans_name,
                                  "data_identifier": data_identifier}), encoding="utf-8")
    emit(ProgressEvent("preprocess", f"{dataset.folder_name}: preprocessed", 3, 3))
    return plans


def _preprocess(dataset: DatasetFolder, data_folder, plans_name: str, config: str, n: int, preprocess) -> None:
    emit(ProgressEvent("preprocess", f"{dataset.folder_name}: preprocessing ({config})", 2, 3))

    def preprocessed(done: int, total: int) -> None:   # per-case progress on the 2/3..3/3 stretch of the bar
        emit(ProgressEvent("preprocess", f"{dataset.folder_name}: preprocessing ({config}), case {done}/{total}",
                           2 * total + done, 3 * total, {"phase": "cases", "cases_done": done, "cases": total}))

    with FolderProgress(data_folder, "*.pkl", len(dataset.case_ids), preprocessed):
        preprocess([dataset.dataset_id], plans_name, (config,), (n,), verbose=False, show_progress_bar=False)


def _check_configuration(plans: dict, config: str, dataset: DatasetFolder) -> None:
    if config in plans["configurations"]:
        return
    why = (" (nnU-Net plans 3d_lowres only when the full-resolution patch covers less than a quarter of the median "
           "image; these images are small enough for 3d_fullres)" if config == "3d_lowres" else "")
    raise InputError(f"nnU-Net planned no '{config}' configuration for this dataset{why}; it planned "
                     f"{', '.join(plans['configurations'])}: choose one of those", path=str(dataset.folder))


def _has_markers(folder, content: Optional[str] = None) -> bool:
    """Whether BackSplit prepared anything in ``folder`` (for this export's ``content`` hash when given)."""
    for marker in folder.glob("backsplit_prepar*.json" if content is None else "backsplit_prepared_*.json"):
        try:
            if content is None or json.loads(marker.read_text(encoding="utf-8")).get("content") == content:
                return True
        except (OSError, ValueError):
            continue
    return False


def _data_ready(folder, data_identifier: str, dataset: DatasetFolder, content: str) -> bool:
    """Whether ``folder/data_identifier`` already holds every case of this export: prepared by BackSplit for another
    plans name with the same data (nnU-Net's ResEnc planners name their 2d/3d_fullres data ``nnUNetPlans_<config>``),
    or by nnU-Net's own tools for the same dataset (no BackSplit marker)."""
    data = folder / data_identifier
    if not data.is_dir() or {p.name[:-4] for p in data.glob("*.pkl")} != set(dataset.case_ids):
        return False
    markers = list(folder.glob("backsplit_prepared_*.json"))
    if not markers:
        return _same_dataset(folder, dataset)
    for marker in markers:
        try:
            recorded = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        identifier = recorded.get("data_identifier") or \
            f"{recorded.get('plans', PLANS_NAME)}_{recorded.get('configuration')}"
        if recorded.get("content") == content and identifier == data_identifier:
            return True
    return False


def _same_dataset(folder, dataset: DatasetFolder) -> bool:
    """Whether the preprocessed ``dataset.json`` in ``folder`` has the dataset's labels, channels and file ending."""
    try:
        theirs = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return all(theirs.get(k) == dataset.meta.get(k) for k in ("labels", "channel_names", "file_ending"))


def _reuse_foreign(dataset: DatasetFolder, folder, plans_file, config: str, wanted_plans: Optional[dict]):
    """Plans (and data) that nnU-Net's own tools wrote for this dataset: the plans when they fit (the configuration's
    data is preprocessed again only when missing), None when nothing is there to reuse; InputError when they were
    made from other data (different labels, channels or cases), which BackSplit would have to overwrite."""
    plans = json.loads(plans_file.read_text(encoding="utf-8"))
    if not (folder / "dataset.json").is_file():
        return None
    if not _same_dataset(folder, dataset) or (wanted_plans is not None and not _same_plans(plans, wanted_plans)):
        raise InputError(f"'{folder}' holds nnU-Net preprocessing ({plans_file.name}) made from other data or with "
                         "other plans; BackSplit does not overwrite it: choose another plans preset (--plans), unset "
                         "nnUNet_preprocessed, or give --work-dir", path=str(dataset.folder))
    _check_configuration(plans, config, dataset)
    data = folder / plans["configurations"][config]["data_identifier"]
    cases = {p.name[:-4] for p in data.glob("*.pkl")} if data.is_dir() else set()
    if cases and cases != set(dataset.case_ids):
        raise InputError(f"'{data}' holds preprocessed cases other than the dataset's ({len(cases)} vs "
                         f"{len(dataset.case_ids)}); BackSplit does not overwrite it: export the same cases, or unset "
                         "nnUNet_preprocessed", path=str(dataset.folder))
    if not cases:
        _preprocess(dataset, data, plans_file.stem, config, 2, _nnunet_preprocess())
    emit(ProgressEvent("preprocess", f"{dataset.folder_name}: using the existing nnU-Net preprocessing in {folder} "
                                     f"({plans_file.stem}, {config})", 1, 1, {"reused": str(folder)}))
    return plans


def _nnunet_preprocess():
    from nnunetv2.experiment_planning.plan_and_preprocess_api import preprocess

    return preprocess


def _plans_for(dataset: DatasetFolder, source: dict, plans_name: str = PLANS_NAME) -> dict:
    plans = json.loads(json.dumps(source))
    plans["dataset_name"] = dataset.folder_name
    plans["plans_name"] = plans_name
    return plans


def _same_plans(a: dict, b: dict) -> bool:
    keys = ("configurations", "foreground_intensity_properties_per_channel", "transpose_forward",
            "original_median_spacing_after_transp")
    return all(a.get(k) == b.get(k) for k in keys)
