"""The training loss: weighted cross-entropy over the three heads, mixup/cutmix aware."""
from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .components import METRIC_WEIGHTS


class MixedTargets(NamedTuple):
    """Targets of a mixed batch (mixup/cutmix): ``lam * CE(y_a) + (1 - lam) * CE(y_b)``.

    ``y_a``, ``y_b``: LongTensor (B, 3); ``lam``: a float, or a tensor (B,) for per-sample weights.
    """

    y_a: torch.Tensor
    y_b: torch.Tensor
    lam: float | torch.Tensor


class MultiHeadLoss(nn.Module):
    """``sum_k w_k * CE_k / sum_k w_k`` over the three heads (root, vowel, consonant).

    Normalised by the sum of the weights so the loss stays on the scale of one cross-entropy whatever
    the weights (a learning rate tuned for 2:1:1 still fits 1:1:1). Default weights = the metric's 2:1:1.
    ``label_smoothing`` is passed to ``F.cross_entropy``.
    """

    def __init__(self, weights: Sequence[float] = METRIC_WEIGHTS, label_smoothing: float = 0.0):
        super().__init__()
        weights = tuple(float(w) for w in weights)
        if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"weights must be three non-negative numbers with a positive sum, got {weights}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.weights = weights
        self.label_smoothing = float(label_smoothing)

    def _ce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Per-sample losses in float32 (logits may be float16 under AMP).
        return F.cross_entropy(logits.float(), target, reduction="none", label_smoothing=self.label_smoothing)

    def per_head(self, logits: Sequence[torch.Tensor], targets: torch.Tensor | MixedTargets) -> list[torch.Tensor]:
        """The three (mixed) cross-entropies, each averaged over the batch."""
        if len(logits) != 3:
            raise ValueError(f"expected 3 logit tensors, got {len(logits)}")
        if isinstance(targets, MixedTargets):
            lam = targets.lam
            if isinstance(lam, torch.Tensor):
                lam = lam.to(device=logits[0].device, dtype=torch.float32)
            return [(lam * self._ce(z, targets.y_a[:, k]) + (1 - lam) * self._ce(z, targets.y_b[:, k])).mean()
                    for k, z in enumerate(logits)]
        if targets.ndim != 2 or targets.shape[1] != 3:
            raise ValueError(f"targets must have shape (B, 3), got {tuple(targets.shape)}")
        return [self._ce(z, targets[:, k]).mean() for k, z in enumerate(logits)]

    def forward(self, logits: Sequence[torch.Tensor], targets: torch.Tensor | MixedTargets) -> torch.Tensor:
        """Scalar loss; ``logits`` is a :class:`~bengali_kit.model.Logits` (or any 3 tensors in order)."""
        losses = self.per_head(logits, targets)
        return sum(w * l for w, l in zip(self.weights, losses)) / sum(self.weights)
