"""Fine-tuning: which weights of the pretrained model are loaded into the new network.

nnU-Net's rule (``nnunetv2/run/load_pretrained_weights.py``, ``load_pretrained_weights``): every parameter except the
segmentation output layers (keys containing ``.seg_layers.``, the 1x1 convolutions of each deep-supervision stage)
must exist in the pretrained weights with the same shape, else the models are incompatible; the output layers are
never transferred. BackSplit follows that rule when the label sets differ (a binary model, or one with other
support classes, fine-tuned into this dataset's classes: output layers re-initialised, everything else loaded).
When the label sets are identical (the interactive loop: the same model fine-tuned on the enlarged dataset) the
output layers are loaded too, so fine-tuning starts from the parent model's predictions rather than from random
output layers. With ``head_init="preserve"`` the output layers of a binary model fine-tuned into a
BackSplit model start function-preserving instead (``headinit.py``: the first prediction is the binary model's).
A separate support head's layers (``decoder.support_layers``) are always new. The checkpoint is read onto the CPU
(``map_location``), so a GPU-trained model fine-tunes anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

from backsplit.datasets.layout import DATASET_JSON, read_dataset_json
from backsplit.errors import InputError

OUTPUT_LAYER_KEY = ".seg_layers."
SUPPORT_HEAD_KEY = "decoder.support_layers."   # supporthead.SUPPORT_KEY: never in a pretrained model


WRAPPER_PREFIXES = ("module.", "_orig_mod.")   # DistributedDataParallel's and torch.compile's wrappers


def checkpoint_weights(saved, path) -> dict:
    """The network weights (a state dict: parameter name -> tensor) of a loaded nnU-Net checkpoint (``torch.load``
    of a ``checkpoint_*.pth``: a dict with ``network_weights``). Names saved through a wrapper (``module.`` of
    DistributedDataParallel, ``_orig_mod.`` of ``torch.compile``) lose the prefix, as nnU-Net's own
    ``load_checkpoint`` does for ``module.``. Raises InputError naming ``path`` for a bare state dict
    (``torch.save(network.state_dict())``) or anything else that is not an nnU-Net checkpoint, with the fix."""
    if isinstance(saved, Mapping) and isinstance(saved.get("network_weights"), Mapping):
        weights = saved["network_weights"]
    elif isinstance(saved, Mapping) and saved and all(hasattr(v, "shape") for v in saved.values()):
        raise InputError("this is a bare state dict (torch.save(network.state_dict())), not an nnU-Net checkpoint; "
                         "give the checkpoint_final.pth or checkpoint_best.pth that nnU-Net wrote, or save it as "
                         "nnU-Net does: {'network_weights': state_dict, 'inference_allowed_mirroring_axes': ...}",
                         path=str(path))
    else:
        held = f"a dict with keys {', '.join(sorted(map(str, saved))[:5])}" if isinstance(saved, Mapping) else \
            f"a {type(saved).__name__}"
        raise InputError(f"this is not an nnU-Net checkpoint (no 'network_weights'; it holds {held}); give the "
                         "checkpoint_final.pth or checkpoint_best.pth that nnU-Net wrote", path=str(path))
    stripped = {}
    for key, value in weights.items():
        name = str(key)
        while name.startswith(WRAPPER_PREFIXES):
            name = name.split(".", 1)[1]
        stripped[name] = value
    return stripped


def check_weights_fit(network_state: Mapping, weights: Mapping, path, fix: str) -> None:
    """Raise one InputError naming ``path`` when ``weights`` do not fit the network (``network.state_dict()``):
    weights the network needs but the checkpoint lacks, weights it does not have, or other shapes; the first of
    each kind is named, then ``fix``."""
    missing = [k for k in network_state if k not in weights]
    unexpected = [k for k in weights if k not in network_state]
    shapes = [k for k in network_state if k in weights and tuple(weights[k].shape) != tuple(network_state[k].shape)]
    if not (missing or unexpected or shapes):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} weight(s) of the network are missing, e.g. '{missing[0]}'")
    if unexpected:
        parts.append(f"{len(unexpected)} weight(s) are not in the network, e.g. '{unexpected[0]}'")
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} weight(s) have another shape, e.g. '{k}' {tuple(weights[k].shape)} in the "
                     f"checkpoint but {tuple(network_state[k].shape)} in the network")
    raise InputError(f"the checkpoint does not fit the network ({'; '.join(parts)}); {fix}", path=str(path))


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
        if (OUTPUT_LAYER_KEY in key and not keep_output_layers) or key.startswith(SUPPORT_HEAD_KEY):
            continue
        if key not in pretrained:
            raise InputError(f"the model to fine-tune has no parameter '{key}'; its network differs from this "
                             "dataset's (fine-tune from a model trained with the same plans)", path=source or None)
        if tuple(pretrained[key].shape) != tuple(value.shape):
            raise InputError(f"the parameter '{key}' has shape {tuple(pretrained[key].shape)} in the model to "
                             f"fine-tune but {tuple(value.shape)} here; fine-tune from a model trained with the same "
                             "plans", path=source or None)
    loaded = [k for k in state if (keep_output_layers or OUTPUT_LAYER_KEY not in k) and
              not k.startswith(SUPPORT_HEAD_KEY)]
    state.update({k: pretrained[k] for k in loaded})
    module.load_state_dict(state)
    return {"loaded": loaded, "reinitialised": [k for k in state if k not in set(loaded)],
            "output_layers_kept": keep_output_layers}


def load_into_trainer(trainer, checkpoint: Path, dataset_labels: dict, head_init: Optional[str] = None,
                      targets=()) -> dict:
    """Initialise the trainer (as nnU-Net's ``maybe_load_checkpoint`` does) and load the pretrained weights; the
    output layers are kept when the pretrained model's ``dataset.json`` names the same labels as the dataset, else
    re-initialised (nnU-Net's rule) or, with ``head_init="preserve"``, set function-preserving from a binary model
    (``targets``: the target class names). Raises InputError naming the checkpoint when a model that is not binary
    is to be fine-tuned with ``preserve``."""

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
    weights = checkpoint_weights(saved, checkpoint)
    report = transfer_weights(trainer.network, weights, same, str(checkpoint))
    preserving = None
    if head_init == "preserve" and not same:
        from backsplit.training.headinit import preserve_into

        try:
            preserving = preserve_into(_unwrap(trainer.network), weights, model_labels or {},
                                       dataset_labels, list(targets))
        except ValueError as exc:
            raise InputError(f"function-preserving fine-tuning (head init 'preserve') cannot start from this model: "
                             f"{exc}; fine-tune from the binary baseline model, or choose head init 'reinit'",
                             path=str(checkpoint)) from None
        report["reinitialised"] = []
    report["counts"] = {"output_layers_kept": same, "loaded": len(report["loaded"]),
                        "reinitialised": len(report["reinitialised"])}
    if preserving is not None:
        report["counts"].update(preserving)
        report["function_preserving"] = preserving
        report["message"] = (f"loaded {len(report['loaded'])} weight tensors; output layers function-preserving from "
                             f"the binary model ({preserving['layers']} layers, rows from "
                             f"{preserving['rows_from']}): the first prediction is the binary model's")
        return report
    report["message"] = (f"loaded all {len(report['loaded'])} weight tensors (same label set)" if same else
                         f"loaded {len(report['loaded'])} weight tensors; output layers re-initialised "
                         f"({len(report['reinitialised'])} tensors: the label sets differ, "
                         f"{sorted(model_labels or {})} -> {sorted(dataset_labels)})")
    return report
