"""The task generator ``g_omega``: nnU-Net's planned network with ``t`` outputs (CoLab Eq. 4: ``q = softmax(o)``).

The paper keeps the generator's backbone identical to the segmentation network's. BackSplit builds it from the same
plans (same architecture class, stages, kernels, strides, normalisation) with every stage's feature count multiplied
by ``width`` (default 0.5: about a quarter of the convolutions' multiply-adds and parameters; 1.0 is the paper's
setting), without deep supervision (only the full-resolution ``q`` is used; lower resolutions are averaged from it).
"""

from __future__ import annotations


def generator_arch_kwargs(arch_kwargs: dict, width: float) -> dict:
    """The plans' architecture kwargs with ``features_per_stage`` scaled by ``width`` (at least 4 per stage)."""
    kwargs = dict(arch_kwargs)
    if "features_per_stage" in kwargs:
        kwargs["features_per_stage"] = [max(4, int(round(f * width))) for f in kwargs["features_per_stage"]]
    return kwargs


def build_generator(configuration_manager, num_input_channels: int, n_context: int, width: float):
    """A torch module mapping (b, c, *patch) images to (b, n_context, *patch) logits ``o``."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    return get_network_from_plans(configuration_manager.network_arch_class_name,
                                  generator_arch_kwargs(configuration_manager.network_arch_init_kwargs, width),
                                  configuration_manager.network_arch_init_kwargs_req_import,
                                  num_input_channels, n_context, allow_init=True, deep_supervision=False)
