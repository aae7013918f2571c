"""Label aggregation (CoLab Eq. 5-6) and distance-constrained soft labels (Eq. 7-9), on torch tensors.

Channel layout of the segmentation network (and of every soft label here): ``0`` background far from the targets,
``1..T`` targets, ``T+1..T+S`` supports (user's organ labels, if any), ``T+S+1..T+S+t`` learned context classes.
The paper's binary case has ``t`` background sub-classes and uses the first one as the far-background class ``b``
(Eq. 7); BackSplit keeps label 0 as the far background and adds ``t`` learned classes, so the network has
``1 + T + S + t`` outputs and the lesion output of any BackSplit model stays "argmax, context folded to 0".

Two deviations from the paper, both because users' support labels must stay what the user drew: the generator's
``q`` is spread only over background voxels (Eq. 6 with supports counted as labelled classes), and Eq. 9's blend
towards ``b`` applies to background voxels only (targets and supports keep their one-hot labels at any distance).
Distances are measured from the *target* classes (the lesions), in millimetres, inside each training patch (a patch
without target voxels is all far background; the augmentation's scaling is ignored).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def distance_to_targets_mm(labels, n_targets: int, spacing: Sequence[float]):
    """Euclidean distance (mm) of every voxel to the nearest target voxel (values ``1..n_targets``); 0 inside.

    labels: (b, *spatial) or (b, 1, *spatial) integer-valued tensor or array, spatial axes in the order of
    ``spacing`` (mm per voxel, nnU-Net's configuration order). Returns a float32 torch tensor (b, 1, *spatial) on the
    labels' device; ``inf`` everywhere in a sample without target voxels. Uses scipy's exact Euclidean distance
    transform with anisotropic sampling (a well-tested library implementation).
    """
    import torch
    from scipy.ndimage import distance_transform_edt

    tensor = labels if isinstance(labels, torch.Tensor) else torch.as_tensor(np.asarray(labels))
    array = tensor.detach().cpu().numpy()
    spatial = len(spacing)
    if array.ndim == spatial + 2:
        array = array[:, 0]
    if array.ndim != spatial + 1:
        raise ValueError(f"labels have shape {tensor.shape}, expected (b, [1,] {spatial} spatial axes)")
    out = np.full(array.shape, np.inf, dtype=np.float32)
    for i, sample in enumerate(array):
        target = (sample >= 0.5) & (sample < n_targets + 0.5)
        if target.any():
            out[i] = distance_transform_edt(~target, sampling=[float(s) for s in spacing])
    return torch.from_numpy(out[:, None]).to(tensor.device)


def soft_dilated_mask(distance_mm, margin_mm: float, temperature_mm: float):
    """Eq. 8: ``M = 1`` where ``d < m``, else ``exp((m - d) / tau)`` (0 at infinite distance). Same shape as input."""
    import torch

    d = torch.as_tensor(distance_mm, dtype=torch.float32)
    return torch.where(d < margin_mm, torch.ones_like(d), torch.exp((margin_mm - d) / temperature_mm))


def extended_soft_labels(labels, q, n_fixed: int):
    """Eq. 5-6: one-hot of the labelled classes, the context probability ``q`` on background voxels.

    labels: (b, 1, *spatial) integer-valued (0 background, 1..n_fixed targets and supports); q: (b, t, *spatial)
    context probabilities (softmax of the generator, summing to 1 over t). Returns (b, 1 + n_fixed + t, *spatial) in
    q's dtype; channel 0 is 0 everywhere (no far background before Eq. 9); every voxel sums to 1. Differentiable in q.
    """
    import torch

    hard = labels.round().long()
    if hard.ndim == q.ndim - 1:
        hard = hard[:, None]
    onehot = torch.zeros((q.shape[0], 1 + n_fixed) + tuple(q.shape[2:]), dtype=q.dtype, device=q.device)
    onehot.scatter_(1, hard.clamp(0, n_fixed), 1.0)
    background = onehot[:, :1]
    return torch.cat([torch.zeros_like(background), onehot[:, 1:], background * q], dim=1)


def distance_constrained_labels(extended, mask, n_fixed: int):
    """Eq. 9 on background voxels: ``y_hat = M * y_tilde + (1 - M) * b`` with ``b`` = channel 0 (far background).

    extended: (b, 1 + n_fixed + t, *spatial) from ``extended_soft_labels``; mask: (b, 1, *spatial) Eq. 8 values in
    [0, 1]. Voxels of a labelled class (channels 1..n_fixed) are left as they are (see the module docstring). Every
    voxel still sums to 1; differentiable in the context channels.
    """
    import torch

    labelled = extended[:, 1:1 + n_fixed]
    background = 1.0 - labelled.sum(1, keepdim=True)          # exactly 0/1: one-hot channels, no generator term
    context = extended[:, 1 + n_fixed:]
    return torch.cat([extended[:, :1] + (1.0 - mask) * background, labelled, mask * context], dim=1)


def soft_targets(labels, q, n_fixed: int, mask):
    """Eq. 5-9 for one resolution: ``distance_constrained_labels(extended_soft_labels(labels, q), mask)``."""
    return distance_constrained_labels(extended_soft_labels(labels, q, n_fixed), mask, n_fixed)


def context_mask(labels, n_targets: int, spacing: Sequence[float], margin_mm: float, temperature_mm: float):
    """Eq. 8's mask (b, 1, *spatial) for a batch of label patches (see ``distance_to_targets_mm``)."""
    return soft_dilated_mask(distance_to_targets_mm(labels, n_targets, spacing), margin_mm, temperature_mm).to(
        labels.device)


def multiscale_soft_targets(targets: list, q, n_fixed: int, mask) -> list:
    """Soft labels at every deep-supervision resolution.

    targets: nnU-Net's list of label patches (b, 1, *spatial_s), full resolution first (nearest-neighbour
    downsampled by nnU-Net); q: (b, t, *spatial_0) context probabilities; mask: (b, 1, *spatial_0) Eq. 8 mask at
    full resolution. ``q`` and the mask are averaged down to each resolution (area interpolation, as the authors
    average-pool ``q``), then aggregated with that resolution's labels. Returns a list of (b, C, *spatial_s).
    """
    import torch.nn.functional as F

    out = []
    for labels in targets:
        size = tuple(labels.shape[2:])
        q_s = q if tuple(q.shape[2:]) == size else F.interpolate(q, size=size, mode="area")
        m_s = mask if tuple(mask.shape[2:]) == size else F.interpolate(mask, size=size, mode="area")
        out.append(soft_targets(labels, q_s, n_fixed, m_s.to(q_s.dtype)))
    return out
