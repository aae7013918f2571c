"""Call a module with other parameter values (the virtual weights of the meta step), restoring it afterwards.

``torch.func.functional_call`` does not restore nnU-Net's ``PlainConvUNet``: its decoder holds the encoder as a
submodule too (``decoder.encoder``), so each encoder parameter is reachable under two names, and after the call 56 of
the 68 parameters of the tiny 2d network were left replaced by the call's tensors (torch 2.14.1; measured). This
helper swaps every parameter slot once, whatever the number of paths to it, and puts the original
``nn.Parameter`` objects back in ``finally``.
"""

from __future__ import annotations

from contextlib import contextmanager


def parameter_slots(module) -> list:
    """(submodule, attribute name, canonical parameter name) for every distinct slot holding a parameter."""
    canonical = {id(p): name for name, p in module.named_parameters()}
    slots, seen = [], set()
    for full_name, parameter in module.named_parameters(remove_duplicate=False):
        path, _, attr = full_name.rpartition(".")
        owner = module.get_submodule(path) if path else module
        if (id(owner), attr) not in seen:
            seen.add((id(owner), attr))
            slots.append((owner, attr, canonical[id(parameter)]))
    return slots


@contextmanager
def swapped_parameters(module, values: dict, slots: list | None = None):
    """Within the block, ``module``'s parameters (by ``named_parameters()`` name) read as the tensors in ``values``
    (any tensors: non-leaf ones keep their graph). Names missing from ``values`` keep their parameter."""
    slots = parameter_slots(module) if slots is None else slots
    originals = []
    try:
        for owner, attr, name in slots:
            if name in values:
                originals.append((owner, attr, owner._parameters[attr]))
                owner._parameters[attr] = values[name]
        yield module
    finally:
        for owner, attr, original in reversed(originals):
            owner._parameters[attr] = original


def functional_forward(module, values: dict, *args, slots: list | None = None):
    """``module(*args)`` with the parameter values in ``values`` (name -> tensor); the module is left unchanged."""
    with swapped_parameters(module, values, slots):
        return module(*args)
