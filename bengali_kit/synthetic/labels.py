"""Label triples for synthetic graphemes: real (root, vowel, consonant) frequencies, and novel valid triples.

Real triples follow their counts in the real train set (``grapheme_counts.csv``); the stream flattens them
by ``counts ** alpha`` and adds a fraction of combinations the real train set lacks but Bengali spelling
allows (the hidden Kaggle test held such graphemes): rules derived from the real triples, see
:func:`novel_triples`.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..components import COMPONENTS, N_CLASSES, load_class_map, read_grapheme_counts

__all__ = ["sample_labels", "sample_triples", "LabelSampler", "novel_triples"]

# Roots that are independent vowels (অ..ঔ), anusvara/visarga and khanda-ta: written alone, they take no
# vowel sign; we keep only the combinations the real data has for them.
_STANDALONE_ROOTS = frozenset(range(13)) | {164}


def _real_triples(counts=None) -> tuple[np.ndarray, np.ndarray]:
    df = read_grapheme_counts() if counts is None else counts
    triples = df[list(COMPONENTS)].to_numpy(dtype=np.int64)
    return triples, df["count"].to_numpy(dtype=np.float64)


def novel_triples(counts=None) -> np.ndarray:
    """Plausible (root, vowel, consonant) triples absent from the real train set, (K, 3) int64.

    Rules, derived from the real triples: a consonant root (not an independent vowel, ং, ঃ or ৎ) takes
    any vowel sign; it takes a consonant diacritic if the real data shows it with that root, or if the
    diacritic is candrabindu or reph (which attach to any consonant); and the (vowel, consonant
    diacritic) pair must occur somewhere in the real data (e.g. ৃ never takes ya-phala).
    """
    real, _ = _real_triples(counts)
    seen = {tuple(t) for t in real.tolist()}
    root_cons = {(r, c) for r, _, c in seen}
    vowel_cons = {(v, c) for _, v, c in seen}
    roots = load_class_map().roots
    out = []
    for r in range(N_CLASSES[0]):
        if r in _STANDALONE_ROOTS:
            continue
        for v in range(N_CLASSES[1]):
            for c in range(N_CLASSES[2]):
                if (r, v, c) in seen or (v, c) not in vowel_cons:
                    continue
                if (r, c) in root_cons or c == 1 or (c == 2 and not roots[r].startswith("র")):
                    out.append((r, v, c))
    return np.asarray(out, dtype=np.int64).reshape(-1, 3)


class LabelSampler:
    """Draws label triples: real ones with probability ∝ count**alpha, novel ones with ``novel_fraction``."""

    def __init__(self, alpha: float = 0.5, novel_fraction: float = 0.2, counts=None):
        if not 0.0 <= novel_fraction < 1.0:
            raise ValueError(f"novel_fraction must be in [0, 1), got {novel_fraction}")
        if alpha < 0:
            raise ValueError(f"alpha must be >= 0, got {alpha}")
        self.real, c = _real_triples(counts)
        p = c ** alpha
        self.real_p = p / p.sum()
        self._cdf = np.cumsum(self.real_p)
        self.novel = novel_triples(counts) if novel_fraction > 0 else np.zeros((0, 3), dtype=np.int64)
        self.novel_fraction = novel_fraction if len(self.novel) else 0.0

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One triple (3,) int64."""
        if self.novel_fraction and rng.random() < self.novel_fraction:
            return self.novel[rng.integers(len(self.novel))]
        k = min(int(np.searchsorted(self._cdf, rng.random() * self._cdf[-1], side="right")), len(self.real) - 1)
        return self.real[k]


def sample_labels(n: int, rng: np.random.Generator, counts: pd.DataFrame | None = None) -> np.ndarray:
    """``n`` label triples (int64 (n, 3), ``COMPONENTS`` order) drawn with the real triple frequencies."""
    counts = read_grapheme_counts() if counts is None else counts
    idx = sample_triples(n, rng, counts)
    return counts[list(COMPONENTS)].to_numpy(dtype=np.int64)[idx]


def sample_triples(n: int, rng: np.random.Generator, counts: pd.DataFrame) -> np.ndarray:
    """``n`` row indices of ``counts`` drawn with probability proportional to its ``count`` column."""
    w = counts["count"].to_numpy(dtype=np.float64)
    return rng.choice(len(w), size=n, p=w / w.sum())
