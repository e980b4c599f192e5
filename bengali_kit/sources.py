"""Where a training run's images come from, beyond "split the data folder's cache".

- ``val_data_dir``: train on every labelled image of ``data_dir`` and validate on every labelled image of
  another folder (e.g. ``import-crops``' ``train/`` and ``val/``).
- ``synthetic_stream``: train on graphemes rendered on the fly (``synth_stream.SyntheticGraphemes``),
  ``steps_per_epoch`` batches per epoch; validate on ``val_data_dir`` (or all of ``data_dir``) when given,
  else on a fixed set of rendered images.

``build_sources(cfg, is_main, rank, world)`` returns the datasets ``train.py`` needs.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

__all__ = ["Sources", "build_sources", "FixedSynthetic", "set_stream_epoch"]


@dataclass
class Sources:
    train_set: Dataset
    val_set: Dataset
    val_labels: np.ndarray  # (n_val, 3), all ranks
    val_positions: np.ndarray  # positions of this rank's val shard in val_labels
    crop_params: dict
    n_train: int
    n_val: int
    persistent_workers: bool = True  # False when the train set must see set_epoch in its workers


class FixedSynthetic(Dataset):
    """The first ``n`` items of a synthetic stream at a fixed epoch (a validation set that never changes)."""

    def __init__(self, stream, n: int, positions: np.ndarray | None = None):
        self.stream = stream
        self.positions = np.arange(n) if positions is None else np.asarray(positions)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int):
        return self.stream[int(self.positions[i])]


def _folder_rows(cfg, data_dir: str, cache_dir: Path, is_main: bool) -> tuple[Path, np.ndarray, np.ndarray, dict]:
    from .train import _labels_for, _prepare_cache

    sub = dataclasses.replace(cfg, data_dir=data_dir, cache_dir=str(cache_dir))
    npy, ids, crop = _prepare_cache(sub, is_main)
    rows, labels = _labels_for(sub, ids)
    return npy, rows, labels, crop


def build_sources(cfg: Any, is_main: bool, rank: int, world: int) -> Sources | None:
    """Datasets for ``val_data_dir`` / ``synthetic_stream`` runs; None for the default split of ``data_dir``."""
    from .train import CacheDataset

    stream = bool(getattr(cfg, "synthetic_stream", False))
    val_dir = getattr(cfg, "val_data_dir", None)
    if not stream and not val_dir:
        return None
    if stream:
        from .preprocess import CropParams
        from .synth_stream import StreamConfig, SyntheticGraphemes

        length = int(cfg.steps_per_epoch) * cfg.batch_size * world
        train_set = SyntheticGraphemes(StreamConfig(size=cfg.image_size, length=length, seed=cfg.seed,
                                                    alpha=cfg.stream_alpha, novel_fraction=cfg.stream_novel_fraction))
        crop, n_train = CropParams().asdict(), length
    else:
        npy, rows, labels, crop = _folder_rows(cfg, cfg.data_dir, cfg.cache_path, is_main)
        train_set, n_train = CacheDataset(npy, rows, labels), len(rows)
    source = val_dir or (cfg.data_dir if stream and cfg.data_dir else None)
    if source:
        npy, rows, labels, _ = _folder_rows(cfg, source, cfg.cache_path / "val", is_main)
        shard = np.arange(len(rows))[rank::world]
        val_set = CacheDataset(npy, rows[shard], labels[shard])
        val_labels = labels
    else:  # no real folder: a fixed rendered set, seeded apart from the training stream
        from .synth_stream import StreamConfig, SyntheticGraphemes

        n_val = max(128, 2 * cfg.batch_size)
        fixed = SyntheticGraphemes(StreamConfig(size=cfg.image_size, length=n_val, seed=cfg.seed + 10_007,
                                                alpha=cfg.stream_alpha, novel_fraction=cfg.stream_novel_fraction))
        val_labels = fixed.labels_for(range(n_val))
        shard = np.arange(n_val)[rank::world]
        val_set = FixedSynthetic(fixed, n_val, shard)
    return Sources(train_set, val_set, np.asarray(val_labels, dtype=np.int64), shard, crop, n_train,
                   len(val_labels), persistent_workers=not stream)


def set_stream_epoch(dataset: Dataset, epoch: int) -> None:
    """Tell an on-the-fly dataset which epoch it is in (a no-op for cached data)."""
    fn = getattr(dataset, "set_epoch", None)
    if callable(fn):
        fn(epoch)

