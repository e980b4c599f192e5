"""LARS: layer-wise adaptive rate scaling (You, Gitman & Ginsburg 2017) as a torch optimizer.

For each parameter tensor ``w`` with gradient ``g`` in a group that is not excluded::

    trust = trust_coefficient * ||w|| / (||g|| + weight_decay * ||w|| + eps)   (1 if ||w|| or ||g|| is 0)
    d     = trust * (g + weight_decay * w)
    buf   = momentum * buf + d            (buf = d on the first step; no buffer when momentum == 0)
    d     = d + momentum * buf            (Nesterov)   or   d = buf   (plain momentum)
    w     = w - lr * d

Groups with ``lars_exclude=True`` (biases, normalisation weights, GeM's p) skip both the trust ratio and
the weight decay: ``d = g``, then the same momentum and step — plain SGD with momentum.
The learning rate sits outside the momentum buffer, as in ``torch.optim.SGD``, so lr schedulers act at once.
"""
from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn


class LARS(torch.optim.Optimizer):
    """LARS optimizer; see the module docstring for the exact update.

    Args:
        params: parameters or parameter groups; a group may set ``lars_exclude=True``.
        lr: learning rate (global, multiplied by each tensor's trust ratio).
        momentum: momentum factor, 0 disables the buffer.
        weight_decay: L2 penalty added to the gradient before scaling (ignored for excluded groups).
        trust_coefficient: the LARS eta.
        nesterov: Nesterov momentum (needs momentum > 0).
        eps: added to the trust ratio's denominator.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        trust_coefficient: float = 0.001,
        nesterov: bool = False,
        eps: float = 1e-8,
    ):
        if lr < 0:
            raise ValueError(f"invalid learning rate {lr}")
        if momentum < 0:
            raise ValueError(f"invalid momentum {momentum}")
        if weight_decay < 0:
            raise ValueError(f"invalid weight_decay {weight_decay}")
        if trust_coefficient <= 0:
            raise ValueError(f"invalid trust_coefficient {trust_coefficient}")
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                        trust_coefficient=trust_coefficient, nesterov=nesterov, eps=eps, lars_exclude=False)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        """Perform one optimisation step; ``closure`` re-evaluates the loss (optional)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            wd, eta, eps = group["weight_decay"], group["trust_coefficient"], group["eps"]
            exclude = group["lars_exclude"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if g.is_sparse:
                    raise RuntimeError("LARS does not support sparse gradients")
                if exclude:
                    d = g
                else:
                    w_norm = torch.linalg.vector_norm(p)
                    g_norm = torch.linalg.vector_norm(g)
                    # Stay on the device (no .item() sync); a zero weight or zero gradient falls back to 1.
                    trust = torch.where(
                        (w_norm > 0) & (g_norm > 0),
                        eta * w_norm / (g_norm + wd * w_norm + eps),
                        torch.ones_like(w_norm),
                    )
                    d = g.add(p, alpha=wd) if wd != 0 else g.clone()
                    d.mul_(trust)
                if momentum != 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = d.detach().clone()
                    else:
                        buf.mul_(momentum).add_(d)
                    d = d.add(buf, alpha=momentum) if group["nesterov"] else buf
                p.add_(d, alpha=-lr)
        return loss


def lars_param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split ``model``'s trainable parameters into LARS groups.

    Tensors with ndim <= 1 (biases, BatchNorm weights, GeM's p) go into a group with ``lars_exclude=True``
    and ``weight_decay=0``; the rest (conv and linear weights) get ``weight_decay`` and the trust ratio.
    Empty groups are left out. The groups also work with other optimizers (the extra key is ignored).
    """
    adapted, excluded = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (excluded if p.ndim <= 1 else adapted).append(p)
    groups = []
    if adapted:
        groups.append({"params": adapted, "weight_decay": float(weight_decay), "lars_exclude": False})
    if excluded:
        groups.append({"params": excluded, "weight_decay": 0.0, "lars_exclude": True})
    return groups
