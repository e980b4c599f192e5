"""Real handwritten crops (an npz such as ``real_sample_64.npz``) turned into competition-format folders.

``import_crops`` splits the crops by (root, vowel, consonant) triple into ``train/`` and ``val/``; each is a
complete competition folder (``train.csv`` with labels and ``grapheme``, image parquets, ``class_map.csv``,
``test.csv``, ``sample_submission.csv``) so that every command of the kit runs on real handwriting unchanged.
The test split of both folders holds the validation images (ids ``Test_<k>``) with their answer key in
``test_labels.csv``, as the synthetic generator writes it: ``predict`` on either folder scores unseen images.

Crops are upscaled (cubic) and centred on white 137×236 frames, the size of the competition's images, so
the kit's crop/resize gives back (almost) the original crop.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from .components import COMPONENTS, N_CLASSES, resource_path
from .data import IMAGE_HEIGHT, IMAGE_WIDTH, write_image_parquet
from .errors import DataError
from .files import atomic_write_text, prepare_output_dir

__all__ = ["Crops", "load_crops", "split_by_triple", "place_crops", "import_crops", "ImportReport"]

#: Side of the square a crop is scaled to before it is centred on the 137×236 frame. Leaves a margin of
#: about 12 px above and below, outside the 5 px border that the Iafoss crop ignores.
DEFAULT_PLACED_SIZE = 112


@dataclass(frozen=True)
class Crops:
    """Labelled crops: ``images`` uint8 (N,h,w) dark ink on white, ``labels`` int64 (N,3), ids and graphemes."""

    images: np.ndarray
    labels: np.ndarray
    image_ids: np.ndarray
    graphemes: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: np.ndarray) -> "Crops":
        """The crops at ``index`` (in that order)."""
        return Crops(self.images[index], self.labels[index], self.image_ids[index], self.graphemes[index])


def load_crops(path: str | Path, limit: int | None = None) -> Crops:
    """Read an npz of labelled crops (keys images, grapheme_root, vowel_diacritic, consonant_diacritic,
    image_id, grapheme), checking shapes and label ranges.

    ``limit`` keeps only whole triples, taken in order of first appearance, up to ``limit`` crops in all:
    a small slice that still has several images per triple (for tests).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DataError(path, f"not a readable npz file ({err})") from None
    with npz:
        missing = [k for k in ("images", *COMPONENTS, "image_id") if k not in npz.files]
        if missing:
            raise DataError(path, f"missing key(s) {', '.join(missing)} (found {', '.join(npz.files)})")
        images = npz["images"]
        labels = np.stack([npz[c].astype(np.int64) for c in COMPONENTS], axis=1)
        ids = npz["image_id"].astype(str)
        graphemes = npz["grapheme"].astype(str) if "grapheme" in npz.files else None
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(path, f"images must be uint8 (N, h, w), got {images.dtype} {images.shape}")
    n = len(images)
    if len(labels) != n or len(ids) != n:
        raise DataError(path, f"{n} images but {len(labels)} labels and {len(ids)} image ids")
    for j, (name, k) in enumerate(zip(COMPONENTS, N_CLASSES)):
        bad = (labels[:, j] < 0) | (labels[:, j] >= k)
        if bad.any():
            raise DataError(path, f"label out of range in {name}: {labels[bad, j][0]} (expected 0..{k - 1})")
    if len(np.unique(ids)) != n:
        raise DataError(path, "image_id values are not unique")
    if graphemes is None:
        from .components import load_class_map

        cmap = load_class_map()
        graphemes = np.array([cmap.compose(*map(int, t)) for t in labels])
    crops = Crops(images, labels, ids, graphemes)
    if limit is not None and limit < n:
        crops = crops.subset(_first_triples(labels, limit))
    return crops


def _triple_codes(labels: np.ndarray) -> np.ndarray:
    return (labels[:, 0] * N_CLASSES[1] + labels[:, 1]) * N_CLASSES[2] + labels[:, 2]


def _first_triples(labels: np.ndarray, limit: int) -> np.ndarray:
    codes = _triple_codes(labels)
    _, first = np.unique(codes, return_index=True)
    keep: list[np.ndarray] = []
    total = 0
    for code in codes[np.sort(first)]:
        idx = np.flatnonzero(codes == code)
        if total + len(idx) > limit:
            break
        keep.append(idx)
        total += len(idx)
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def split_by_triple(labels: np.ndarray, val_per_triple: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val), stratified by (root, vowel, consonant) triple.

    Each triple sends ``val_per_triple`` of its images (chosen at random with ``seed``) to validation, but
    always keeps at least one for training: a triple with a single image goes to train only.
    """
    if val_per_triple < 0:
        raise ValueError(f"val_per_triple must be >= 0, got {val_per_triple}")
    rng = np.random.default_rng(seed)
    codes = _triple_codes(np.asarray(labels))
    val: list[int] = []
    for code in np.unique(codes):
        idx = np.flatnonzero(codes == code)
        k = min(val_per_triple, len(idx) - 1)
        if k > 0:
            val.extend(rng.choice(idx, size=k, replace=False).tolist())
    val_idx = np.sort(np.asarray(val, dtype=np.int64))
    train_idx = np.setdiff1d(np.arange(len(codes)), val_idx)
    return train_idx, val_idx


def _ink_box(img: np.ndarray, threshold: int) -> tuple[int, int, int, int]:
    ink = img < 255 - threshold
    if not ink.any():
        return 0, img.shape[0], 0, img.shape[1]
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def place_crops(images: np.ndarray, placed_size: int = DEFAULT_PLACED_SIZE, trim_threshold: int = 40) -> np.ndarray:
    """Centre each crop on a white 137×236 frame, its ink scaled (cubic) to a longer side of ``placed_size``.

    The crops already went through a crop/resize that added margins; trimming them to their ink (pixels
    darker than ``255 - trim_threshold``) first means the kit's own crop/resize adds its margins once, as
    on the competition's images, and the glyphs fill the model's input as much as synthetic ones do.
    """
    if not 8 <= placed_size <= IMAGE_HEIGHT:
        raise ValueError(f"placed_size must be in 8..{IMAGE_HEIGHT}, got {placed_size}")
    frames = np.full((len(images), IMAGE_HEIGHT, IMAGE_WIDTH), 255, dtype=np.uint8)
    for i, img in enumerate(images):
        y0, y1, x0, x1 = _ink_box(img, trim_threshold) if trim_threshold else (0, img.shape[0], 0, img.shape[1])
        glyph = img[y0:y1, x0:x1]
        h, w = glyph.shape
        scale = placed_size / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        top, left = (IMAGE_HEIGHT - nh) // 2, (IMAGE_WIDTH - nw) // 2
        # INTER_CUBIC overshoots a little; cv2 saturates the uint8 result, so no wrap-around
        frames[i, top:top + nh, left:left + nw] = cv2.resize(glyph, (nw, nh), interpolation=cv2.INTER_CUBIC)
    return frames


@dataclass(frozen=True)
class ImportReport:
    """What :func:`import_crops` wrote."""

    out_dir: Path
    train_dir: Path
    val_dir: Path
    n_train: int
    n_val: int
    n_triples: int


def _split_files(n: int, files: int) -> list[slice]:
    files = max(1, min(files, n)) if n else 1
    bounds = np.linspace(0, n, files + 1).round().astype(int)
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def _write_test_split(folder: Path, frames: np.ndarray, labels: np.ndarray, files: int) -> None:
    test_ids = np.array([f"Test_{k}" for k in range(len(frames))])
    for k, part in enumerate(_split_files(len(frames), files)):
        write_image_parquet(folder / f"test_image_data_{k}.parquet", test_ids[part], frames[part])
    # the competition's order: consonant, root, vowel for each image
    order = ("consonant_diacritic", "grapheme_root", "vowel_diacritic")
    rows = [(f"{i}_{c}", i, c) for i in test_ids for c in order]
    test = pd.DataFrame(rows, columns=["row_id", "image_id", "component"])
    atomic_write_text(folder / "test.csv", test.to_csv(index=False))
    atomic_write_text(folder / "sample_submission.csv",
                      pd.DataFrame({"row_id": test.row_id, "target": 0}).to_csv(index=False))
    key = pd.DataFrame(labels, columns=list(COMPONENTS))
    key.insert(0, "image_id", test_ids)
    atomic_write_text(folder / "test_labels.csv", key.to_csv(index=False))


def _write_folder(folder: Path, crops: Crops, frames: np.ndarray, val_frames: np.ndarray, val_labels: np.ndarray,
                  files: int, overwrite: bool) -> None:
    prepare_output_dir(folder, overwrite=overwrite)
    for k, part in enumerate(_split_files(len(frames), files)):
        write_image_parquet(folder / f"train_image_data_{k}.parquet", crops.image_ids[part], frames[part])
    train = pd.DataFrame(crops.labels, columns=list(COMPONENTS))
    train.insert(0, "image_id", crops.image_ids)
    train["grapheme"] = crops.graphemes
    atomic_write_text(folder / "train.csv", train.to_csv(index=False))
    atomic_write_text(folder / "class_map.csv", resource_path("class_map.csv").read_text(encoding="utf-8"))
    _write_test_split(folder, val_frames, val_labels, files)


def import_crops(npz_path: str | Path, out_dir: str | Path, val_per_triple: int = 1, seed: int = 0,
                 limit: int | None = None, placed_size: int = DEFAULT_PLACED_SIZE, files: int = 4,
                 overwrite: bool = False) -> ImportReport:
    """Write ``out_dir/train`` and ``out_dir/val`` competition folders from an npz of labelled crops.

    ``val/train.csv`` labels the validation images, so ``evaluate --all`` on ``val/`` scores all of them;
    the test split of both folders is the validation images, answer key in ``test_labels.csv``.
    """
    crops = load_crops(npz_path, limit=limit)
    if len(crops) == 0:
        raise DataError(Path(npz_path), "no crops to import")
    out_dir = prepare_output_dir(out_dir, overwrite=overwrite)
    train_idx, val_idx = split_by_triple(crops.labels, val_per_triple=val_per_triple, seed=seed)
    if len(val_idx) == 0:
        raise ValueError("no validation images: every triple has a single crop or --val-per-triple is 0")
    train, val = crops.subset(train_idx), crops.subset(val_idx)
    train_frames, val_frames = place_crops(train.images, placed_size), place_crops(val.images, placed_size)
    _write_folder(out_dir / "train", train, train_frames, val_frames, val.labels, files, overwrite)
    _write_folder(out_dir / "val", val, val_frames, val_frames, val.labels, files, overwrite)
    n_triples = len(np.unique(_triple_codes(crops.labels)))
    return ImportReport(out_dir, out_dir / "train", out_dir / "val", len(train), len(val), n_triples)
