"""Network layers used by the model: generalized-mean (GeM) pooling."""
from __future__ import annotations

import math

import torch
from torch import nn


class GeM(nn.Module):
    """Generalized-mean pooling over the spatial dims: ``mean(clamp(x, eps) ** p) ** (1 / p)``.

    ``p = 1`` is average pooling and ``p -> inf`` tends to max pooling. A drop-in replacement for
    ``nn.AdaptiveAvgPool2d(1)``: (B, C, H, W) -> (B, C, 1, 1).

    Args:
        p: initial exponent (> 0).
        eps: lower clamp, keeps ``log x`` finite for x <= 0 (e.g. swish outputs). Computed in log space,
            so any p stays finite (a learnable p that grows past ~7.5 made the direct form NaN).
        learnable: ``p`` is an ``nn.Parameter`` (shape (1,), so optimisers treat it like a bias);
            otherwise a buffer (saved in the state dict, never trained).
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6, learnable: bool = True):
        super().__init__()
        if not p > 0:
            raise ValueError(f"GeM p must be > 0, got {p}")
        value = torch.full((1,), float(p))
        if learnable:
            self.p = nn.Parameter(value)
        else:
            self.register_buffer("p", value)
        self.eps = float(eps)
        self.learnable = bool(learnable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        # x ** 3 overflows float16 for activations above ~40: compute in float32 under AMP.
        if dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        p = self.p.to(x.dtype)
        # In log space: mean(x ** p) ** (1 / p) = exp((logsumexp(p * log x) - log(H * W)) / p). The direct
        # form underflows once p grows (eps ** p is 0 in float32 for p > ~7.5): a channel that is <= eps
        # everywhere then pools to 0, whose 1/p-th power has an infinite gradient, and training turns NaN.
        logs = x.clamp(min=self.eps).log().flatten(-2) * p
        n = logs.shape[-1]
        pooled = ((logs.logsumexp(dim=-1) - math.log(n)) / p).exp()
        return pooled[..., None, None].to(dtype)

    def extra_repr(self) -> str:
        return f"p={self.p.detach().item():.4f}, eps={self.eps}, learnable={self.learnable}"
