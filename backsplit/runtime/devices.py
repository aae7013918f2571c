"""The torch device for a user's choice (auto / cuda / mps / cpu), with a clear error when it is not there."""

from __future__ import annotations

from backsplit.errors import InputError


def mps_available(torch) -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def resolve_device(name: str = "auto"):
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_available(torch) else torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' was asked for but no CUDA GPU is available to PyTorch here; choose 'auto' or "
                         "'cpu' (or install a CUDA build of PyTorch)")
    if name == "mps" and not mps_available(torch):
        raise InputError("device 'mps' was asked for but Apple's Metal backend is not available; choose 'auto' or "
                         "'cpu'")
    return torch.device(name)


def usable_cpu_count() -> int:
    """CPU cores this process may run on: its CPU affinity (a SLURM allocation, a container's cpuset, ``taskset``)
    where the platform reports one, else ``os.cpu_count()``; at least 1. A SLURM job given 8 of a node's 128 cores
    must not start 128 torch threads."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):   # macOS and Windows have no sched_getaffinity
        return max(1, os.cpu_count() or 1)
