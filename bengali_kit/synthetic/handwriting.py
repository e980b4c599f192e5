"""Handwriting distortions: make a rendered glyph look written (wobble, elastic, perspective, ink, paper).

Tuned side by side with real crops (``benchmarks/real_vs_rendered.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["HandwritingParams", "handwrite"]


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


@dataclass
class HandwritingParams:
    """Strengths of :func:`handwrite`'s distortions (0 turns one off)."""

    wobble: float = 1.5  # px, pen wobble at the scale of a stroke
    elastic: float = 7.0  # px, slow deformation at the scale of the glyph
    perspective: float = 0.05  # fraction of the region's side moved per corner
    texture: float = 10.0  # grey levels of paper/ink noise
    blur: float = 0.6  # max Gaussian sigma (the renderer blurs too; real crops are softer than fonts, not smeared)
    jpeg: tuple[int, int] = (35, 95)  # JPEG quality range; applied half of the time


def handwrite(img: np.ndarray, rng: np.random.Generator, params: HandwritingParams | None = None) -> np.ndarray:
    """Make a rendered glyph (uint8, white background, dark ink) look handwritten; same shape and dtype.

    Works on the glyph's region of the frame only (cheap): slow elastic deformation and fast pen wobble, a
    slight perspective, pen pressure and paper texture, blur and JPEG artefacts. The uniform pen along the
    font's centre lines is the renderer's (``GraphemeRenderer.pen_prob``): re-drawing the distorted image
    along its own skeleton here broke thin strokes and grew spurs.
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
