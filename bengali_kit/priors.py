"""What a model saw in training, and the class-prior correction at inference.

Training records in its checkpoints how many training images of each class the model saw
(``class_counts``: three int lists, one per head) and which (root, vowel, consonant) triples they held
(``train_triples``: sorted ``[r, v, c]`` rows). A model trained on skewed classes favours the frequent ones;
``prior_power`` k (``ck["inference"]["prior_power"]``, 0 = plain argmax) predicts each head's
argmax of ``log p - k * log(count)``, i.e. of ``p / count**k``. The triples tell an image of a
combination the model never trained on from one it did (the unseen-image detector of ``evaluate``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .components import COMPONENTS, N_CLASSES
from .errors import DataError

__all__ = ["training_label_record", "checkpoint_prior_power", "checkpoint_class_counts", "checkpoint_triples",
           "resolve_prior_power", "log_prior", "prior_corrected", "prior_corrected_labels", "in_triples",
           "confidence_novelty"]


def training_label_record(labels: np.ndarray | None) -> dict[str, list]:
    """``class_counts`` and ``train_triples`` of training labels (N, 3) as plain lists; {} without labels."""
    if labels is None or len(labels) == 0:
        return {}
    labels = np.asarray(labels, dtype=np.int64)
    counts = [np.bincount(labels[:, j], minlength=n).tolist() for j, n in enumerate(N_CLASSES)]
    return {"class_counts": counts, "train_triples": np.unique(labels, axis=0).tolist()}


def checkpoint_prior_power(ckpt: Mapping[str, Any], where: str | Path) -> float:
    """The ``prior_power`` a checkpoint carries (0 without one); DataError naming ``where`` when malformed."""
    inference = ckpt.get("inference") or {}
    k = inference.get("prior_power", 0.0) if isinstance(inference, Mapping) else None
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not np.isfinite(k) or k < 0:
        raise DataError(where, f"'inference' must hold a finite prior_power >= 0, got {inference!r}")
    return float(k)


def checkpoint_class_counts(ckpt: Mapping[str, Any], where: str | Path) -> list[np.ndarray] | None:
    """The per-head training class counts a checkpoint carries (None without); DataError when malformed."""
    counts = ckpt.get("class_counts")
    if counts is None:
        return None
    try:
        arrays = [np.asarray(c, dtype=np.int64) for c in counts]
    except (TypeError, ValueError):
        arrays = []
    if [a.shape for a in arrays] != [(n,) for n in N_CLASSES] or any((a < 0).any() for a in arrays):
        raise DataError(where, f"'class_counts' must be three lists of counts >= 0 of {N_CLASSES} classes")
    return arrays


def checkpoint_triples(ckpt: Mapping[str, Any], where: str | Path) -> np.ndarray | None:
    """The training triples (K, 3) a checkpoint carries (None without, or when empty); DataError when malformed."""
    triples = ckpt.get("train_triples")
    if triples is None or len(triples) == 0:
        return None
    a = np.asarray(triples, dtype=np.int64)
    if a.ndim != 2 or a.shape[1] != len(COMPONENTS):
        raise DataError(where, f"'train_triples' must be (K, 3) labels, got shape {a.shape}")
    return a


def resolve_prior_power(ckpt: Mapping[str, Any], where: str | Path, override: float | None = None) -> float:
    """The k to predict with (``override`` or the checkpoint's); DataError naming ``where`` when k > 0 and
    the checkpoint carries no class counts."""
    k = checkpoint_prior_power(ckpt, where) if override is None else float(override)
    if not np.isfinite(k) or k < 0:
        raise ValueError(f"prior_power must be a finite number >= 0, got {override!r}")
    if k > 0 and checkpoint_class_counts(ckpt, where) is None:
        raise DataError(where, f"prior_power {k:g} needs the training class counts, which this checkpoint does "
                               "not carry (trained before they were recorded, or on rendered images only)")
    return k


def log_prior(counts: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each head's log class frequency; a class never seen counts as the rarest class seen (finite, and
    k never favours a class the model has no evidence for over the rare ones it learnt)."""
    out = []
    for c in counts:
        c = np.asarray(c, dtype=np.float64)
        rarest_seen = c[c > 0].min() if (c > 0).any() else 1.0
        c = np.where(c > 0, c, rarest_seen)
        out.append(np.log(c / c.sum()))
    return out


def prior_corrected(probabilities: np.ndarray, head_log_prior: np.ndarray, k: float) -> np.ndarray:
    """argmax over classes of ``log p - k * log prior`` for one head: int64 (N,)."""
    p = np.asarray(probabilities, dtype=np.float64)
    if k == 0:
        return p.argmax(1).astype(np.int64)  # exactly today's argmax, whatever the prior
    with np.errstate(divide="ignore"):  # p == 0 stays -inf: never picked over a class with some probability
        return (np.log(p) - k * np.asarray(head_log_prior)[None, :]).argmax(1).astype(np.int64)


def prior_corrected_labels(probabilities: Mapping[str, np.ndarray] | Sequence[np.ndarray],
                           priors: Sequence[np.ndarray] | None, k: float) -> np.ndarray:
    """(N, 3) labels in ``COMPONENTS`` order from per-head probabilities, corrected by ``priors`` (log) at power k."""
    heads = [probabilities[c] for c in COMPONENTS] if isinstance(probabilities, Mapping) else list(probabilities)
    if k > 0 and priors is None:
        raise ValueError("prior_power > 0 needs the class priors")
    return np.stack([prior_corrected(p, priors[j] if k > 0 else None, k) for j, p in enumerate(heads)], axis=1)


def in_triples(labels: np.ndarray, triples: np.ndarray) -> np.ndarray:
    """Whether each (root, vowel, consonant) row of ``labels`` (N, 3) is one of ``triples`` (K, 3): bool (N,)."""
    def codes(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.int64).reshape(-1, 3)
        return (a[:, 0] * N_CLASSES[1] + a[:, 1]) * N_CLASSES[2] + a[:, 2]
    return np.isin(codes(labels), codes(triples))


def confidence_novelty(probabilities: Mapping[str, np.ndarray]) -> np.ndarray:
    """1 - the product of the three heads' largest probabilities: high for an image unlike the training ones."""
    top = np.prod([np.asarray(probabilities[c], dtype=np.float64).max(1) for c in COMPONENTS], axis=0)
    return 1.0 - top
