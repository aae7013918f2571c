"""The generator's meta-gradient (CoLab Eq. 12-15) through one virtual SGD step of the segmentation weights.

With ``theta* = theta - alpha * grad_theta L_seg(theta, y_hat(omega))`` (Eq. 13, alpha = the segmentation network's
current learning rate; plain SGD, no momentum or clipping), the generator's gradient is

    grad_omega L_ROI(theta*) = -alpha * d/d omega [ grad_theta L_seg(theta, y_hat(omega)) ] . v,
    v = grad_theta L_ROI(theta*)                                               (Eq. 12, 14; Eq. 15 is the step)

Two ways, both on a network called with explicit weights (``forward(theta)``; the trainer uses
``functional.functional_forward``, since ``torch.func.functional_call`` does not restore nnU-Net's U-Net):

* ``meta_gradient_exact``: second-order autograd through the virtual step (create_graph); exact, keeps the double
  backward graph (more memory).
* ``meta_gradient_fd``: the finite-difference Hessian-vector product of DARTS that the CoLab authors use,
  ``d/d omega [grad_theta L_seg] . v ~ (grad_omega L_seg(theta + eps v) - grad_omega L_seg(theta - eps v)) / (2 eps)``
  with ``eps = radius / ||v||``. The two extra segmentation forwards need no graph (``y_hat`` carries omega's), so it
  costs two forwards instead of a double backward. Error O(eps^2) plus rounding (see ``spec.fd_radius``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional


@dataclass
class MetaProblem:
    """forward: theta dict -> network output (tensor or deep-supervision list); params: theta (name -> tensor);
    seg_loss(output, targets) -> L_seg; roi_loss(output) -> L_ROI; targets(): y_hat(omega) with its graph to omega;
    generator_params: omega (list of tensors); step_size: alpha; perturbed_forward: the forward used at
    ``theta +- eps v`` by the fd method (default ``forward``; full precision under mixed precision, where a
    half-precision
    difference of two nearby outputs would be rounding noise)."""
    forward: Callable[[dict], Any]
    params: dict
    seg_loss: Callable[[Any, Any], Any]
    roi_loss: Callable[[Any], Any]
    targets: Callable[[], Any]
    generator_params: list
    step_size: float
    perturbed_forward: Optional[Callable[[dict], Any]] = None


@dataclass
class MetaResult:
    generator_grads: list             # grad_omega L_ROI(theta*), one tensor per generator parameter
    seg_loss: float                   # L_seg(theta, omega)
    roi_loss: float                   # L_ROI(theta*)
    direction_norm: float = 0.0       # ||grad_theta L_ROI(theta*)|| (fd only)


def _filled(grads, like) -> list:
    import torch

    return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, like)]


def meta_gradient_exact(problem: MetaProblem) -> MetaResult:
    """Exact second-order meta-gradient (autograd through ``theta*``)."""
    import torch

    names = list(problem.params)
    values = [problem.params[n] for n in names]
    loss = problem.seg_loss(problem.forward(problem.params), problem.targets())
    grads = _filled(torch.autograd.grad(loss, values, create_graph=True, allow_unused=True), values)
    virtual = {n: p - problem.step_size * g for n, p, g in zip(names, values, grads)}
    roi = problem.roi_loss(problem.forward(virtual))
    meta = torch.autograd.grad(roi, problem.generator_params, allow_unused=True)
    return MetaResult([g.detach() for g in _filled(meta, problem.generator_params)], float(loss.detach()),
                      float(roi.detach()))


def meta_gradient_fd(problem: MetaProblem, radius: float = 0.001, seg_grads: Optional[dict] = None,
                     targets: Any = None, seg_loss_value: Optional[float] = None,
                     roi_scale: float = 1.0) -> MetaResult:
    """Finite-difference meta-gradient. ``seg_grads`` (name -> grad_theta L_seg, e.g. from the real training step of
    the same batch and omega) and ``targets`` (y_hat with graph) are reused when given. ``roi_scale`` multiplies
    L_ROI before its backward (mixed precision: keeps half-precision gradients from underflowing; the result does
    not depend on it)."""
    import torch

    names = list(problem.params)
    values = [problem.params[n].detach() for n in names]
    targets = problem.targets() if targets is None else targets
    if seg_grads is None:
        leaves = [v.clone().requires_grad_(True) for v in values]
        loss = problem.seg_loss(problem.forward(dict(zip(names, leaves))), _detached(targets))
        grads = _filled(torch.autograd.grad(loss, leaves, allow_unused=True), leaves)
        seg_loss_value = float(loss.detach())
    else:
        grads = [seg_grads[n] if seg_grads.get(n) is not None else torch.zeros_like(v) for n, v in zip(names, values)]
    # Weight-list arithmetic with torch's multi-tensor (foreach) kernels, the ones torch's optimizers use: one call
    # per list instead of one or two per tensor (measured 2d CPU: ~30 ms less per meta step at 88 parameters).
    with torch.no_grad():
        virtual = list(torch._foreach_add(values, grads, alpha=-problem.step_size))       # theta* (Eq. 13)
    for v in virtual:
        v.requires_grad_(True)
    roi = problem.roi_loss(problem.forward(dict(zip(names, virtual))))
    direction = _filled(torch.autograd.grad(roi * roi_scale, virtual, allow_unused=True), virtual)
    norm = float(torch.nn.utils.get_total_norm(direction, 2.0))
    if not math.isfinite(norm) or norm == 0.0:
        zeros = [torch.zeros_like(p) for p in problem.generator_params]
        return MetaResult(zeros, float(seg_loss_value or 0.0), float(roi.detach()), norm)
    perturbed = problem.perturbed_forward or problem.forward
    with torch.no_grad():                                   # theta +- radius * v / ||v||
        plus = perturbed(dict(zip(names, torch._foreach_add(values, direction, alpha=radius / norm))))
        minus = perturbed(dict(zip(names, torch._foreach_add(values, direction, alpha=-radius / norm))))
    # grad_omega of -alpha * (L_seg(theta + eps v) - L_seg(theta - eps v)) / (2 eps), eps = radius / ||v_true||
    factor = -problem.step_size * norm / roi_scale / (2.0 * radius)
    difference = factor * (problem.seg_loss(plus, targets) - problem.seg_loss(minus, targets))
    meta = torch.autograd.grad(difference, problem.generator_params, allow_unused=True)
    return MetaResult([g.detach() for g in _filled(meta, problem.generator_params)], float(seg_loss_value or 0.0),
                      float(roi.detach()), norm / roi_scale)


def _detached(targets):
    if isinstance(targets, (list, tuple)):
        return [t.detach() for t in targets]
    return targets.detach()
