"""The competition metric: macro recall per component, averaged with weights 2:1:1.

Kaggle's scorer called ``sklearn.metrics.recall_score(solution, submission, average='macro')`` per component:
the truth comes first, and the macro average runs over the labels present in the truth OR the predictions
(``labels=None``), so a predicted class absent from the truth adds a zero recall. The functions here make
exactly that call, over the whole evaluation set (never averaged per batch).

On a subset that lacks some classes (the images of unseen triples, which hold 77 of the 168 roots), that
call also counts a zero for every class the model predicts there but the subset lacks: the figure falls with
the number of classes the subset misses, not only with its mistakes. ``present_label_recalls`` averages over
the labels the truth holds instead: how the subset's images count inside a test set where every class has
examples, as Kaggle's had. The two agree wherever the truth holds every predicted class.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import recall_score

from .components import COMPONENTS, METRIC_WEIGHTS, N_CLASSES


def _as_labels(y: Any, name: str) -> np.ndarray:
    if hasattr(y, "detach"):  # torch tensor
        y = y.detach().cpu().numpy()
    a = np.asarray(y)
    if a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"{name} must have shape (N, 3) in {COMPONENTS} order, got {a.shape}")
    if len(a) == 0:
        raise ValueError(f"{name} is empty")
    if not np.issubdtype(a.dtype, np.integer):
        if not np.all(np.equal(np.mod(a, 1), 0)):
            raise ValueError(f"{name} must hold integer labels")
        a = a.astype(np.int64)
    return a


def _check_pair(y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    t, p = _as_labels(y_true, "y_true"), _as_labels(y_pred, "y_pred")
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} rows, y_pred has {len(p)}")
    return t, p


def _macro_recalls(y_true: Any, y_pred: Any, present_only: bool) -> dict[str, float]:
    t, p = _check_pair(y_true, y_pred)
    scores = {c: float(recall_score(t[:, i], p[:, i], labels=np.unique(t[:, i]) if present_only else None,
                                    average="macro", zero_division=0))
              for i, c in enumerate(COMPONENTS)}
    scores["weighted"] = float(np.average([scores[c] for c in COMPONENTS], weights=METRIC_WEIGHTS))
    return scores


def component_recalls(y_true: Any, y_pred: Any) -> dict[str, float]:
    """Macro recall of each component plus the 2:1:1 ``"weighted"`` score.

    ``y_true``, ``y_pred``: integer arrays (N, 3) in ``COMPONENTS`` order (truth first).
    """
    return _macro_recalls(y_true, y_pred, present_only=False)


def present_label_recalls(y_true: Any, y_pred: Any) -> dict[str, float]:
    """``component_recalls`` with each macro average over the labels present in ``y_true`` only."""
    return _macro_recalls(y_true, y_pred, present_only=True)


def weighted_recall(y_true: Any, y_pred: Any) -> float:
    """The competition score: 2:1:1 weighted average of the per-component macro recalls."""
    return component_recalls(y_true, y_pred)["weighted"]


def per_class_recall(y_true: Any, y_pred: Any, n_classes: tuple[int, ...] = N_CLASSES) -> pd.DataFrame:
    """One row per (component, label) for every class: ``component, label, recall, support, n_pred``.

    ``recall`` = correct / support (NaN where the class has no true example), ``support`` = true count,
    ``n_pred`` = how often the class was predicted. For per-class plots and error analysis.
    """
    t, p = _check_pair(y_true, y_pred)
    frames = []
    for i, (component, n) in enumerate(zip(COMPONENTS, n_classes)):
        ti, pi = t[:, i], p[:, i]
        size = max(n, int(ti.max()) + 1, int(pi.max()) + 1)
        support = np.bincount(ti, minlength=size)
        n_pred = np.bincount(pi, minlength=size)
        correct = np.bincount(ti[ti == pi], minlength=size)
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(support > 0, correct / np.maximum(support, 1), np.nan)
        frames.append(pd.DataFrame({"component": component, "label": np.arange(size), "recall": recall,
                                    "support": support, "n_pred": n_pred}))
    return pd.concat(frames, ignore_index=True)


def auroc(scores: Any, is_positive: Any) -> float:
    """Area under the ROC curve of ``scores`` for telling positives (higher score) from the rest; ties count half.

    Rank-based (Mann-Whitney): the share of (positive, negative) pairs the score orders right, ties averaged.
    ValueError when the lengths differ, a score is not finite, or one of the two classes is absent.
    """
    s = np.asarray(scores, dtype=np.float64).ravel()
    pos = np.asarray(is_positive, dtype=bool).ravel()
    if len(s) != len(pos):
        raise ValueError(f"{len(s)} scores for {len(pos)} labels")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs positives and negatives, got {n_pos} and {n_neg}")
    order = np.argsort(s, kind="mergesort")
    _, first, counts = np.unique(s[order], return_index=True, return_counts=True)
    ranks = np.empty(len(s))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)  # 1-based ranks, a tie's average
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
