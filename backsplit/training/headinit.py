"""Function-preserving output layers: fine-tune a binary nnU-Net model into a BackSplit model without changing its
first prediction.

The binary model has ``1 + T`` output classes (background, targets); the BackSplit network has ``1 + T + S``
(background, the same targets, S support structures), label order as exported (targets first, then supports). Every
segmentation output layer (nnU-Net: ``decoder.seg_layers.<i>``, one 1x1 convolution per deep-supervision stage;
weight ``(C, F, 1, 1[, 1])``, bias ``(C,)``) is rebuilt as:

* target rows: the binary model's target rows (matched by class name);
* background row and every support row: the binary background row, bias shifted by ``-log(S + 1)``.

Then at every voxel ``exp(z_bg) + sum_s exp(z_s) = (S + 1) * exp(b_bg - log(S + 1)) = exp(b_bg)``: the softmax
denominator and every target probability equal the binary model's, and the S + 1 "rest" classes share the binary
background probability equally (``P_bg = P_s = P_bg^binary / (S + 1)``). The first forward pass gives exactly the
binary lesion probability (up to float rounding, ~1e-7 in float32). Source: softmax invariance, e.g. Net2Net's
function-preserving transformations (Chen, Goodfellow, Shlens, ICLR 2016) applied to the output layer.

The gradient breaks the symmetry at once (support rows get ``p_s - y_s``, the background row ``p_bg - y_bg``), so no
noise is needed.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

OUTPUT_LAYER_KEY = ".seg_layers."      # nnU-Net's rule (nnunetv2/run/load_pretrained_weights.py)
METHOD = "function-preserving"


def output_layer_keys(state: Mapping) -> list[str]:
    """The state-dict keys of the segmentation output layers (weights and biases of every deep-supervision stage)."""
    return [k for k in state if OUTPUT_LAYER_KEY in k]


def class_mapping(binary_labels: Mapping[str, int], new_labels: Mapping[str, int],
                  targets: Sequence[str]) -> tuple[list[int], list[int]]:
    """Rows of the new output layer: ``source[i]`` = the binary row that new row ``i`` copies, ``shifted[i]`` = True
    where the row is background or a support (bias shifted).

    ``binary_labels`` / ``new_labels``: dataset.json ``labels`` (name -> value, background 0, values consecutive).
    ``targets``: the target names; each must be a class of both models. Raises ValueError naming a missing target
    or a binary class that is neither background nor a target (the binary model must be the twin: background +
    targets only).
    """
    binary = {str(k): int(v) for k, v in binary_labels.items()}
    new = {str(k): int(v) for k, v in new_labels.items()}
    background = [k for k, v in binary.items() if v == 0]
    if len(background) != 1 or sorted(binary.values()) != list(range(len(binary))):
        raise ValueError(f"the binary model's labels {binary} are not background 0 plus consecutive classes")
    extra = sorted(set(binary) - set(targets) - set(background))
    if extra:
        raise ValueError(f"the model to fine-tune predicts {', '.join(extra)}, which is not a target of this dataset "
                         f"(targets: {', '.join(targets)}); function-preserving transfer needs a binary model")
    source, shifted = [], []
    for name, value in sorted(new.items(), key=lambda kv: kv[1]):
        if value != len(source):
            raise ValueError(f"the dataset's labels {new} are not consecutive")
        if name in targets:
            if name not in binary:
                raise ValueError(f"the model to fine-tune has no class '{name}' (it predicts {sorted(binary)})")
            source.append(binary[name])
            shifted.append(False)
        else:                                   # background or a support structure
            source.append(0)
            shifted.append(True)
    return source, shifted


def preserving_output_layers(binary_state: Mapping, new_state: Mapping, source: Sequence[int],
                             shifted: Sequence[bool]) -> dict:
    """New output-layer tensors (a dict key -> tensor, every ``.seg_layers.`` key of ``new_state``).

    ``binary_state``: the binary model's state dict (``checkpoint["network_weights"]``); ``new_state``: the new
    network's state dict (for key names, shapes, dtype and device). Weight rows copied, biases
    ``b_new[i] = b_bin[source[i]] - log(n_shifted)`` where shifted. Raises ValueError when a key is missing or the
    shapes do not agree (another architecture).
    """
    import torch

    n_rest = sum(bool(s) for s in shifted)
    shift = torch.tensor([-math.log(n_rest) if s else 0.0 for s in shifted], dtype=torch.float64)
    index = torch.as_tensor(list(source), dtype=torch.long)
    out = {}
    for key in output_layer_keys(new_state):
        if key not in binary_state:
            raise ValueError(f"the model to fine-tune has no output layer '{key}'")
        old, like = binary_state[key], new_state[key]
        if tuple(old.shape[1:]) != tuple(like.shape[1:]) or like.shape[0] != len(source):
            raise ValueError(f"output layer '{key}': shape {tuple(old.shape)} cannot become {tuple(like.shape)}")
        value = old.detach().to("cpu", torch.float64)[index]
        if key.endswith(".bias"):
            value = value + shift
        out[key] = value.to(like.dtype).to(like.device)
    missing_bias = [k for k in out if k.endswith(".weight") and k[:-len("weight")] + "bias" not in out]
    if missing_bias:
        raise ValueError(f"output layer(s) without bias {missing_bias}: the bias shift needs one")
    return out


def preserve_into(network, binary_state: Mapping, binary_labels: Mapping[str, int], new_labels: Mapping[str, int],
                  targets: Sequence[str]) -> dict:
    """Load the function-preserving output layers into ``network`` (the other weights are loaded by the caller, by
    nnU-Net's rule). Returns the manifest record ``{"output_layers": METHOD, "rows_from": {...},
    "bias_shift": -log(S+1), "layers": n}``."""
    source, shifted = class_mapping(binary_labels, new_labels, targets)
    state = network.state_dict()
    layers = preserving_output_layers(binary_state, state, source, shifted)
    state.update(layers)
    network.load_state_dict(state)
    by_value = {int(v): k for k, v in new_labels.items()}
    binary_names = {int(v): k for k, v in binary_labels.items()}
    return {"output_layers": METHOD, "layers": sum(k.endswith(".weight") for k in layers),
            "rows_from": {by_value[i]: binary_names[s] for i, s in enumerate(source)},
            "bias_shift": -math.log(sum(shifted))}


def transfer_all(network, binary_state: Mapping, binary_labels: Mapping[str, int], new_labels: Mapping[str, int],
                 targets: Sequence[str]) -> dict:
    """Fine-tuning start in one call: every other weight by nnU-Net's rule (same key, same shape; in the product
    ``training/pretrained.transfer_weights``), then the function-preserving output layers. Raises ValueError
    naming the first parameter that does not fit. Returns ``preserve_into``'s record plus ``loaded``."""
    state = network.state_dict()
    for key, value in state.items():
        if OUTPUT_LAYER_KEY in key:
            continue
        if key not in binary_state or tuple(binary_state[key].shape) != tuple(value.shape):
            raise ValueError(f"the model to fine-tune has no parameter '{key}' of shape {tuple(value.shape)}")
        state[key] = binary_state[key]
    network.load_state_dict(state)
    record = preserve_into(network, binary_state, binary_labels, new_labels, targets)
    record["loaded"] = sum(OUTPUT_LAYER_KEY not in k for k in state)
    return record
