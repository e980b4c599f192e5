"""Synthetic graphemes rendered on the fly: an endless, seeded training set for pretraining.

Each item is rendered when it is asked for (in the DataLoader workers), so pretraining is bounded by CPU,
not by disk. Item ``i`` of epoch ``e`` depends only on ``(seed, e, i)``: the same images whatever the number
of workers or processes, and resuming replays the same stream.

Labels come from :class:`~.labels.LabelSampler`; the renderer mostly re-draws the fonts with a uniform pen
along their centre lines and :func:`~.handwriting.handwrite` makes them look written. Items are then cropped
and resized exactly as real images are (``preprocess.crop_resize``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..components import load_class_map
from ..preprocess import crop_resize
from .fonts import find_bengali_fonts
from .handwriting import handwrite
from .labels import LabelSampler
from .renderer import GraphemeRenderer

__all__ = ["StreamConfig", "SyntheticGraphemes"]


@dataclass
class StreamConfig:
    """Settings of the on-the-fly synthetic dataset (all plain values: they go into config.json)."""

    size: int = 64  # side of the preprocessed crops
    length: int = 20000  # items per epoch
    seed: int = 0
    alpha: float = 0.5  # real frequencies ** alpha (1 = real, 0 = uniform over the real triples)
    novel_fraction: float = 0.2  # share of valid triples absent from the real train set
    handwriting: bool = True  # apply :func:`handwrite` after rendering
    fonts: list[str] = field(default_factory=list)  # font files; empty = ``find_bengali_fonts()``

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
            fonts = [Path(f) for f in self.cfg.fonts] or find_bengali_fonts()
            self._renderer = GraphemeRenderer(fonts)
        return self._renderer

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw 137×236 image (white background) and labels of item ``index`` of the current epoch."""
        rng = np.random.default_rng([self.cfg.seed, self.epoch, int(index)])
        labels = self.sampler.sample(rng)
        return self._draw(labels, rng), labels

    def render_labels(self, labels: Sequence[int], index: int) -> np.ndarray:
        """The raw image of the triple ``labels`` drawn as item ``index`` would be (to compare with real crops)."""
        rng = np.random.default_rng([self.cfg.seed, self.epoch, int(index)])
        self.sampler.sample(rng)  # the same random stream as :meth:`render` from here on
        return self._draw(np.asarray(labels), rng)

    def _draw(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        img = self._get_renderer().render(self._cmap.compose(*map(int, labels)), rng)
        return handwrite(img, rng) if self.cfg.handwriting else img

    def __getitem__(self, index: int):
        img, labels = self.render(index)
        crop = crop_resize(img, size=self.cfg.size)
        return torch.from_numpy(np.ascontiguousarray(crop)), torch.from_numpy(labels.astype(np.int64))

    def labels_for(self, indices: Sequence[int]) -> np.ndarray:
        """Labels of some items of the current epoch (N,3), without rendering (for stratification checks)."""
        out = np.empty((len(indices), 3), dtype=np.int64)
        for k, i in enumerate(indices):
            out[k] = self.sampler.sample(np.random.default_rng([self.cfg.seed, self.epoch, int(i)]))
        return out
