"""Synthetic competition data: real Bengali graphemes rendered with Debian fonts, distorted to look handwritten.

:func:`write_competition_folder` writes a folder with exactly the competition's files (train.csv,
train_image_data_{k}.parquet, test.csv, test_image_data_{k}.parquet, class_map.csv, sample_submission.csv)
plus ``test_labels.csv``, the answer key of the synthetic test images. Labels follow the real
(root, vowel, consonant) frequencies, so roots are long-tailed as in the real train set.

Everything random comes from numpy Generators seeded from ``(seed, split, file, chunk)``, so the files are
byte-identical for the same seed whatever the number of worker processes.

Fonts: :func:`find_bengali_fonts` finds the installed Bengali fonts (Debian packages
``fonts-beng-extra fonts-lohit-beng-bengali fonts-noto-core``). MitraMono is left out (a monospaced font with
incomplete Bengali shaping). Text is shaped by Pillow's raqm layout (conjuncts, reordered vowel signs).
With ``holdout_fonts=True`` the test split is rendered only with the
fonts whose file name starts with one of :data:`HOLDOUT_FONT_PREFIXES` (Jamrul and Noto Serif Bengali) and
train only with the others (see :func:`split_fonts`).
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd

from .components import COMPONENTS, load_class_map, read_grapheme_counts, resource_path
from .data import IMAGE_HEIGHT, IMAGE_WIDTH, N_PIXELS, PIXEL_COLUMNS
from .files import atomic_path, atomic_write_bytes, atomic_write_text, prepare_output_dir

__all__ = [
    "FONT_DIRS", "EXCLUDED_FONTS", "HOLDOUT_FONT_PREFIXES", "INSTALL_HINT", "find_bengali_fonts", "split_fonts",
    "GraphemeRenderer", "sample_labels", "write_competition_folder",
]

#: Folders searched for font files (recursively).
FONT_DIRS: tuple[str, ...] = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts")
#: Font files (by stem) never used: MitraMono is monospaced with incomplete Bengali shaping.
EXCLUDED_FONTS: tuple[str, ...] = ("MitraMono",)
#: With ``holdout_fonts``, fonts whose file name starts with one of these render the test split only.
HOLDOUT_FONT_PREFIXES: tuple[str, ...] = ("Jamrul", "NotoSerifBengali")
INSTALL_HINT = "apt-get install fonts-beng-extra fonts-lohit-beng-bengali fonts-noto-core"

#: Test rows per image, in the real test.csv order.
TEST_COMPONENT_ORDER: tuple[str, ...] = ("consonant_diacritic", "grapheme_root", "vowel_diacritic")
#: Images per rendering chunk, the unit of work of a worker process with its own seed (fixed: the bytes
#: must not depend on the number of workers).
CHUNK_ROWS = 1024
#: Images per parquet row group: 32,332 column chunks per group cost ~1 KB and real work each, so
#: large groups write ~3× faster and smaller files than 1,024-row ones.
ROW_GROUP_ROWS = 4 * CHUNK_ROWS

_SPLIT_IDS = {"train": 0, "test": 1}
_PROBE = "ক"  # a Bengali letter every Bengali font covers


# ---------------------------------------------------------------- fonts
def _font_name_ok(path: Path) -> bool:
    low = str(path).lower()
    return path.suffix.lower() in (".ttf", ".otf") and ("beng" in low or "assamese" in low)


def _covers_bengali(path: Path) -> bool:
    """True when the font draws a real glyph for a Bengali letter (not its .notdef box)."""
    from PIL import ImageFont

    try:
        font = ImageFont.truetype(str(path), 32, layout_engine=ImageFont.Layout.BASIC)
        probe = np.asarray(font.getmask(_PROBE))
        notdef = np.asarray(font.getmask("\ue000"))  # a private-use code point: .notdef in every font
    except OSError:
        return False
    return probe.any() and (probe.shape != notdef.shape or not np.array_equal(probe, notdef))


def find_bengali_fonts(dirs: Iterable[str | Path] | None = None) -> list[Path]:
    """Installed font files that cover Bengali, sorted by file name (deterministic), MitraMono excluded.

    Raises ``RuntimeError`` with the apt-get command to run when none is found.
    """
    dirs = FONT_DIRS if dirs is None else tuple(dirs)
    found: dict[str, Path] = {}
    for d in dirs:
        root = Path(d).expanduser()
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.stem in EXCLUDED_FONTS or path.name in found or not _font_name_ok(path):
                continue
            if _covers_bengali(path):
                found[path.name] = path  # the same file installed twice counts once
    if not found:
        raise RuntimeError(f"no Bengali fonts found in {', '.join(map(str, dirs))}; install them with: {INSTALL_HINT}")
    return [found[name] for name in sorted(found)]


def split_fonts(fonts: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """(train fonts, test fonts) for ``holdout_fonts``: :data:`HOLDOUT_FONT_PREFIXES` go to test.

    If that leaves one side empty (another set of fonts installed), every third font (positions 2, 5, …
    of the sorted list) goes to test instead.
    """
    fonts = [Path(f) for f in fonts]
    if len(fonts) < 2:
        raise RuntimeError(f"--holdout-fonts needs at least 2 Bengali fonts, found {len(fonts)}; "
                           f"install: {INSTALL_HINT}")
    test = [f for f in fonts if f.name.startswith(HOLDOUT_FONT_PREFIXES)]
    if not test or len(test) == len(fonts):
        test = fonts[2::3]
    train = [f for f in fonts if f not in test]
    return train, test


# ---------------------------------------------------------------- rendering
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
    height_frac: tuple[float, float] = (0.4, 0.9)  # glyph height / frame height, as in the real data
    max_rotation: float = 8.0  # degrees
    max_shear: float = 0.25
    max_perspective: float = 0.12  # relative depth change across the glyph
    elastic_px: tuple[float, float] = (0.0, 2.5)  # elastic displacement amplitude in frame pixels
    stroke_steps: tuple[int, ...] = (-3, -2, -2, -1, -1, 0)  # erode (<0) / dilate (>0) radius at base size
    pen_prob: float = 0.8  # share of images drawn with a constant-width pen along the glyph's skeleton
    pen_width: tuple[float, float] = (2.5, 5.5)  # pen width in final frame pixels
    ink: tuple[int, int] = (0, 60)
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
            from PIL import ImageFont, features

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
            from PIL import Image, ImageDraw

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
            import cv2

            cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
            img = np.where(self.glyph(text, font_index) >= 128, np.uint8(255), np.uint8(0))
            sk = np.zeros_like(img)
            while img.any():  # Lantuejoul: union of (erosion^k minus its opening)
                eroded = cv2.erode(img, cross)
                sk |= cv2.subtract(img, cv2.dilate(eroded, cross))
                img = eroded
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
            import cv2

            k = self._kernels[("pen", width)] = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (width, width))
        return k

    def _kernel(self, radius: int) -> np.ndarray:
        k = self._kernels.get(radius)
        if k is None:
            import cv2

            k = self._kernels[radius] = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        return k

    # -- one image
    def render(self, text: str, rng: np.random.Generator, font_index: int | None = None) -> np.ndarray:
        """One image of ``text``: uint8 (137, 236), white background (~248–255), dark ink."""
        import cv2

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
            thin = cv2.erode(g, self._kernel(-step))
            if thin.max() >= 128 and np.count_nonzero(thin > 64) > 0.35 * np.count_nonzero(g > 64):
                g = thin  # keep thin fonts from vanishing

        gh, gw = g.shape
        tw = gw - 2 * p  # tight glyph width

        # geometry: glyph coords (centred) -> frame coords, as one homography
        aspect = float(np.exp(rng.normal(0.0, 0.12)))
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
        gain = np.float32(rng.uniform(1.2, 1.8) * (paper - ink) / 255.0)
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


def sample_labels(n: int, rng: np.random.Generator, counts: pd.DataFrame | None = None) -> np.ndarray:
    """``n`` label triples (int64 (n, 3), ``COMPONENTS`` order) drawn with the real triple frequencies."""
    counts = read_grapheme_counts() if counts is None else counts
    idx = _sample_triples(n, rng, counts)
    return counts[list(COMPONENTS)].to_numpy(dtype=np.int64)[idx]


def _sample_triples(n: int, rng: np.random.Generator, counts: pd.DataFrame) -> np.ndarray:
    w = counts["count"].to_numpy(dtype=np.float64)
    return rng.choice(len(w), size=n, p=w / w.sum())


# ---------------------------------------------------------------- folder writing
def _render_chunk(renderer: GraphemeRenderer, texts: Sequence[str], seed_key: tuple[int, ...]) -> np.ndarray:
    """Render a chunk; returns pixels column-major (32332, n) ready for the parquet writer."""
    rng = np.random.default_rng(np.random.SeedSequence(seed_key))
    rows = np.empty((len(texts), N_PIXELS), dtype=np.uint8)
    for j, text in enumerate(texts):
        rows[j] = renderer.render(text, rng).reshape(-1)
    # transpose in blocks of pixel columns: a plain strided copy thrashes the cache and costs ~1 ms/image
    cols = np.empty((N_PIXELS, len(texts)), dtype=np.uint8)
    for p in range(0, N_PIXELS, 256):
        cols[p:p + 256] = rows[:, p:p + 256].T
    return cols


@dataclass(frozen=True)
class _Chunk:
    split: str
    ids: list[str]
    texts: list[str]
    seed_key: tuple[int, ...]


def _parquet_schema():
    import pyarrow as pa

    return pa.schema([("image_id", pa.string())] + [(c, pa.uint8()) for c in PIXEL_COLUMNS])


def _write_parquets(chunks_by_file: list[tuple[Path, list[_Chunk]]], renderers: dict[str, GraphemeRenderer],
                    workers: int, bar) -> None:
    """Render chunks (in worker processes when ``workers > 1``) and stream them into their parquet files.

    Row groups of ``ROW_GROUP_ROWS`` images; at most one row group plus ``2 * workers`` chunks are in flight,
    so memory stays bounded (main process ~1 GB, each worker ~0.3 GB) whatever the number of rows.
    """
    jobs = [(path, c) for path, chunks in chunks_by_file for c in chunks]

    def results() -> Iterator[np.ndarray]:
        if workers <= 1:
            for _, c in jobs:
                yield _render_chunk(renderers[c.split], c.texts, c.seed_key)
            return
        # one pool for both splits: each worker holds both renderers and picks by the chunk's split
        # forkserver: forking a process that may already run pyarrow/OpenCV threads is unsafe
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        ex = cf.ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method),
                                    initializer=_worker_init_all, initargs=(renderers,))
        try:
            # enough in flight to keep the workers busy while the main process encodes a row group
            window = ROW_GROUP_ROWS // CHUNK_ROWS + 2 * workers
            pending: list[cf.Future] = []
            it = iter(jobs)
            for _, c in it:
                pending.append(ex.submit(_worker_render_split, c.split, c.texts, c.seed_key))
                if len(pending) >= window:
                    break
            for _, c in it:
                yield pending.pop(0).result()
                pending.append(ex.submit(_worker_render_split, c.split, c.texts, c.seed_key))
            while pending:
                yield pending.pop(0).result()
        finally:  # also on an error in the writer: don't render chunks nobody will write
            ex.shutdown(wait=True, cancel_futures=True)

    res = results()
    try:
        _write_files(chunks_by_file, res, bar)
    finally:
        res.close()


def _write_files(chunks_by_file: list[tuple[Path, list[_Chunk]]], res: Iterator[np.ndarray], bar) -> None:
    """Stream the rendered chunks (in job order) into their parquet files, atomically, one row group at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _parquet_schema()
    for path, chunks in chunks_by_file:
        with atomic_path(path) as tmp:
            with pq.ParquetWriter(tmp, schema, compression="snappy", write_statistics=False) as writer:
                per_group = ROW_GROUP_ROWS // CHUNK_ROWS
                for g in range(0, len(chunks), per_group):
                    group = chunks[g:g + per_group]
                    parts = [next(res) for _ in group]
                    cols = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
                    ids = [i for c in group for i in c.ids]
                    arrays = [pa.array(ids, type=pa.string())] + [pa.array(col) for col in cols]
                    writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
                    del parts, cols, arrays
                    bar.update(len(ids))


_WORKER_RENDERERS: dict[str, GraphemeRenderer] = {}


def _worker_init_all(renderers: dict[str, GraphemeRenderer]) -> None:
    global _WORKER_RENDERERS
    _WORKER_RENDERERS = renderers
    try:
        import cv2

        cv2.setNumThreads(1)  # one process per core already
    except ImportError:  # pragma: no cover
        pass


def _worker_render_split(split: str, texts: Sequence[str], seed_key: tuple[int, ...]) -> np.ndarray:
    return _render_chunk(_WORKER_RENDERERS[split], texts, seed_key)


def _csv_text(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, lineterminator="\n")


def _file_slices(n: int, files: int) -> list[tuple[int, int]]:
    return [(k * n // files, (k + 1) * n // files) for k in range(files)]


def write_competition_folder(out_dir: str | Path, train_rows: int = 2000, test_rows: int = 200, seed: int = 0,
                             files: int = 4, holdout_fonts: bool = False, overwrite: bool = False,
                             progress: bool = True, workers: int | None = None,
                             fonts: Sequence[str | Path] | None = None) -> Path:
    """Write a synthetic competition folder; returns its path.

    Files: train.csv (image_id ``Train_i``, the three labels, grapheme), ``train_image_data_{k}.parquet``
    (k < ``files``, rows split evenly), test.csv (``Test_i_<component>`` rows in the real order),
    ``test_image_data_{k}.parquet``, class_map.csv, sample_submission.csv (target 0) and test_labels.csv
    (the answer key). The same arguments give byte-identical files (on the same fonts and library versions);
    ``workers`` (default: CPU count, or 1 up to 4,096 images) changes only the speed. Worker processes start
    with forkserver/spawn, so a script calling this with ``workers > 1`` needs the usual
    ``if __name__ == "__main__":`` guard. Refuses a non-empty folder unless ``overwrite``.
    Raises ``ValueError`` on bad sizes and ``RuntimeError`` when no Bengali font is installed.
    ``fonts`` replaces :func:`find_bengali_fonts` (e.g. to pin the font set).
    """
    from tqdm.auto import tqdm

    for name, v in (("train_rows", train_rows), ("test_rows", test_rows)):
        if v < 1:
            raise ValueError(f"{name} must be at least 1, got {v}")
    if files < 1 or files > min(train_rows, test_rows):
        raise ValueError(f"files must be between 1 and the number of rows of each split, got {files}")
    font_list = find_bengali_fonts() if fonts is None else [Path(f) for f in fonts]
    if holdout_fonts:
        train_fonts, test_fonts = split_fonts(font_list)
    else:
        train_fonts = test_fonts = font_list
    out = prepare_output_dir(out_dir, overwrite)

    counts = read_grapheme_counts()
    cmap = load_class_map()
    labels_all = counts[list(COMPONENTS)].to_numpy(dtype=np.int64)
    render_texts = [cmap.compose(*map(int, t)) for t in labels_all]  # ZWJ spellings that shape correctly
    graphemes = counts["grapheme"].tolist()  # the spelling of the real train.csv

    renderers = {"train": GraphemeRenderer(train_fonts), "test": GraphemeRenderer(test_fonts)}
    chunks_by_file: list[tuple[Path, list[_Chunk]]] = []
    frames = {}
    for split, n in (("train", train_rows), ("test", test_rows)):
        sid = _SPLIT_IDS[split]
        idx = _sample_triples(n, np.random.default_rng(np.random.SeedSequence((seed, sid))), counts)
        ids = [f"{split.capitalize()}_{i}" for i in range(n)]
        labels = labels_all[idx]
        frames[split] = pd.DataFrame({"image_id": ids, **{c: labels[:, j] for j, c in enumerate(COMPONENTS)}})
        if split == "train":
            frames[split]["grapheme"] = [graphemes[i] for i in idx]
        for k, (a, b) in enumerate(_file_slices(n, files)):
            chunks = []
            for j, s in enumerate(range(a, b, CHUNK_ROWS)):
                e = min(s + CHUNK_ROWS, b)
                # seed key (seed, split, file, chunk, 1): independent of the labels' stream (seed, split)
                chunks.append(_Chunk(split, ids[s:e], [render_texts[i] for i in idx[s:e]], (seed, sid, k, j, 1)))
            chunks_by_file.append((out / f"{split}_image_data_{k}.parquet", chunks))

    # csv files first (small), then the images
    atomic_write_bytes(out / "class_map.csv", resource_path("class_map.csv").read_bytes())
    atomic_write_text(out / "train.csv", _csv_text(frames["train"]))
    test = frames["test"]
    rows = pd.DataFrame({
        "image_id": np.repeat(test["image_id"].to_numpy(), len(TEST_COMPONENT_ORDER)),
        "component": np.tile(TEST_COMPONENT_ORDER, len(test)),
    })
    rows.insert(0, "row_id", rows["image_id"] + "_" + rows["component"])
    atomic_write_text(out / "test.csv", _csv_text(rows))
    atomic_write_text(out / "sample_submission.csv", _csv_text(pd.DataFrame({"row_id": rows["row_id"], "target": 0})))
    atomic_write_text(out / "test_labels.csv", _csv_text(test))

    n_chunks = sum(len(c) for _, c in chunks_by_file)
    if workers is None:
        # beyond ~3 renderers the main process (parquet encoding, ~0.5 ms/image) is the bottleneck
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        workers = 1 if train_rows + test_rows <= 4 * CHUNK_ROWS else min(cpus, 3, n_chunks)
    with tqdm(total=train_rows + test_rows, desc="synth", unit="img", disable=not progress) as bar:
        _write_parquets(chunks_by_file, renderers, max(1, int(workers)), bar)
    return out
