"""The data side of training: where a run's images and labels come from.

Three sources plug into the one training engine (``bengali_kit.engine``):

- a competition folder (``--data``): its train parquets are cropped/resized once into a uint8 cache, the
  labelled rows are split into train and validation, stratified by grapheme root (``split_indices``);
- a second folder for validation (``--val-data``): train on every labelled image of ``--data``, validate on
  every labelled image of the other folder (``import-crops`` writes real crops as such ``train/`` + ``val/``);
- the on-the-fly synthetic stream (``--synthetic-stream``): graphemes rendered in the DataLoader workers,
  validated on ``--val-data`` (or all of ``--data``) when given, else on a fixed rendered set;
- both at once (``--synthetic-mix``): the images of ``--data`` plus a share of rendered ones in every epoch,
  drawn from all valid triples, so fine-tuning keeps reading combinations the real data lacks.

``build_sources(cfg, rank, world)`` returns a ``Sources`` with the datasets and the validation labels and
ids. The engine imports this module, never the reverse.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from . import preprocess
from .data import check_labels_match_images, image_parquets, labels_array, read_train_csv
from .distributed import barrier
from .errors import DataError
from .files import atomic_path
from .synthetic import StreamConfig, SyntheticGraphemes, find_bengali_fonts

__all__ = ["CacheDataset", "FixedSynthetic", "MixedDataset", "Sources", "build_sources", "require_fonts",
           "split_indices", "prepare_cache", "rendered_count", "folder_labels", "check_folder", "set_stream_epoch",
           "write_val_ids", "read_val_ids", "VAL_IDS"]

VAL_IDS = "val_ids.csv"  # in a run folder: the image ids of its validation set, read by ``evaluate``


# ---------------------------------------------------------------- split
def split_indices(roots: np.ndarray, val_fraction: float = 0.2, n_folds: int = 0, fold: int = 0,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (by grapheme root) train/validation row indices, both sorted.

    Rows are ordered by (root, random key) and dealt out systematically, so every root is spread evenly
    over the folds / the validation fraction. With ``n_folds >= 2`` row i of that order goes to fold
    ``i % n_folds`` and ``fold`` is the validation set. Otherwise every ``1/val_fraction``-th row goes to
    validation, except that a root seen once stays in train. Works with any class sizes (sklearn's
    splitters refuse test sets smaller than the number of classes).
    """
    roots = np.asarray(roots)
    n = len(roots)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(n), roots))
    is_val = np.zeros(n, dtype=bool)
    if n_folds:
        if not 0 <= fold < n_folds:
            raise ValueError(f"fold must be in 0..{n_folds - 1}, got {fold}")
        is_val[order[np.arange(n) % n_folds == fold]] = True
    else:
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        offset = rng.random()
        pos = np.arange(n) * val_fraction + offset
        is_val[order[np.floor(pos + val_fraction) > np.floor(pos)]] = True
        _, inverse, counts = np.unique(roots, return_inverse=True, return_counts=True)
        is_val[counts[inverse] == 1] = False
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


# ---------------------------------------------------------------- datasets
class CacheDataset(Dataset):
    """Rows of the uint8 cache ``.npy`` with their labels: ``(uint8 (S, S) tensor, int64 (3,) tensor)``.

    Only the file path is pickled to DataLoader workers; each process opens its own read-only memmap
    on first access, so the array is never copied per worker.
    """

    def __init__(self, npy_path: str | Path, rows: np.ndarray, labels: np.ndarray):
        self.npy_path = str(npy_path)
        self.rows = np.asarray(rows, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        if len(self.rows) != len(self.labels):
            raise ValueError(f"{len(self.rows)} rows for {len(self.labels)} labels")
        self._images: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = np.load(self.npy_path, mmap_mode="r")
        return self._images

    def __getitem__(self, i: int):
        image = torch.from_numpy(np.array(self.images[self.rows[i]]))
        return image, torch.from_numpy(self.labels[i])

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_images"] = None
        return state


class FixedSynthetic(Dataset):
    """Given positions of a synthetic stream at a fixed epoch (a validation set that never changes)."""

    def __init__(self, stream: SyntheticGraphemes, positions: np.ndarray):
        self.stream = stream
        self.positions = np.asarray(positions)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int):
        return self.stream[int(self.positions[i])]


class MixedDataset(Dataset):
    """Real images followed by ``n_rendered`` graphemes rendered on the fly; the sampler shuffles the two
    together, so every batch holds about the same share of rendered images."""

    def __init__(self, real: Dataset, stream: SyntheticGraphemes, n_rendered: int):
        self.real, self.stream, self.n_rendered = real, stream, int(n_rendered)
        self.n_real = len(real)

    def __len__(self) -> int:
        return self.n_real + self.n_rendered

    def set_epoch(self, epoch: int) -> None:
        self.stream.set_epoch(epoch)

    def __getitem__(self, i: int):
        return self.real[i] if i < self.n_real else self.stream[i - self.n_real]


def rendered_count(n_real: int, share: float) -> int:
    """How many rendered images make ``share`` of an epoch beside ``n_real`` real ones."""
    return int(round(n_real * share / (1.0 - share))) if share else 0


def set_stream_epoch(dataset: Dataset, epoch: int) -> None:
    """Tell an on-the-fly dataset which epoch it is in (a no-op for cached data)."""
    fn = getattr(dataset, "set_epoch", None)
    if callable(fn):
        fn(epoch)


# ---------------------------------------------------------------- competition folders
def check_folder(data_dir: str | Path) -> None:
    """Raise DataError unless ``data_dir`` is a folder with train.csv and train parquets."""
    data = Path(data_dir)
    if not data.is_dir():
        raise DataError(data, "data folder not found")
    if not (data / "train.csv").is_file():
        raise DataError(data / "train.csv", "file not found (a competition folder needs train.csv)")
    image_parquets(data, "train")


def prepare_cache(data_dir: str | Path, cache_dir: str | Path, size: int, *, is_main: bool = True,
                  progress: bool = True, workers: int | None = None) -> tuple[Path, np.ndarray, dict]:
    """Build (rank 0) and open the train cache of a folder: (npy path, image ids, crop parameters)."""
    params = preprocess.CropParams().asdict()
    if is_main:
        kw: dict[str, Any] = {} if workers is None else {"workers": workers}
        params = preprocess.build_cache(data_dir, "train", size=size, out_dir=cache_dir, progress=progress,
                                        **kw).params
    barrier()
    images, ids = preprocess.load_cache(cache_dir, "train", size)
    npy = Path(getattr(images, "filename", None) or preprocess.cache_paths(cache_dir, "train", size)[0])
    del images
    return npy, np.asarray(ids).astype(str), dict(params)


def folder_labels(data_dir: str | Path, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cache rows that have labels, their labels (N, 3) and their image ids, in cache order."""
    path = Path(data_dir) / "train.csv"
    df = read_train_csv(path)
    if df.empty:
        raise DataError(path, "no labelled images (the file has a header only)")
    check_labels_match_images(df, ids, path)
    pos = pd.Series(np.arange(len(ids)), index=pd.Index(ids))
    rows = pos.loc[df["image_id"].to_numpy()].to_numpy()
    order = np.argsort(rows, kind="stable")
    return rows[order], labels_array(df)[order], df["image_id"].to_numpy(dtype=str)[order]


# ---------------------------------------------------------------- what a run trains and validates on
@dataclass
class Sources:
    """The datasets of one training process and what validation needs to score the whole set."""

    train_set: Dataset
    val_set: Dataset  # this rank's shard
    val_labels: np.ndarray  # (n_val, 3), all ranks
    val_positions: np.ndarray  # positions of this rank's shard in val_labels
    val_ids: np.ndarray  # (n_val,) image ids ("" for rendered images)
    crop_params: dict
    n_train: int
    persistent_workers: bool = True  # False when the train set must see set_epoch in its workers

    @property
    def n_val(self) -> int:
        return len(self.val_labels)


def _folder(cfg: Any, data_dir: str, cache_dir: Path, is_main: bool):
    npy, ids, crop = prepare_cache(data_dir, preprocess.folder_cache_dir(cache_dir, data_dir, cfg.image_size),
                                   cfg.image_size, is_main=is_main, progress=cfg.progress,
                                   workers=cfg.preprocess_workers)
    rows, labels, row_ids = folder_labels(data_dir, ids)
    return npy, rows, labels, row_ids, crop


def require_fonts(option: str) -> None:
    """DataError naming ``option`` when no Bengali font is installed: the renderer starts only inside the
    loader's workers, so without this check a run would fail there, after the cache is built, in a traceback."""
    try:
        find_bengali_fonts()
    except RuntimeError as err:
        raise DataError(option, f"rendering needs Bengali fonts: {err}") from None


def _stream(cfg: Any, seed: int, length: int) -> SyntheticGraphemes:
    return SyntheticGraphemes(StreamConfig(size=cfg.image_size, length=length, seed=seed, alpha=cfg.stream_alpha,
                                           novel_fraction=cfg.stream_novel_fraction))


def _with_rendered(cfg: Any, real: CacheDataset) -> tuple[Dataset, int]:
    """``real``, or ``real`` with ``cfg.synthetic_mix`` of each epoch rendered on the fly (seeded apart from
    the training seed's other streams); and the epoch's length."""
    n_rendered = rendered_count(len(real), cfg.synthetic_mix)
    if not n_rendered:
        return real, len(real)
    return MixedDataset(real, _stream(cfg, cfg.seed + 20_011, n_rendered), n_rendered), len(real) + n_rendered


def build_sources(cfg: Any, rank: int = 0, world: int = 1) -> Sources:
    """The train and validation datasets that ``cfg`` (a ``TrainConfig``) names, sharded for ``rank``."""
    is_main = rank == 0
    if cfg.synthetic_stream:
        length = int(cfg.steps_per_epoch) * cfg.batch_size * world
        train_set: Dataset = _stream(cfg, cfg.seed, length)
        crop, n_train = preprocess.CropParams().asdict(), length
        val_dir = cfg.val_data_dir or cfg.data_dir or None
    elif cfg.val_data_dir:
        npy, rows, labels, _, crop = _folder(cfg, cfg.data_dir, cfg.cache_path, is_main)
        train_set, n_train = _with_rendered(cfg, CacheDataset(npy, rows, labels))
        val_dir = cfg.val_data_dir
    else:  # one folder, split by root
        npy, rows, labels, row_ids, crop = _folder(cfg, cfg.data_dir, cfg.cache_path, is_main)
        tr, va = split_indices(labels[:, 0], cfg.val_fraction, cfg.n_folds, cfg.fold, cfg.seed)
        shard = np.arange(len(va))[rank::world]
        train_set, n_train = _with_rendered(cfg, CacheDataset(npy, rows[tr], labels[tr]))
        return Sources(train_set, CacheDataset(npy, rows[va][shard], labels[va][shard]),
                       labels[va], shard, row_ids[va], crop, n_train, persistent_workers=not cfg.synthetic_mix)
    if val_dir:
        npy, rows, labels, row_ids, _ = _folder(cfg, val_dir, cfg.cache_path, is_main)
        shard = np.arange(len(rows))[rank::world]
        val_set: Dataset = CacheDataset(npy, rows[shard], labels[shard])
    else:  # no real folder: a fixed rendered set, seeded apart from the training stream
        n_val = max(128, 2 * cfg.batch_size)
        fixed = _stream(cfg, cfg.seed + 10_007, n_val)
        labels, row_ids = fixed.labels_for(range(n_val)), np.full(n_val, "", dtype=object)
        shard = np.arange(n_val)[rank::world]
        val_set = FixedSynthetic(fixed, shard)
    return Sources(train_set, val_set, np.asarray(labels, dtype=np.int64), shard, np.asarray(row_ids, dtype=str),
                   crop, n_train, persistent_workers=not (cfg.synthetic_stream or cfg.synthetic_mix))


# ---------------------------------------------------------------- val_ids.csv
def write_val_ids(run_dir: str | Path, ids: np.ndarray) -> Path:
    """Write ``<run>/val_ids.csv`` (column image_id): the images this run validates on."""
    path = Path(run_dir) / VAL_IDS
    with atomic_path(path) as tmp:
        pd.DataFrame({"image_id": np.asarray(ids, dtype=str)}).to_csv(tmp, index=False)
    return path


def read_val_ids(path: str | Path) -> np.ndarray:
    """The image ids of a ``val_ids.csv``; DataError naming the file when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found (written by `bengali-kit train` into the run folder)")
    try:
        df = pd.read_csv(path, dtype={"image_id": str}, keep_default_na=False)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DataError(path, f"not a readable csv ({str(err).splitlines()[0]})") from None
    if list(df.columns) != ["image_id"]:
        raise DataError(path, f"expected one column image_id, got {list(df.columns)}")
    return df["image_id"].to_numpy(dtype=str)

