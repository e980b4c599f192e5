"""The grapheme renderer: a Bengali string shaped with a font, drawn as a competition-like image.

Text is shaped by Pillow's raqm layout (conjuncts, reordered vowel signs). Most images are re-drawn with a
constant-width pen along the glyph's centre lines (Zhang-Suen thinning), as fonts modulate stroke width and
pens hardly do.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

from ..data import IMAGE_HEIGHT, IMAGE_WIDTH
from .fonts import INSTALL_HINT

__all__ = ["GraphemeRenderer", "thin"]


def _thinning_tables() -> np.ndarray:
    """(2, 256) bool: whether Zhang-Suen's sub-iteration 0/1 removes a pixel, by its neighbourhood code."""
    tables = np.zeros((2, 256), dtype=bool)
    for code in range(256):
        nb = [(code >> i) & 1 for i in range(8)]  # p2..p9, clockwise from north
        p2, p4, p6, p8 = nb[0], nb[2], nb[4], nb[6]
        transitions = sum(nb[i] == 0 and nb[(i + 1) % 8] == 1 for i in range(8))
        if 2 <= sum(nb) <= 6 and transitions == 1:
            tables[0, code] = p2 * p4 * p6 == 0 and p4 * p6 * p8 == 0
            tables[1, code] = p2 * p4 * p8 == 0 and p2 * p6 * p8 == 0
    return tables


_THINNING = _thinning_tables()


def thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a mask (non-zero = stroke): connected centre lines one pixel wide, 0/1 uint8.

    Unlike a morphological (Lantuejoul) skeleton it keeps strokes connected and grows few spurs, so a pen
    drawn along it gives continuous strokes with clean ends.
    """
    img = np.pad(np.asarray(mask) != 0, 1).astype(np.uint8)
    c = img[1:-1, 1:-1]
    changed = True
    while changed:
        changed = False
        for step in (0, 1):
            code = (img[:-2, 1:-1] | img[:-2, 2:] << 1 | img[1:-1, 2:] << 2 | img[2:, 2:] << 3
                    | img[2:, 1:-1] << 4 | img[2:, :-2] << 5 | img[1:-1, :-2] << 6 | img[:-2, :-2] << 7)
            drop = _THINNING[step][code] & (c == 1)
            if drop.any():
                c[drop] = 0
                changed = True
    return c.copy()


@dataclass
class GraphemeRenderer:
    """Renders a grapheme string as a competition-like image: uint8 (137, 236), white paper, dark ink.

    The glyph is shaped by raqm (conjuncts, reordered vowel signs) at ``base_size`` pixels and cached per
    (font, text) with its morphological skeleton; every image then gets its own random font, strokes (mostly a
    constant-width pen along the skeleton, else the font's strokes thinned), size, position,
    rotation, shear, perspective and elastic distortion (one ``cv2.remap``), ink level, pen-pressure
    variation, blur and paper noise, all drawn from the ``rng`` passed to :meth:`render`.
    Cheap to construct and picklable (fonts and caches are rebuilt lazily in each process).
    """

    fonts: Sequence[str | Path]
    base_size: int = 64
    height_frac: tuple[float, float] = (0.45, 0.85)  # glyph height / frame height, as in the real data
    log_aspect: tuple[float, float] = (0.05, 0.08)  # mean, sd of log(x/y stretch): handwriting runs wider
    max_rotation: float = 8.0  # degrees
    max_shear: float = 0.25
    max_perspective: float = 0.12  # relative depth change across the glyph
    elastic_px: tuple[float, float] = (0.0, 2.5)  # elastic displacement amplitude in frame pixels
    stroke_steps: tuple[int, ...] = (-3, -2, -2, -1, -1, 0)  # erode (<0) / dilate (>0) radius at base size
    pen_prob: float = 0.92  # share of images drawn with a constant-width pen along the glyph's skeleton
    pen_width: tuple[float, float] = (2.0, 4.5)  # pen width in final frame pixels
    ink: tuple[int, int] = (0, 60)
    ink_gain: tuple[float, float] = (1.0, 1.5)  # coverage gain: > 1 saturates stroke centres
    paper: tuple[int, int] = (248, 255)
    noise_sigma: tuple[float, float] = (0.0, 3.0)
    grey_paper_prob: float = 0.5  # share of pages with a grey level from ``paper`` and noise (others pure white)
    blur_prob: float = 0.6
    cache_size: int = 16384  # all 1,292 triples × ~11 fonts fit: no re-shaping in a long run

    def __post_init__(self) -> None:
        self.fonts = tuple(str(f) for f in self.fonts)
        if not self.fonts:
            raise RuntimeError(f"GraphemeRenderer needs at least one font; install Bengali fonts: {INSTALL_HINT}")
        self._init_state()

    def _init_state(self) -> None:
        self._font_objs: dict[int, object] = {}
        self._glyphs: dict[tuple[int, str], np.ndarray] = {}
        self._skeletons: dict[tuple[int, str], np.ndarray] = {}
        self._noise: np.ndarray | None = None
        self._kernels = {}

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._init_state()

    # -- cached pieces
    def _font(self, index: int):
        font = self._font_objs.get(index)
        if font is None:
            if not features.check("raqm"):
                raise RuntimeError("Pillow was built without raqm text layout, so Bengali conjuncts cannot be shaped; "
                                   "install libraqm (Debian: apt-get install libraqm0) and reinstall Pillow")
            font = ImageFont.truetype(self.fonts[index], self.base_size, layout_engine=ImageFont.Layout.RAQM)
            self._font_objs[index] = font
        return font

    _PAD = 8  # room around the glyph for dilation, blur and interpolation

    def glyph(self, text: str, font_index: int = 0) -> np.ndarray:
        """Ink coverage of ``text`` shaped with one font: uint8, tight bounding box plus a margin."""
        key = (font_index, text)
        g = self._glyphs.get(key)
        if g is None:
            font = self._font(font_index)
            x0, y0, x1, y1 = font.getbbox(text)
            img = Image.new("L", (max(x1 - x0, 1), max(y1 - y0, 1)))
            ImageDraw.Draw(img).text((-x0, -y0), text, font=font, fill=255)
            mask = np.asarray(img)
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            if rows.size == 0:
                raise ValueError(f"font {Path(self.fonts[font_index]).name} draws nothing for {text!r}")
            tight = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
            g = np.pad(tight, self._PAD)
            if len(self._glyphs) >= self.cache_size:
                self._glyphs.pop(next(iter(self._glyphs)))  # FIFO: bounded memory
            self._glyphs[key] = g
        return g

    def skeleton(self, text: str, font_index: int = 0) -> np.ndarray:
        """Morphological skeleton (0/255 uint8) of :meth:`glyph`: the pen's path, drawn later at a chosen width."""
        key = (font_index, text)
        sk = self._skeletons.get(key)
        if sk is None:
            # close pinholes first: a hole in a stroke would become a loop of the pen's path
            mask = cv2.morphologyEx(np.where(self.glyph(text, font_index) >= 128, np.uint8(1), np.uint8(0)),
                                    cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
            sk = thin(mask) * np.uint8(255)
            if not sk.any():  # a glyph too faint to threshold: draw its outline coverage instead
                sk = np.where(self.glyph(text, font_index) > 0, np.uint8(255), np.uint8(0))
            if len(self._skeletons) >= self.cache_size:
                self._skeletons.pop(next(iter(self._skeletons)))
            self._skeletons[key] = sk
        return sk

    def _noise_field(self) -> np.ndarray:
        # One fixed noise texture per renderer, cropped at random offsets: far cheaper than fresh noise.
        if self._noise is None:
            self._noise = np.random.default_rng(12345).standard_normal(
                (2 * IMAGE_HEIGHT, 2 * IMAGE_WIDTH), dtype=np.float32)
        return self._noise

    def _pen(self, width: int) -> np.ndarray:
        k = self._kernels.get(("pen", width))
        if k is None:
            k = self._kernels[("pen", width)] = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width))
        return k

    def _kernel(self, radius: int) -> np.ndarray:
        k = self._kernels.get(radius)
        if k is None:
            k = self._kernels[radius] = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        return k

    # -- one image
    def render(self, text: str, rng: np.random.Generator, font_index: int | None = None) -> np.ndarray:
        """One image of ``text``: uint8 (137, 236), white background (~248–255), dark ink."""
        H, W = IMAGE_HEIGHT, IMAGE_WIDTH
        fi = int(rng.integers(len(self.fonts))) if font_index is None else int(font_index)
        g = self.glyph(text, fi)

        # stroke width: either a pen of constant width along the skeleton (handwriting-like) or the font's
        # own strokes thinned or thickened at base size (the pad keeps dilation inside the crop)
        p = self._PAD
        th = g.shape[0] - 2 * p  # tight glyph height
        scale = rng.uniform(*self.height_frac) * IMAGE_HEIGHT / th
        if rng.random() < self.pen_prob:
            # pen width chosen in final pixels, so large glyphs don't get fat strokes
            width = max(2, int(round(rng.uniform(*self.pen_width) / scale)))
            g = cv2.GaussianBlur(cv2.dilate(self.skeleton(text, fi), self._pen(width)), (3, 3), 0)
            step = 0
        else:
            step = int(self.stroke_steps[rng.integers(len(self.stroke_steps))])
        if step > 0:
            g = cv2.dilate(g, self._kernel(step))
        elif step < 0:
            thinned = cv2.erode(g, self._kernel(-step))
            if thinned.max() >= 128 and np.count_nonzero(thinned > 64) > 0.35 * np.count_nonzero(g > 64):
                g = thinned  # keep thin fonts from vanishing

        gh, gw = g.shape
        tw = gw - 2 * p  # tight glyph width

        # geometry: glyph coords (centred) -> frame coords, as one homography
        aspect = float(np.exp(rng.normal(*self.log_aspect)))
        angle = np.deg2rad(rng.uniform(-self.max_rotation, self.max_rotation))
        shear = rng.uniform(-self.max_shear, self.max_shear)
        persp = rng.uniform(-self.max_perspective, self.max_perspective, size=2) / np.array([tw, th])
        cx, cy = gw / 2.0, gh / 2.0
        centre = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], dtype=np.float64)
        lin = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]]) @ \
            np.array([[1, shear, 0], [0, 1, 0], [0, 0, 1]]) @ np.diag([scale * aspect, scale / aspect, 1.0])
        proj = np.array([[1, 0, 0], [0, 1, 0], [persp[0], persp[1], 1]])
        M = proj @ lin @ centre
        corners = np.array([[p, p, 1], [gw - p, p, 1], [p, gh - p, 1], [gw - p, gh - p, 1]], dtype=np.float64).T
        pts = M @ corners
        pts = pts[:2] / pts[2]
        (x0, y0), (x1, y1) = pts.min(1), pts.max(1)
        fit = min(1.0, 0.96 * W / (x1 - x0), 0.96 * H / (y1 - y0))
        if fit < 1.0:  # too big for the frame: shrink about the centre
            M = np.diag([fit, fit, 1.0]) @ M
            x0, y0, x1, y1 = x0 * fit, y0 * fit, x1 * fit, y1 * fit
        # random position with the glyph inside the frame
        tx = rng.uniform(-x0 + 1, W - 1 - x1) if W - 2 - x1 + x0 > 0 else (W - x1 - x0) / 2
        ty = rng.uniform(-y0 + 1, H - 1 - y1) if H - 2 - y1 + y0 > 0 else (H - y1 - y0) / 2
        M = np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1]]) @ M
        Minv = np.linalg.inv(M)

        # sample only the glyph's region of the frame (plus a margin for blur and the elastic shift)
        m = 4
        rx0, ry0 = max(int(np.floor(x0 + tx)) - m, 0), max(int(np.floor(y0 + ty)) - m, 0)
        rx1, ry1 = min(int(np.ceil(x1 + tx)) + m, W), min(int(np.ceil(y1 + ty)) + m, H)
        rw, rh = rx1 - rx0, ry1 - ry0
        amp = rng.uniform(*self.elastic_px)
        gy, gx = int(rng.integers(2, 5)), int(rng.integers(2, 6))
        # one small random grid, upsampled: channels 0-1 the elastic shift, channel 2 the pen pressure
        field = np.empty((gy, gx, 3), dtype=np.float32)
        field[..., :2] = rng.standard_normal((gy, gx, 2)) * amp
        field[..., 2] = rng.uniform(0.8, 1.0, size=(gy, gx))
        field = cv2.resize(field, (rw, rh), interpolation=cv2.INTER_LINEAR)
        dx, dy, pressure = field[..., 0], field[..., 1], field[..., 2]
        X = np.arange(rx0, rx1, dtype=np.float32)[None, :] + dx
        Y = np.arange(ry0, ry1, dtype=np.float32)[:, None] + dy
        a = Minv.astype(np.float32)
        den = a[2, 0] * X + a[2, 1] * Y + a[2, 2]
        mx = (a[0, 0] * X + a[0, 1] * Y + a[0, 2]) / den
        my = (a[1, 0] * X + a[1, 1] * Y + a[1, 2]) / den
        cov = cv2.remap(g, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

        if rng.random() < self.blur_prob:
            cov = cv2.GaussianBlur(cov, (0, 0), sigmaX=float(rng.uniform(0.3, 0.9)))

        # ink: darkness and a smooth pen-pressure field over the glyph
        ink = rng.uniform(*self.ink)
        # half the pages are pure white; scanned-grey pages and paper noise for the rest (also keeps files small)
        grey = rng.random() < self.grey_paper_prob
        paper = rng.uniform(*self.paper) if grey else 255.0
        # gain > 1 saturates the stroke centres: real ink is dark right across the stroke
        gain = np.float32(rng.uniform(*self.ink_gain) * (paper - ink) / 255.0)
        depth = np.minimum(cov.astype(np.float32) * pressure * gain, np.float32(paper - ink))

        out = np.full((H, W), paper, dtype=np.float32)
        sigma = rng.uniform(*self.noise_sigma) if grey else 0.0
        if sigma > 0:
            noise = self._noise_field()
            oy, ox = int(rng.integers(H)), int(rng.integers(W))
            out += noise[oy:oy + H, ox:ox + W] * np.float32(sigma)
        out[ry0:ry1, rx0:rx1] -= depth
        np.clip(out, 0, 255, out=out)
        return (out + 0.5).astype(np.uint8)
