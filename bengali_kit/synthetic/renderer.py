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


#: A box in frame pixels, (x0, y0, x1, y1): float for the glyph's bounds, int for a region of the frame.
Box = tuple[float, float, float, float]
Region = tuple[int, int, int, int]


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

    # -- one image: strokes, placement, warp, ink
    def render(self, text: str, rng: np.random.Generator, font_index: int | None = None) -> np.ndarray:
        """One image of ``text``: uint8 (137, 236), white background (~248–255), dark ink."""
        font_index = int(rng.integers(len(self.fonts))) if font_index is None else int(font_index)
        tight_height = self.glyph(text, font_index).shape[0] - 2 * self._PAD
        scale = rng.uniform(*self.height_frac) * IMAGE_HEIGHT / tight_height  # glyph pixels -> frame pixels
        coverage = self._draw_strokes(text, font_index, scale, rng)
        to_frame = self._glyph_to_frame(coverage.shape, scale, rng)
        to_frame, box = self._fit_and_place(to_frame, coverage.shape, rng)
        region, coverage, pressure = self._warp(coverage, to_frame, box, rng)
        if rng.random() < self.blur_prob:
            coverage = cv2.GaussianBlur(coverage, (0, 0), sigmaX=float(rng.uniform(0.3, 0.9)))
        return self._ink(coverage, pressure, region, rng)

    def _draw_strokes(self, text: str, font_index: int, scale: float, rng: np.random.Generator) -> np.ndarray:
        """The glyph's coverage at base size with this image's strokes: a pen along the skeleton, or the font's own."""
        if rng.random() < self.pen_prob:
            return self._pen_strokes(text, font_index, scale, rng)
        return self._font_strokes(self.glyph(text, font_index), rng)

    def _pen_strokes(self, text: str, font_index: int, scale: float, rng: np.random.Generator) -> np.ndarray:
        """A constant-width pen drawn along the skeleton: handwriting has no stroke contrast."""
        # the width is chosen in final pixels, so large glyphs don't get fat strokes
        width = max(2, int(round(rng.uniform(*self.pen_width) / scale)))
        return cv2.GaussianBlur(cv2.dilate(self.skeleton(text, font_index), self._pen(width)), (3, 3), 0)

    def _font_strokes(self, glyph: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The font's strokes thickened or thinned at base size (the pad keeps dilation inside the crop)."""
        step = int(self.stroke_steps[rng.integers(len(self.stroke_steps))])
        if step > 0:
            return cv2.dilate(glyph, self._kernel(step))
        if step < 0:
            thinned = cv2.erode(glyph, self._kernel(-step))
            if thinned.max() >= 128 and np.count_nonzero(thinned > 64) > 0.35 * np.count_nonzero(glyph > 64):
                return thinned  # only when enough is left: thin fonts would vanish
        return glyph

    def _glyph_to_frame(self, shape: tuple[int, int], scale: float, rng: np.random.Generator) -> np.ndarray:
        """Glyph pixels -> frame pixels, centred on the origin: scale and stretch, shear, rotation, perspective."""
        height, width = shape
        tight_width, tight_height = width - 2 * self._PAD, height - 2 * self._PAD
        aspect = float(np.exp(rng.normal(*self.log_aspect)))
        angle = np.deg2rad(rng.uniform(-self.max_rotation, self.max_rotation))
        shear = rng.uniform(-self.max_shear, self.max_shear)
        # depth change per pixel: the same relative tilt whatever the glyph's size
        tilt = rng.uniform(-self.max_perspective, self.max_perspective, size=2) / np.array([tight_width, tight_height])
        to_centre = _translation(-width / 2.0, -height / 2.0)
        rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
        shearing = np.array([[1, shear, 0], [0, 1, 0], [0, 0, 1]])
        stretch = np.diag([scale * aspect, scale / aspect, 1.0])
        perspective = np.array([[1, 0, 0], [0, 1, 0], [tilt[0], tilt[1], 1]])
        return perspective @ (rotation @ shearing @ stretch) @ to_centre

    def _fit_and_place(self, to_frame: np.ndarray, shape: tuple[int, int],
                       rng: np.random.Generator) -> tuple[np.ndarray, Box]:
        """Shrink the glyph into the frame if it is too big, then move it to a random place inside it.

        Returns the final homography and the glyph's bounding box in the frame (x0, y0, x1, y1).
        """
        x0, y0, x1, y1 = _tight_box(to_frame, shape, self._PAD)
        fit = min(1.0, 0.96 * IMAGE_WIDTH / (x1 - x0), 0.96 * IMAGE_HEIGHT / (y1 - y0))
        if fit < 1.0:  # shrink about the origin, which is still the glyph's centre
            to_frame = np.diag([fit, fit, 1.0]) @ to_frame
            x0, y0, x1, y1 = x0 * fit, y0 * fit, x1 * fit, y1 * fit
        dx = _random_offset(x0, x1, IMAGE_WIDTH, rng)
        dy = _random_offset(y0, y1, IMAGE_HEIGHT, rng)
        return _translation(dx, dy) @ to_frame, (x0 + dx, y0 + dy, x1 + dx, y1 + dy)

    def _warp(self, coverage: np.ndarray, to_frame: np.ndarray, box: Box,
              rng: np.random.Generator) -> tuple[Region, np.ndarray, np.ndarray]:
        """Sample the glyph's coverage into its region of the frame through the homography and an elastic shift.

        Only the region around the glyph is sampled (with a margin for blur and the shift): far cheaper than the
        whole frame. Returns the region, the coverage there (uint8) and the pen pressure there (0.8–1).
        """
        region = _frame_region(box, margin=4)
        x0, y0, x1, y1 = region
        shift_x, shift_y, pressure = self._smooth_fields(x1 - x0, y1 - y0, rng)
        frame_x = np.arange(x0, x1, dtype=np.float32)[None, :] + shift_x
        frame_y = np.arange(y0, y1, dtype=np.float32)[:, None] + shift_y
        glyph_x, glyph_y = _project(np.linalg.inv(to_frame), frame_x, frame_y)
        sampled = cv2.remap(coverage, glyph_x, glyph_y, interpolation=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return region, sampled, pressure

    def _smooth_fields(self, width: int, height: int,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Elastic shift (x, y, in pixels) and pen pressure over a region: one coarse random grid, upsampled."""
        amplitude = rng.uniform(*self.elastic_px)
        rows, cols = int(rng.integers(2, 5)), int(rng.integers(2, 6))
        grid = np.empty((rows, cols, 3), dtype=np.float32)
        grid[..., :2] = rng.standard_normal((rows, cols, 2)) * amplitude
        grid[..., 2] = rng.uniform(0.8, 1.0, size=(rows, cols))
        field = cv2.resize(grid, (width, height), interpolation=cv2.INTER_LINEAR)
        return field[..., 0], field[..., 1], field[..., 2]

    def _ink(self, coverage: np.ndarray, pressure: np.ndarray, region: Region, rng: np.random.Generator) -> np.ndarray:
        """The page: paper (white, or grey with noise) with the coverage laid on as ink of a random darkness."""
        ink = rng.uniform(*self.ink)
        # half the pages are pure white; scanned-grey pages and paper noise for the rest (also keeps files small)
        grey = rng.random() < self.grey_paper_prob
        paper = rng.uniform(*self.paper) if grey else 255.0
        # gain > 1 saturates the stroke centres: real ink is dark right across the stroke
        gain = np.float32(rng.uniform(*self.ink_gain) * (paper - ink) / 255.0)
        darkening = np.minimum(coverage.astype(np.float32) * pressure * gain, np.float32(paper - ink))
        page = self._paper(paper, grey, rng)
        x0, y0, x1, y1 = region
        page[y0:y1, x0:x1] -= darkening
        np.clip(page, 0, 255, out=page)
        return (page + 0.5).astype(np.uint8)

    def _paper(self, level: float, grey: bool, rng: np.random.Generator) -> np.ndarray:
        """A blank float32 page at ``level``; a grey page also gets noise cropped from the fixed texture."""
        page = np.full((IMAGE_HEIGHT, IMAGE_WIDTH), level, dtype=np.float32)
        sigma = rng.uniform(*self.noise_sigma) if grey else 0.0
        if sigma > 0:
            oy, ox = int(rng.integers(IMAGE_HEIGHT)), int(rng.integers(IMAGE_WIDTH))
            page += self._noise_field()[oy:oy + IMAGE_HEIGHT, ox:ox + IMAGE_WIDTH] * np.float32(sigma)
        return page


def _translation(dx: float, dy: float) -> np.ndarray:
    """3×3 homography moving points by (dx, dy)."""
    return np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], dtype=np.float64)


def _tight_box(to_frame: np.ndarray, shape: tuple[int, int], pad: int) -> Box:
    """Bounds in the frame of the glyph's tight box (its padded array less ``pad``) under the homography."""
    height, width = shape
    corners = np.array([[pad, pad, 1], [width - pad, pad, 1], [pad, height - pad, 1], [width - pad, height - pad, 1]],
                       dtype=np.float64).T
    points = to_frame @ corners
    points = points[:2] / points[2]
    (x0, y0), (x1, y1) = points.min(1), points.max(1)
    return x0, y0, x1, y1


def _random_offset(low: float, high: float, size: int, rng: np.random.Generator) -> float:
    """A shift that puts [low, high] at a random place inside [1, size - 1], or centres it when it barely fits."""
    if size - 2 - high + low > 0:
        return rng.uniform(-low + 1, size - 1 - high)
    return (size - high - low) / 2


def _frame_region(box: Box, margin: int) -> Region:
    """The whole pixels of the frame that ``box`` touches, grown by ``margin`` and clipped to the frame."""
    x0, y0, x1, y1 = box
    return (max(int(np.floor(x0)) - margin, 0), max(int(np.floor(y0)) - margin, 0),
            min(int(np.ceil(x1)) + margin, IMAGE_WIDTH), min(int(np.ceil(y1)) + margin, IMAGE_HEIGHT))


def _project(homography: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply a homography to float32 point grids, in float32 (what ``cv2.remap`` takes)."""
    h = homography.astype(np.float32)
    depth = h[2, 0] * x + h[2, 1] * y + h[2, 2]
    return (h[0, 0] * x + h[0, 1] * y + h[0, 2]) / depth, (h[1, 0] * x + h[1, 1] * y + h[1, 2]) / depth
