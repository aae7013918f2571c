"""Fine-tuning: which weights of the pretrained model are loaded into the new network.

nnU-Net's rule (``nnunetv2/run/load_pretrained_weights.py``, ``load_pretrained_weights``): every parameter except the
segmentation output layers (keys containing ``.seg_layers.``, the 1x1 convolutions of each deep-supervision stage)
must exist in the pretrained weights with the same shape, else the models are incompatible; the output layers are
never transferred. BackSplit follows that rule when the label sets differ (a binary model, or one with other
support classes, fine-tuned into this dataset's classes: output layers re-initialised, everything else loaded).
When the label sets are identical (the interactive loop: the same model fine-tuned on the enlarged dataset) the
output layers are loaded too, so fine-tuning starts from the parent model's predictions rather than from random
output layers. The checkpoint is read onto the CPU (``map_location``), so a GPU-trained model fine-tunes anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from backsplit.datasets.layout import DATASET_JSON, read_dataset_json
from backsplit.errors import InputError

OUTPUT_LAYER_KEY = ".seg_layers."


def label_sets_match(model_labels: Optional[dict], dataset_labels: dict) -> bool:
    """True when the model predicts exactly the dataset's classes (same names with the same values)."""
    return model_labels is not None and {k: int(v) for k, v in model_labels.items()} == \
        {k: int(v) for k, v in dataset_labels.items()}


def _unwrap(network):
    from torch._dynamo import OptimizedModule
    from torch.nn.parallel import DistributedDataParallel

    module = network.module if isinstance(network, DistributedDataParallel) else network
    return module._orig_mod if isinstance(module, OptimizedModule) else module


def transfer_weights(network, pretrained: dict, keep_output_layers: bool, source: str = "") -> dict:
    """Load ``pretrained`` (a state dict) into ``network`` by nnU-Net's rule, optionally with the output layers.

    Returns a report: ``loaded`` and ``reinitialised`` parameter names, ``output_layers_kept``. Raises InputError
    naming the first parameter that is missing or has another shape (the models do not share an architecture).
    """
    module = _unwrap(network)
    state = module.state_dict()
    for key, value in state.items():
        if OUTPUT_LAYER_KEY in key and not keep_output_layers:
            continue
        if key not in pretrained:
            raise InputError(f"the model to fine-tune has no parameter '{key}'; its network differs from this "
                             "dataset's (fine-tune from a model trained with the same plans)", path=source or None)
        if tuple(pretrained[key].shape) != tuple(value.shape):
            raise InputError(f"the parameter '{key}' has shape {tuple(pretrained[key].shape)} in the model to "
                             f"fine-tune but {tuple(value.shape)} here; fine-tune from a model trained with the same "
                             "plans", path=source or None)
    loaded = [k for k in state if keep_output_layers or OUTPUT_LAYER_KEY not in k]
    state.update({k: pretrained[k] for k in loaded})
    module.load_state_dict(state)
    return {"loaded": loaded, "reinitialised": [k for k in state if k not in set(loaded)],
            "output_layers_kept": keep_output_layers}


def load_into_trainer(trainer, checkpoint: Path, dataset_labels: dict) -> dict:
    """Initialise the trainer (as nnU-Net's ``maybe_load_checkpoint`` does) and load the pretrained weights; the
    output layers are kept when the pretrained model's ``dataset.json`` names the same labels as the dataset."""

    import torch

    checkpoint = Path(checkpoint)
    if not trainer.was_initialized:
        trainer.initialize()
    model_folder = checkpoint.parent.parent
    model_labels = read_dataset_json(model_folder, required=(), fix="choose a complete model folder").get("labels") \
        if (model_folder / DATASET_JSON).is_file() else None
    same = label_sets_match(model_labels, dataset_labels)
    try:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file
        raise InputError(f"the checkpoint cannot be read ({type(exc).__name__}: {exc})", path=str(checkpoint)) from None
    report = transfer_weights(trainer.network, saved["network_weights"], same, str(checkpoint))
    report["counts"] = {"output_layers_kept": same, "loaded": len(report["loaded"]),
                        "reinitialised": len(report["reinitialised"])}
    report["message"] = (f"loaded all {len(report['loaded'])} weight tensors (same label set)" if same else
                         f"loaded {len(report['loaded'])} weight tensors; output layers re-initialised "
                         f"({len(report['reinitialised'])} tensors: the label sets differ, "
                         f"{sorted(model_labels or {})} -> {sorted(dataset_labels)})")
    return report
