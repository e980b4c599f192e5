"""Synthetic graphemes rendered on the fly: an endless, seeded training set for pretraining.

Each item is rendered when it is asked for (in the DataLoader workers), so pretraining is bounded by CPU,
not by disk. Item ``i`` of epoch ``e`` depends only on ``(seed, e, i)``: the same images whatever the number
of workers or processes, and resuming replays the same stream.

Labels (``LabelSampler``) cover the 1,292 real (root, vowel, consonant) triples with their real frequencies
flattened by ``counts ** alpha`` (alpha=1: as in the real train set, 0: uniform), plus a fraction of
combinations that the real train set lacks but Bengali spelling allows (the hidden Kaggle test held such
graphemes): rules derived from the real triples, see :func:`novel_triples`.

Fonts look printed; :func:`handwrite` makes them look written: pen-like wobble (smooth displacement
fields), elastic and perspective distortion, stroke width changes, uneven ink, paper texture, blur and
JPEG artefacts. Items are then cropped and resized exactly as real images are (``preprocess.crop_resize``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .components import N_CLASSES, load_class_map, read_grapheme_counts

__all__ = ["StreamConfig", "LabelSampler", "novel_triples", "handwrite", "HandwritingParams", "skeleton", "SyntheticGraphemes"]

# Roots that are independent vowels (অ..ঔ), anusvara/visarga and khanda-ta: written alone, they take no
# vowel sign; we keep only the combinations the real data has for them.
_STANDALONE_ROOTS = frozenset(range(0, 13)) | {164}


def _real_triples(counts=None) -> tuple[np.ndarray, np.ndarray]:
    df = read_grapheme_counts() if counts is None else counts
    triples = df[["grapheme_root", "vowel_diacritic", "consonant_diacritic"]].to_numpy(dtype=np.int64)
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


# ------------------------------------------------------------------ handwriting look
def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float, amp: float) -> np.ndarray:
    """A random displacement component, smooth at the scale ``sigma`` px, with peak ~``amp`` px."""
    h, w = shape
    # draw noise on a coarse grid and upscale: far cheaper than blurring a full-size field with a big sigma
    step = max(2, int(sigma))
    gh, gw = h // step + 3, w // step + 3
    coarse = rng.standard_normal((gh, gw)).astype(np.float32)
    coarse = cv2.GaussianBlur(coarse, (0, 0), 1.0)
    coarse /= max(float(np.abs(coarse).max()), 1e-6)
    full = cv2.resize(coarse, (gw * step, gh * step), interpolation=cv2.INTER_CUBIC)[:h, :w]
    return full * amp


def _remap(img: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    h, w = img.shape
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(img, xs + dx, ys + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=255)


def _perspective(img: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    h, w = img.shape
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    jitter = rng.uniform(-strength, strength, size=(4, 2)).astype(np.float32) * np.float32([w, h])
    # a random rotation/shear of the whole glyph, as slanted handwriting
    m = cv2.getPerspectiveTransform(src, src + jitter)
    return cv2.warpPerspective(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                               borderValue=255)


def skeleton(mask: np.ndarray) -> np.ndarray:
    """Morphological skeleton of a binary uint8 mask (0/255): the strokes' centre lines, 1-2 px wide."""
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    skel = np.zeros_like(mask)
    cur = mask
    for _ in range(64):  # strokes are never wider than 2 * 64 px here
        eroded = cv2.erode(cur, cross)
        skel |= cv2.subtract(cur, cv2.dilate(eroded, cross))
        if not eroded.any():
            break
        cur = eroded
    return skel


@dataclass
class HandwritingParams:
    """Strengths of :func:`handwrite`'s distortions (0 turns one off)."""

    pen_prob: float = 0.85  # share of images re-drawn with a uniform pen along the skeleton of the font's strokes
    pen_width: tuple[float, float] = (0.03, 0.065)  # pen width as a fraction of the glyph's height
    wobble: float = 1.5  # px, pen wobble at the scale of a stroke
    elastic: float = 5.0  # px, slow deformation at the scale of the glyph
    perspective: float = 0.05  # fraction of the region's side moved per corner
    texture: float = 10.0  # grey levels of paper/ink noise
    blur: float = 0.9  # max Gaussian sigma
    jpeg: tuple[int, int] = (35, 95)  # JPEG quality range; applied half of the time


def _pen_redraw(region: np.ndarray, rng: np.random.Generator, p: HandwritingParams, glyph_h: int) -> np.ndarray:
    ink_level = float(region.min())  # the renderer's ink darkness
    paper = float(np.median(region))
    mask = np.where(region < (ink_level + paper) / 2, 255, 0).astype(np.uint8)
    skel = skeleton(mask)
    if not skel.any():
        return region
    width = max(1.5, rng.uniform(*p.pen_width) * glyph_h)
    r = max(1, int(round(width / 2)))
    nib = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * max(1, int(round(r * rng.uniform(0.7, 1.0)))) + 1))
    stroke = cv2.dilate(skel, nib).astype(np.float32) / 255.0
    stroke = cv2.GaussianBlur(stroke, (0, 0), 0.6)  # anti-aliased edges, as a pen on scanned paper
    return np.clip(paper - stroke * (paper - ink_level), 0, 255).astype(np.uint8)


def handwrite(img: np.ndarray, rng: np.random.Generator, params: HandwritingParams | None = None) -> np.ndarray:
    """Make a rendered glyph (uint8, white background, dark ink) look handwritten; same shape and dtype.

    Works on the glyph's region of the frame only (cheap): a uniform pen re-drawn along the skeleton of the
    font's strokes (fonts modulate stroke width, pens hardly do), slow elastic deformation and fast pen
    wobble, a slight perspective, pen pressure and paper texture, blur and JPEG artefacts.
    """
    p = params or HandwritingParams()
    dark = img < 200
    if not dark.any():
        return img
    ys, xs = np.flatnonzero(dark.any(1)), np.flatnonzero(dark.any(0))
    m = 10
    y0, y1 = max(ys[0] - m, 0), min(ys[-1] + 1 + m, img.shape[0])
    x0, x1 = max(xs[0] - m, 0), min(xs[-1] + 1 + m, img.shape[1])
    out = img[y0:y1, x0:x1].copy()
    h, w = out.shape
    if p.pen_prob > 0 and rng.random() < p.pen_prob:
        out = _pen_redraw(out, rng, p, ys[-1] - ys[0] + 1)
    if p.elastic > 0 or p.wobble > 0:
        dx = np.zeros((h, w), np.float32)
        dy = np.zeros((h, w), np.float32)
        if p.elastic > 0:
            dx += _smooth_field(rng, (h, w), 30, rng.uniform(0.2, 1.0) * p.elastic)
            dy += _smooth_field(rng, (h, w), 30, rng.uniform(0.2, 1.0) * p.elastic)
        if p.wobble > 0:
            dx += _smooth_field(rng, (h, w), 6, rng.uniform(0.0, 1.0) * p.wobble)
            dy += _smooth_field(rng, (h, w), 6, rng.uniform(0.0, 1.0) * p.wobble)
        out = _remap(out, dx, dy)
    if p.perspective > 0:
        out = _perspective(out, rng, p.perspective)
    if p.texture > 0:
        # uneven pen pressure along the strokes and a faint paper texture (the renderer sets the ink level)
        ink = 255.0 - out.astype(np.float32)
        pressure = np.clip(1.0 + 0.2 * _smooth_field(rng, (h, w), 16, 1.0), 0.7, 1.2)
        paper = rng.uniform(0, p.texture) * np.abs(_smooth_field(rng, (h, w), 20, 1.0))
        val = 255.0 - np.maximum(ink * pressure, paper) + rng.normal(0, p.texture / 6, size=(h, w)).astype(np.float32)
        out = np.clip(val, 0, 255).astype(np.uint8)
    if p.blur > 0:
        s = rng.uniform(0, p.blur)
        if s > 0.4:
            out = cv2.GaussianBlur(out, (0, 0), s)
    if p.jpeg and rng.random() < 0.5:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(p.jpeg[0], p.jpeg[1] + 1))])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    frame = img.copy()
    frame[y0:y1, x0:x1] = out
    return frame


# ------------------------------------------------------------------ the dataset
@dataclass
class StreamConfig:
    """Settings of the on-the-fly synthetic dataset (all plain values: they go into config.json)."""

    size: int = 64  # side of the preprocessed crops
    length: int = 20000  # items per epoch
    seed: int = 0
    alpha: float = 0.5  # real frequencies ** alpha (1 = real, 0 = uniform over the real triples)
    novel_fraction: float = 0.2  # share of valid triples absent from the real train set
    handwriting: bool = True  # apply :func:`handwrite` after rendering
    fonts: list[str] = field(default_factory=list)  # font files; empty = ``synth.find_bengali_fonts()``

    def to_dict(self) -> dict:
        return asdict(self)


class SyntheticGraphemes:
    """Map-style torch dataset of freshly rendered graphemes: ``ds[i] -> (uint8 (S,S) ink bright, int64 (3,))``.

    ``set_epoch(e)`` changes the stream; item i of epoch e is seeded by ``(seed, e, i)`` only. The renderer
    (fonts) is built lazily in each worker process, so the dataset pickles cheaply.
    """

    def __init__(self, cfg: StreamConfig | None = None, **overrides):
        self.cfg = cfg or StreamConfig()
        if overrides:
            self.cfg = StreamConfig(**{**self.cfg.to_dict(), **overrides})
        self.epoch = 0
        self.sampler = LabelSampler(self.cfg.alpha, self.cfg.novel_fraction)
        self._renderer = None
        self._cmap = load_class_map()

    def __len__(self) -> int:
        return self.cfg.length

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _get_renderer(self):
        if self._renderer is None:
            from .synth import GraphemeRenderer, find_bengali_fonts

            fonts = [Path(f) for f in self.cfg.fonts] or find_bengali_fonts()
            self._renderer = GraphemeRenderer(fonts)
        return self._renderer

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw 137×236 image (white background) and labels of item ``index`` of the current epoch."""
        rng = np.random.default_rng([self.cfg.seed, self.epoch, int(index)])
        labels = self.sampler.sample(rng)
        text = self._cmap.compose(*map(int, labels))
        img = self._get_renderer().render(text, rng)
        if self.cfg.handwriting:
            img = handwrite(img, rng)
        return img, labels

    def __getitem__(self, index: int):
        import torch

        from .preprocess import crop_resize

        img, labels = self.render(index)
        crop = crop_resize(img, size=self.cfg.size)
        return torch.from_numpy(np.ascontiguousarray(crop)), torch.from_numpy(labels.astype(np.int64))

    def labels_for(self, indices: Sequence[int]) -> np.ndarray:
        """Labels of some items of the current epoch (N,3), without rendering (for stratification checks)."""
        out = np.empty((len(indices), 3), dtype=np.int64)
        for k, i in enumerate(indices):
            out[k] = self.sampler.sample(np.random.default_rng([self.cfg.seed, self.epoch, int(i)]))
        return out
