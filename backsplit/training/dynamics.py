"""The worker's side of the training variants (support schedules, separate support head): trainer settings, the
lesion-head export of a model trained with a separate support head, and the manifest record. torch is imported
inside functions.

A model trained with ``--support-head`` is exported as a plain nnU-Net ``1 + T``-class model (the lesion head):
``fold_<f>/checkpoint_final.pth`` (and ``checkpoint_best.pth``) hold the stock network's weights with
``trainer_name`` ``nnUNetTrainer`` and the lesion head's dataset.json in ``init_args``; the model folder's
``dataset.json`` lists background + targets; the support head's weights go to ``fold_<f>/support_head.pth``
(``supporthead.SIDE_FILE``). ``backsplit predict``, ``nnUNetv2_predict`` and
``nnUNetPredictor.initialize_from_trained_model_folder`` run it unchanged (they build the stock network from the
plans). The two heads cannot be merged exactly into one ``1 + T + S`` layer (see ``supporthead.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from backsplit.errors import InputError

LESION_HEAD_NOTE = "lesion head as a standard nnU-Net (1+T)-class model"


def variant_settings(options, dataset) -> dict:
    """``BackSplitTrainer.settings`` keys for the variant: ``support_schedule``, ``support_head``, ``n_targets``.

    Applied to datasets with support structures only (the binary twin and datasets without supports train the
    plain way). Raises InputError when the targets are not the labels 1..T (the variants' label layout, BackSplit's
    export order)."""
    variants = options.variants
    schema = dataset.schema
    targets = list(dataset.target_labels)
    has_supports = schema is not None and bool(schema.support_values)
    active = has_supports and (variants["support_head"] is not None or variants["support_schedule"] != "plain")
    if not active:
        return {"support_schedule": "plain", "support_head": None, "n_targets": len(targets)}
    if targets != list(range(1, len(targets) + 1)):
        raise InputError(f"the support schedule and the support head need the targets as labels 1..T (BackSplit's "
                         f"export order), but the targets have labels {targets}; export the dataset again with "
                         "BackSplit", path=str(dataset.folder))
    return {"support_schedule": variants["support_schedule"], "support_head": variants["support_head"],
            "n_targets": len(targets)}


def target_names(meta: dict, target_labels) -> list:
    """The dataset.json names of the target labels."""
    values = {int(t) for t in target_labels}
    return [k for k, v in meta["labels"].items() if int(v) in values]


def lesion_meta(meta: dict, n_targets: int) -> dict:
    """The lesion head's dataset.json: labels background + targets; the BackSplit section's schema targets only."""
    from backsplit.labels.schema import LabelSchema
    from backsplit.training.supporthead import lesion_dataset_json

    out = lesion_dataset_json(meta, n_targets)
    section = dict(meta.get("backsplit", {}))
    if section.get("schema"):
        section["schema"] = LabelSchema.from_json(section["schema"]).binary().to_json()
        out["backsplit"] = section
    return out


def export_support_head_model(base: Path, fold: str, meta: dict, n_targets: int) -> dict:
    """Turn ``base/fold_<fold>``'s two-head checkpoints into the lesion-head model plus the side file; write the
    lesion head's dataset.json into ``base``. Returns the manifest note ``{"supports", "side_file", "exported",
    "checkpoints"}``. Running it again on exported checkpoints changes nothing."""
    import torch

    from backsplit.training.supporthead import SIDE_FILE, export_checkpoint

    lesion = lesion_meta(meta, n_targets)
    nnunet_json = dict(lesion)
    fold_dir = Path(base) / f"fold_{fold}"
    done = []
    side = None
    for name in ("checkpoint_final.pth", "checkpoint_best.pth"):
        path = fold_dir / name
        if not path.is_file():
            continue
        saved = torch.load(path, map_location="cpu", weights_only=False)
        plain, head = export_checkpoint(saved, nnunet_json)
        if not head["weights"]:
            continue                                  # exported already
        tmp = path.with_suffix(".pth.tmp")
        torch.save(plain, tmp)
        tmp.replace(path)
        if name == "checkpoint_final.pth":
            side = head
        done.append(name)
    if side is not None:
        torch.save(side, fold_dir / SIDE_FILE)
    (Path(base) / "dataset.json").write_text(json.dumps(nnunet_json, indent=2), encoding="utf-8")
    supports = [k for k, v in sorted(meta["labels"].items(), key=lambda kv: int(kv[1])) if int(v) > n_targets]
    return {"supports": supports, "side_file": SIDE_FILE, "exported": LESION_HEAD_NOTE, "checkpoints": done}


def manifest_record(options, trainer, export: Optional[dict], transfer: Optional[dict]) -> dict:
    """The manifest's ``recipe``, ``loss_schedule``, ``support_head`` (and ``peak_gpu_memory_mb``) entries."""
    variants = options.variants
    record = {"recipe": variants["recipe"]}
    record.update(trainer.variants_record() if hasattr(trainer, "variants_record") else {})
    if "support_head" in record and export is not None:
        record["support_head"].update(export)
    if transfer is not None and options.pretrained_model is not None:
        record["head_init"] = variants["head_init"]
    return record
