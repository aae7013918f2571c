"""A separate support head beside the lesion head: the supports are learned on their own output layers and the
model is exported as the lesion head alone, after the autoPET III winner
(MIC-DKFZ/autopet-3-submission, ``ResidualEncoderUNetOrgan.py``: a second list of 1x1 output convolutions on the same
decoder features; ``autoPET3_Trainer.py``: loss = DC+CE(lesion head) + DC+CE(organ head)).
Ideas only; no code taken from that repository.

Network: nnU-Net's stock network built for ``1 + T`` classes (background, targets: the binary twin's classes), plus
``decoder.support_layers``: one 1x1 convolution ``(1 + S, F_s)`` per decoder stage, on the features that feed
``decoder.seg_layers[s]``. They are computed by forward hooks on ``decoder.stages[s]`` only while
``decoder.support_enabled`` is True (training and validation); the network's own forward and output are unchanged,
so nnU-Net's predictor, mirroring and sliding window run the lesion head as usual. Works for every nnU-Net decoder
with ``stages`` and ``seg_layers`` (PlainConvUNet, ResidualEncoderUNet, ResidualUNet of
dynamic_network_architectures 0.4).

Labels (one label map ``(b, 1, *spatial)``, BackSplit's export order: 0 background, 1..T targets, T+1..T+S supports):
* lesion head (1 + T): supports folded into background -- exactly the binary twin's labels;
* support head (1 + S): 0 background, support ``T + k`` -> ``k``; target voxels -> ignore label ``1 + S`` (the
  structure under a lesion is unknown; nnU-Net's DC_and_CE_loss masks them out of CE and Dice).

Loss: ``L = DS(DC_CE_lesion) + w_support * DS(DC_CE_support)`` with nnU-Net's deep-supervision weights.

Export (``export_state``): the lesion head alone is a standard nnU-Net ``1 + T``-class network: drop the
``decoder.support_layers.*`` keys and the result loads *strictly* into the network that nnU-Net (and BackSplit's
``inference/model.py``) builds from the plans, so ``backsplit predict`` and ``nnUNetv2_predict`` run it unchanged and
predict exactly the trained network's lesion labels (tested). The support head goes to a side file for a
BackSplit-aware predictor that also shows supports (``attach_support_head`` + ``load_support_state``).
Merging both heads into one ``1 + T + S`` convolution is *not* exact: the two-softmax model's
``P(s) = P_L(bg) * P_S(s)`` needs ``log P_L(bg) = z_0 - logsumexp(z)`` per voxel, which no linear layer gives, and
its argmax would change lesion voxels; so the exact export is the lesion head.
"""

from __future__ import annotations

from typing import Mapping, Optional

SUPPORT_KEY = "decoder.support_layers."
SIDE_FILE = "support_head.pth"


def attach_support_head(network, n_support_classes: int):
    """Add ``decoder.support_layers`` (``n_support_classes`` = 1 + S outputs) and the capturing hooks; returns the
    network. The new convolutions get nnU-Net's initialisation of output layers (He, negative slope 1e-2:
    dynamic_network_architectures' ``InitWeights_He``)."""
    import torch
    from dynamic_network_architectures.initialization.weight_init import InitWeights_He

    decoder = _plain(network).decoder
    layers = torch.nn.ModuleList(type(conv)(conv.in_channels, n_support_classes, 1, 1, 0, bias=True)
                                 for conv in decoder.seg_layers)
    layers.apply(InitWeights_He(1e-2))
    decoder.support_layers = layers.to(decoder.seg_layers[0].weight.device)
    decoder.support_enabled = False
    decoder.support_outputs = []
    last = len(decoder.stages) - 1

    def clear(module, args):
        module.support_outputs = []

    def capture(stage_index):
        def hook(module, args, output):
            if decoder.support_enabled and (decoder.deep_supervision or stage_index == last):
                decoder.support_outputs.append(decoder.support_layers[stage_index](output))
        return hook

    decoder.register_forward_pre_hook(clear)
    for index, stage in enumerate(decoder.stages):
        stage.register_forward_hook(capture(index))
    return network


def forward_both(network, data):
    """(lesion output, support output) of one forward pass; each a tensor ``(b, C, *spatial)`` or, with deep
    supervision, nnU-Net's list (full resolution first)."""
    decoder = _plain(network).decoder
    decoder.support_enabled = True
    try:
        lesion = network(data)
    finally:
        decoder.support_enabled = False
    support = decoder.support_outputs[::-1]
    decoder.support_outputs = []
    return lesion, (support if decoder.deep_supervision else support[0])


def lesion_labels(target, n_targets: int):
    """Label map with supports folded into background (the lesion head's and the binary twin's labels)."""
    import torch

    return torch.where(target > n_targets, torch.zeros_like(target), target)


def support_labels(target, n_targets: int, n_supports: int):
    """Label map for the support head: 0 background, support ``T + k`` -> ``k``, target voxels -> ``1 + S`` (ignore)."""
    import torch

    out = torch.where(target > n_targets, target - n_targets, torch.zeros_like(target))
    return torch.where((target >= 1) & (target <= n_targets), torch.full_like(target, n_supports + 1), out)


class SupportHeadLoss:
    """``L = DS(DC_CE(lesion)) + w_support * DS(DC_CE(support))``; nnU-Net's DC_and_CE_loss for both heads, the
    support head with ignore label ``1 + S``. Call with (lesion outputs, support outputs, targets), lists full
    resolution first (or single tensors)."""

    def __init__(self, n_targets: int, n_supports: int, batch_dice: bool, n_outputs: int, w_support: float = 1.0,
                 ddp: bool = False):
        from backsplit.training.losses import deep_supervision_weights, nnunet_dc_ce

        self.n_targets, self.n_supports, self.w_support = int(n_targets), int(n_supports), float(w_support)
        self.lesion = nnunet_dc_ce(batch_dice, None, None, ddp)
        self.support = nnunet_dc_ce(batch_dice, self.n_supports + 1, None, ddp)
        self.weights = deep_supervision_weights(n_outputs)

    def __call__(self, lesion_out, support_out, targets):
        def as_list(v):
            return (list(v) if isinstance(v, (list, tuple)) else [v])
        lesion_out, support_out, targets = as_list(lesion_out), as_list(support_out), as_list(targets)
        total = 0.0
        for w, lo, so, t in zip(self.weights, lesion_out, support_out, targets):
            if w == 0:
                continue
            total = total + w * self.lesion(lo, lesion_labels(t, self.n_targets))
            if self.w_support:
                total = total + w * self.w_support * self.support(
                    so, support_labels(t, self.n_targets, self.n_supports))
        return total


def export_state(state: Mapping) -> tuple[dict, dict]:
    """Split a two-head state dict: (the standard nnU-Net ``1 + T``-class network's state dict, the support head's
    state dict with keys relative to ``decoder.support_layers.``)."""
    lesion = {k: v for k, v in state.items() if not k.startswith(SUPPORT_KEY)}
    support = {k[len(SUPPORT_KEY):]: v for k, v in state.items() if k.startswith(SUPPORT_KEY)}
    return lesion, support


def export_checkpoint(checkpoint: dict, lesion_dataset_json: dict) -> tuple[dict, dict]:
    """A trainer checkpoint (``torch.load`` of checkpoint_final.pth) -> (a plain nnU-Net checkpoint of the lesion
    head, the side file's content). The plain one names ``nnUNetTrainer`` and the lesion head's dataset.json
    (background + targets) in ``init_args`` so that ``nnUNetPredictor.initialize_from_trained_model_folder`` builds
    the stock network; optimizer and grad-scaler states are dropped (not needed to predict or to fine-tune)."""
    lesion, support = export_state(checkpoint["network_weights"])
    init_args = dict(checkpoint.get("init_args", {}))
    init_args["dataset_json"] = lesion_dataset_json
    plain = {"network_weights": lesion, "trainer_name": "nnUNetTrainer", "init_args": init_args,
             "current_epoch": checkpoint.get("current_epoch"), "logging": checkpoint.get("logging"),
             "_best_ema": checkpoint.get("_best_ema"),
             "inference_allowed_mirroring_axes": checkpoint.get("inference_allowed_mirroring_axes"),
             "optimizer_state": None, "grad_scaler_state": None}
    return plain, {"format": "backsplit-support-head", "weights": support}


def load_support_state(network, side: Mapping) -> None:
    """Load a side file's support head into a network with ``attach_support_head`` (strict on the head's keys)."""
    _plain(network).decoder.support_layers.load_state_dict(side["weights"])


def lesion_dataset_json(dataset_json: dict, n_targets: int) -> dict:
    """The lesion head's dataset.json: labels background + the first T classes (targets), the rest unchanged."""
    out = dict(dataset_json)
    out["labels"] = {k: int(v) for k, v in dataset_json["labels"].items() if int(v) <= n_targets}
    return out


def _plain(network):
    module = getattr(network, "module", network)                # DDP
    return getattr(module, "_orig_mod", module)                 # torch.compile


def n_supports_of(network) -> Optional[int]:
    """S of a network with a support head (None without)."""
    layers = getattr(_plain(network).decoder, "support_layers", None)
    return None if layers is None else int(layers[0].out_channels) - 1
