"""Glue for the training worker: which trainer class and dataset.json a ``--context`` value trains with."""

from __future__ import annotations

from typing import Optional

from backsplit.training.colab.spec import extend_dataset_json, parse_context


def learned_context_trainer(context: Optional[str], dataset_meta: dict):
    """(trainer class, dataset.json to train with) for ``context`` ("learned[:t]..."); None when context is none.

    Imports torch / nnunetv2 (training child process only). Raises InputError for a malformed value or a dataset
    that cannot take learned context (see ``extend_dataset_json``).
    """
    spec = parse_context(context)
    if spec is None:
        return None
    from backsplit.training.colab.trainer import BackSplitLearnedContextTrainer

    return BackSplitLearnedContextTrainer, extend_dataset_json(dataset_meta, spec)


def manifest_entry(dataset_meta: dict) -> Optional[dict]:
    """The manifest's ``learned_context`` entry: the spec and the context class names with their label values."""
    section = dataset_meta.get("backsplit", {})
    spec = section.get("learned_context")
    if not spec:
        return None
    names = [s["name"] for s in section.get("schema", {}).get("supports", [])
             if "generated (learned context)" in s.get("sources", [])]
    return {**spec, "classes_named": {name: int(dataset_meta["labels"][name]) for name in names}}
