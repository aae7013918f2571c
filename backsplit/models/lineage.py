"""Where a model comes from: the dataset version it was trained on and the model it was fine-tuned from.

Written into ``backsplit_model.json`` by the training worker (``build_manifest(lineage=...)``)::

    "model_id": "3f2a...",                       # unique per trained model (uuid4)
    "dataset_version": 2,                         # dataset.json backsplit.version (1 for a dataset without one)
    "dataset_content": "9c1e...",                 # digest of the version's case file hashes (None if unrecorded)
    "parent_model": {"model_id": ..., "path": ..., "name": ..., "source_dataset": ..., "dataset_version": ...,
                     "created": ..., "manifest_sha256": ...}          # None when trained from scratch
    "weights_transfer": {"output_layers_kept": true, "loaded": 120, "reinitialised": 0}
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Optional

from backsplit.datasets.layout import hash_file
from backsplit.datasets.versions import current_version, files_digest
from backsplit.training.manifest import MANIFEST_NAME


def parent_record(model_dir: Path) -> dict:
    """What identifies the parent model even after it is moved or renamed (its id and manifest hash)."""
    model_dir = Path(model_dir).resolve()
    manifest_path = model_dir / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file() else {}
    return {"model_id": manifest.get("model_id"), "path": str(model_dir), "name": model_dir.name,
            "source_dataset": manifest.get("source_dataset"), "dataset_version": manifest.get("dataset_version"),
            "created": manifest.get("created"),
            "manifest_sha256": hash_file(manifest_path) if manifest_path.is_file() else None}


def model_lineage(dataset_meta: dict, pretrained_model: Optional[Path], transfer: Optional[dict] = None) -> dict:
    """The manifest fields linking a new model to its dataset version and parent model."""
    files = dataset_meta.get("backsplit", {}).get("files")
    lineage = {"model_id": uuid.uuid4().hex, "dataset_version": current_version(dataset_meta),
               "dataset_content": files_digest(files) if files else None,
               "parent_model": parent_record(pretrained_model) if pretrained_model is not None else None}
    if transfer is not None:
        lineage["weights_transfer"] = {"output_layers_kept": bool(transfer.get("output_layers_kept")),
                                       "loaded": len(transfer.get("loaded", [])),
                                       "reinitialised": len(transfer.get("reinitialised", []))}
        if transfer.get("function_preserving"):   # output layers from the binary model (headinit.py)
            lineage["weights_transfer"].update(transfer["function_preserving"])
    return lineage
