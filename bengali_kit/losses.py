"""The training loss: weighted cross-entropy over the three heads (plus an optional grapheme head), mixup/cutmix
aware."""
from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .components import METRIC_WEIGHTS, grapheme_index, root_parts, triple_codes


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

    ``grapheme_weight`` > 0 adds ``grapheme_weight * CE`` of a fourth head over whole graphemes (the real
    triples of :func:`~bengali_kit.components.grapheme_index`; a triple absent from them adds nothing).
    ``part_weight`` > 0 adds ``part_weight * BCE`` of a multi-hot head over the letters of the root
    (:func:`~bengali_kit.components.root_parts`).
    """

    def __init__(self, weights: Sequence[float] = METRIC_WEIGHTS, label_smoothing: float = 0.0,
                 grapheme_weight: float = 0.0, part_weight: float = 0.0):
        super().__init__()
        weights = tuple(float(w) for w in weights)
        if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"weights must be three non-negative numbers with a positive sum, got {weights}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if grapheme_weight < 0:
            raise ValueError(f"grapheme_weight must be >= 0, got {grapheme_weight}")
        self.weights = weights
        self.label_smoothing = float(label_smoothing)
        if part_weight < 0:
            raise ValueError(f"part_weight must be >= 0, got {part_weight}")
        self.grapheme_weight = float(grapheme_weight)
        self.part_weight = float(part_weight)
        self._grapheme_index = torch.from_numpy(grapheme_index().copy()) if grapheme_weight else None
        self._root_parts = torch.from_numpy(root_parts()[0].copy()) if part_weight else None

    @property
    def has_aux(self) -> bool:
        """Whether a training-only head (grapheme, parts) adds to the loss."""
        return self.grapheme_weight > 0 or self.part_weight > 0

    def part_loss(self, logits: torch.Tensor, targets: torch.Tensor | MixedTargets) -> torch.Tensor:
        """Binary cross-entropy of the parts head against the letters of the (mixed) roots; batch mean."""
        if self._root_parts is None:
            raise ValueError("this loss has no parts head (part_weight is 0)")
        table = self._root_parts.to(logits.device)
        return self._mixed_mean(targets, logits.device, lambda labels: F.binary_cross_entropy_with_logits(
            logits.float(), table[labels[:, 0]], reduction="none").mean(1))

    def _ce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # Per-sample losses in float32 (logits may be float16 under AMP); -100 targets give 0.
        return F.cross_entropy(logits.float(), target, reduction="none", label_smoothing=self.label_smoothing)

    def grapheme_targets(self, labels: torch.Tensor) -> torch.Tensor:
        """(B, 3) labels -> (B,) grapheme classes, -100 for a triple absent from the real data."""
        if self._grapheme_index is None:
            raise ValueError("this loss has no grapheme head (grapheme_weight is 0)")
        if self._grapheme_index.device != labels.device:
            self._grapheme_index = self._grapheme_index.to(labels.device)
        return self._grapheme_index[triple_codes(labels)]

    @staticmethod
    def _mixed_mean(targets: torch.Tensor | MixedTargets, device: torch.device,
                    per_sample: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Batch mean of ``per_sample(labels)``, mixed by ``lam`` between the two label sets of MixedTargets."""
        if isinstance(targets, MixedTargets):
            lam = targets.lam
            if isinstance(lam, torch.Tensor):
                lam = lam.to(device=device, dtype=torch.float32)
            return (lam * per_sample(targets.y_a) + (1 - lam) * per_sample(targets.y_b)).mean()
        return per_sample(targets).mean()

    def _batch_ce(self, logits: torch.Tensor, targets: torch.Tensor | MixedTargets,
                  target_of: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of ``logits`` against ``target_of(labels)``, mixed for MixedTargets; batch mean."""
        return self._mixed_mean(targets, logits.device, lambda labels: self._ce(logits, target_of(labels)))

    def per_head(self, logits: Sequence[torch.Tensor], targets: torch.Tensor | MixedTargets) -> list[torch.Tensor]:
        """The three (mixed) cross-entropies, each averaged over the batch."""
        if len(logits) != 3:
            raise ValueError(f"expected 3 logit tensors, got {len(logits)}")
        if not isinstance(targets, MixedTargets) and (targets.ndim != 2 or targets.shape[1] != 3):
            raise ValueError(f"targets must have shape (B, 3), got {tuple(targets.shape)}")
        return [self._batch_ce(z, targets, lambda y, k=k: y[:, k]) for k, z in enumerate(logits)]

    def grapheme_loss(self, logits: torch.Tensor, targets: torch.Tensor | MixedTargets) -> torch.Tensor:
        """The (mixed) cross-entropy of the grapheme head, averaged over the batch."""
        return self._batch_ce(logits, targets, self.grapheme_targets)

    def forward(self, logits: Sequence[torch.Tensor], targets: torch.Tensor | MixedTargets,
                grapheme_logits: torch.Tensor | None = None, part_logits: torch.Tensor | None = None) -> torch.Tensor:
        """Scalar loss; ``logits`` is a :class:`~bengali_kit.model.Logits` (or any 3 tensors in order), and
        ``grapheme_logits`` the grapheme head's (training with ``grapheme_weight`` > 0; without them, as in
        validation, the loss is the three heads' alone)."""
        losses = self.per_head(logits, targets)
        loss = sum(w * l for w, l in zip(self.weights, losses)) / sum(self.weights)
        if grapheme_logits is not None:
            loss = loss + self.grapheme_weight * self.grapheme_loss(grapheme_logits, targets)
        if part_logits is not None:
            loss = loss + self.part_weight * self.part_loss(part_logits, targets)
        return loss
