"""Real handwritten crops (an npz such as ``real_sample_64.npz``) turned into competition-format folders.

``import_crops`` splits the crops by (root, vowel, consonant) triple into ``train/`` and ``val/``; each is a
complete competition folder (``train.csv`` with labels and ``grapheme``, image parquets, ``class_map.csv``,
``test.csv``, ``sample_submission.csv``) so that every command of the kit runs on real handwriting unchanged.
The test split of both folders holds the validation images (ids ``Test_<k>``) with their answer key in
``test_labels.csv``, written by the kit's one competition-folder writer (``competition_folder``, as ``synth``):
``predict`` on either folder scores unseen images. ``out_dir`` appears whole at the end or not at all.

Crops are upscaled (cubic) and centred on white 137×236 frames, the size of the competition's images, so
the kit's crop/resize gives back (almost) the original crop.
"""
from __future__ import annotations

import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from .competition_folder import write_competition_files, write_folders
from .components import COMPONENTS, N_CLASSES, load_class_map, triple_codes
from .data import IMAGE_HEIGHT, IMAGE_WIDTH
from .errors import DataError, one_line

__all__ = ["Crops", "load_crops", "load_crop_files", "read_image_ids", "split_by_triple", "first_per_triple",
           "holdout_triples", "place_crops", "import_crops", "ImportReport"]

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


def _is_npy(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(6) == b"\x93NUMPY"


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of the npz at ``path``; any damage (truncated, bad CRC, not a zip) is a one-line DataError."""
    if not zipfile.is_zipfile(path) and not _is_npy(path):  # numpy's own message would suggest an unsafe load
        raise DataError(path, "not an npz archive (not a zip file: a text or other file named .npz?)")
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(path, f"not a readable npz file ({one_line(err)})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):  # a .npy (or pickle) under an .npz name
        raise DataError(path, f"not an npz archive (it holds a single {type(npz).__name__}: a .npy file renamed?)")
    with npz:
        missing = [k for k in ("images", *COMPONENTS, "image_id") if k not in npz.files]
        if missing:
            raise DataError(path, f"missing key(s) {', '.join(missing)} (found {', '.join(npz.files)})")
        try:
            return {k: npz[k] for k in ("images", *COMPONENTS, "image_id", "grapheme") if k in npz.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
            raise DataError(path, f"damaged npz member ({one_line(err)})") from None


def _integer_labels(path: Path, name: str, values: np.ndarray, n: int) -> np.ndarray:
    """One label column as int64, refusing what would be silently truncated or misread (52.7 is not 52)."""
    if values.ndim != 1 or len(values) != n:
        raise DataError(path, f"{name} must be one label per image ({n}), got shape {values.shape}")
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            first = int(np.argmax(bad))
            raise DataError(path, f"{name} labels must be integers, got {values[first].item()!r} (image {first})")
        return values.astype(np.int64)
    raise DataError(path, f"{name} labels must be integers, got dtype {values.dtype}")


def load_crops(path: str | Path, limit: int | None = None) -> Crops:
    """Read an npz of labelled crops (keys images, grapheme_root, vowel_diacritic, consonant_diacritic,
    image_id, grapheme), checking shapes and label values; every problem is a DataError naming the file.

    ``limit`` keeps only whole triples, taken in order of first appearance, up to ``limit`` crops in all:
    a small slice that still has several images per triple (for tests).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    arrays = _read_npz(path)
    images = arrays["images"]
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(path, f"images must be uint8 (N, h, w), got {images.dtype} {images.shape}")
    if images.shape[1] == 0 or images.shape[2] == 0:
        raise DataError(path, f"images have no pixels: shape {images.shape} (crops of height or width 0)")
    n = len(images)
    labels = np.stack([_integer_labels(path, c, arrays[c], n) for c in COMPONENTS], axis=1)
    ids = arrays["image_id"]
    if ids.ndim != 1 or len(ids) != n:
        raise DataError(path, f"image_id must be one id per image ({n}), got shape {ids.shape}")
    ids = ids.astype(str)
    graphemes = arrays.get("grapheme")
    if graphemes is not None and (graphemes.ndim != 1 or len(graphemes) != n):
        raise DataError(path, f"grapheme must be one string per image ({n}), got shape {graphemes.shape}")
    for j, (name, k) in enumerate(zip(COMPONENTS, N_CLASSES)):
        bad = (labels[:, j] < 0) | (labels[:, j] >= k)
        if bad.any():
            raise DataError(path, f"label out of range in {name}: {labels[bad, j][0]} (expected 0..{k - 1})")
    if len(np.unique(ids)) != n:
        raise DataError(path, "image_id values are not unique")
    if graphemes is None:
        cmap = load_class_map()
        graphemes = np.array([cmap.compose(*map(int, t)) for t in labels])
    crops = Crops(images, labels, ids, graphemes.astype(str))
    if limit is not None and limit < n:
        crops = crops.subset(_first_triples(labels, limit))
    return crops


def _concatenate(parts: list[Crops]) -> Crops:
    return Crops(*(np.concatenate([getattr(c, f) for c in parts]) for f in ("images", "labels", "image_ids",
                                                                             "graphemes")))


def read_image_ids(path: str | Path) -> set[str]:
    """The image ids listed in ``path``: an npz of crops (its ``image_id``) or a text file, one id per line
    (a first line ``image_id`` is a header)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    if path.suffix == ".npz":
        return set(load_crops(path).image_ids.tolist())
    try:
        lines = [line.strip() for line in path.read_text().splitlines()]
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(path, f"not a text file of image ids ({one_line(err)})") from None
    ids = {line for line in lines if line and line != "image_id"}
    if not ids:
        raise DataError(path, "lists no image id")
    return ids


def load_crop_files(paths: str | Path | Sequence[str | Path], limit: int | None = None,
                    exclude: Sequence[str | Path] = ()) -> tuple[Crops, int]:
    """The crops of one or several npz files, concatenated in order, and how many ``exclude`` removed.

    An ``image_id`` found in two files is a DataError naming both. ``exclude`` files (npz of crops or text
    files of ids, :func:`read_image_ids`) list crops to leave out, e.g. a held-out slice; ``limit`` then keeps
    whole triples of what is left, as in :func:`load_crops`.
    """
    paths = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    if not paths:
        raise ValueError("no npz file given")
    parts = [load_crops(p) for p in paths]
    owner: dict[str, Path] = {}
    for path, part in zip(paths, parts):
        for image_id in part.image_ids.tolist():
            if image_id in owner:
                raise DataError(path, f"image_id {image_id} is also in {owner[image_id]} (each crop must come once)")
            owner[image_id] = path
    crops = parts[0] if len(parts) == 1 else _concatenate(parts)
    excluded = set().union(*(read_image_ids(p) for p in exclude)) if exclude else set()
    keep = np.flatnonzero(~np.isin(crops.image_ids, list(excluded))) if excluded else np.arange(len(crops))
    n_excluded = len(crops) - len(keep)
    crops = crops.subset(keep)
    if limit is not None and limit < len(crops):
        crops = crops.subset(_first_triples(crops.labels, limit))
    return crops, n_excluded


def _first_triples(labels: np.ndarray, limit: int) -> np.ndarray:
    codes = triple_codes(labels)
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
    codes = triple_codes(np.asarray(labels))
    val: list[int] = []
    for code in np.unique(codes):
        idx = np.flatnonzero(codes == code)
        k = min(val_per_triple, len(idx) - 1)
        if k > 0:
            val.extend(rng.choice(idx, size=k, replace=False).tolist())
    val_idx = np.sort(np.asarray(val, dtype=np.int64))
    train_idx = np.setdiff1d(np.arange(len(codes)), val_idx)
    return train_idx, val_idx


def first_per_triple(labels: np.ndarray, per_triple: int, seed: int = 0) -> np.ndarray:
    """Indices of at most ``per_triple`` crops of each triple, drawn with ``seed``. The draw of a triple does
    not depend on ``per_triple``, so smaller counts give subsets of larger ones (the data-scaling rows)."""
    if per_triple < 1:
        raise ValueError(f"per_triple must be >= 1, got {per_triple}")
    rng = np.random.default_rng(seed)
    codes = triple_codes(np.asarray(labels))
    keep = [rng.permutation(np.flatnonzero(codes == code))[:per_triple] for code in np.unique(codes)]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def holdout_triples(labels: np.ndarray, fraction: float = 0.1, seed: int = 0) -> np.ndarray:
    """Boolean mask of the crops whose (root, vowel, consonant) triple is held out entirely: about ``fraction``
    of the triples, chosen at random with ``seed``, such that every root, vowel and consonant class present
    still appears in some kept triple (so an unseen triple is a new combination of seen parts, as in Kaggle's
    private test set)."""
    if not 0 <= fraction < 1:
        raise ValueError(f"the unseen fraction must be in [0, 1), got {fraction}")
    labels = np.asarray(labels)
    triples, inverse = np.unique(labels, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    # how many kept triples use each class of each component; a triple may go only if none drops to zero
    kept = [dict(zip(*np.unique(triples[:, c], return_counts=True))) for c in range(3)]
    held = np.zeros(len(triples), dtype=bool)
    target = int(round(fraction * len(triples)))
    for t in np.random.default_rng(seed).permutation(len(triples)):
        if held.sum() >= target:
            break
        if all(kept[c][triples[t, c]] > 1 for c in range(3)):
            held[t] = True
            for c in range(3):
                kept[c][triples[t, c]] -= 1
    return held[inverse]


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
    val_dir: Path | None  # None with ``val_per_triple=0``: every crop went to train/
    n_train: int
    n_val: int
    n_triples: int
    unseen_dir: Path | None = None  # with ``unseen_fraction``: every crop of the held-out triples
    n_unseen: int = 0
    n_unseen_triples: int = 0
    n_excluded: int = 0  # crops left out because an ``exclude`` file lists them
    n_unseen_asked: int = 0  # held-out triples ``unseen_fraction`` asked for; fewer when classes would vanish


def _folder_frames(crops: Crops, val: Crops) -> tuple[pd.DataFrame, pd.DataFrame]:
    """train.csv of a folder holding ``crops`` and test_labels.csv of its test split (the ``val`` crops)."""
    train = pd.DataFrame(crops.labels, columns=list(COMPONENTS))
    train.insert(0, "image_id", crops.image_ids)
    train["grapheme"] = crops.graphemes
    key = pd.DataFrame(val.labels, columns=list(COMPONENTS))
    key.insert(0, "image_id", [f"Test_{k}" for k in range(len(val))])
    return train, key


def import_crops(npz_path: str | Path | Sequence[str | Path], out_dir: str | Path, val_per_triple: int = 1,
                 seed: int = 0, limit: int | None = None, placed_size: int = DEFAULT_PLACED_SIZE, files: int = 4,
                 overwrite: bool = False, unseen_fraction: float = 0.0, exclude: Sequence[str | Path] = (),
                 train_per_triple: int | None = None) -> ImportReport:
    """Write ``out_dir/train`` and ``out_dir/val`` competition folders from one or several npz files of
    labelled crops (concatenated, :func:`load_crop_files`; ``exclude`` lists crops to leave out).

    With ``unseen_fraction`` > 0, about that share of the triples is held out entirely
    (:func:`holdout_triples`: every root, vowel and consonant still seen in training) into a third folder,
    ``out_dir/unseen``; train/ and val/ are split from the other triples. ``train_per_triple`` then keeps at
    most that many training crops of each triple (:func:`first_per_triple`, nested across counts); the
    validation crops do not depend on it.

    ``val/train.csv`` labels the validation images, so ``evaluate --all`` on ``val/`` scores all of them;
    the test split of both folders is the validation images, answer key in ``test_labels.csv``. With
    ``val_per_triple=0`` every crop goes to ``train/`` (to train a model on all of them), no ``val/`` is written
    and ``train/``'s test split is its own images. A non-empty ``out_dir`` is refused unless ``overwrite``,
    which replaces the files an earlier import wrote there (``competition_folder.write_folders``: its manifest
    lists them; a user's files are kept). A failure or interruption leaves ``out_dir`` as it was. Bad input
    raises ``DataError`` naming the file, bad arguments ``ValueError``.
    """
    if isinstance(files, bool) or not isinstance(files, (int, np.integer)) or files < 1:
        raise ValueError(f"files must be an integer >= 1, got {files!r}")
    crops, n_excluded = load_crop_files(npz_path, limit=limit, exclude=exclude)
    if len(crops) == 0:
        first = npz_path if isinstance(npz_path, (str, Path)) else npz_path[0]
        raise DataError(Path(first), "no crops to import" + (" (every crop is excluded)" if n_excluded else ""))
    held = holdout_triples(crops.labels, unseen_fraction, seed) if unseen_fraction else np.zeros(len(crops), bool)
    seen = np.flatnonzero(~held)
    train_idx, val_idx = split_by_triple(crops.labels[seen], val_per_triple=val_per_triple, seed=seed)
    if train_per_triple is not None:
        train_idx = train_idx[first_per_triple(crops.labels[seen][train_idx], train_per_triple, seed)]
    if len(val_idx) == 0 and val_per_triple > 0:
        raise ValueError("no validation images: every triple has a single crop")
    parts = {"train": crops.subset(seen[train_idx])}
    if len(val_idx):
        parts["val"] = crops.subset(seen[val_idx])
    if held.any():
        parts["unseen"] = crops.subset(np.flatnonzero(held))
    frames = {name: place_crops(part.images, placed_size) for name, part in parts.items()}

    def write(tmp: Path) -> None:
        for name, part in parts.items():
            # each folder's test split: images it never trains on (train/'s own images when there is no val/)
            test = "unseen" if name == "unseen" else "val" if "val" in parts else "train"
            labels, key = _folder_frames(part, parts[test])
            write_competition_files(tmp / name, labels, key, frames[name], frames[test], files)

    out = write_folders(out_dir, overwrite, write)
    n_triples = len(np.unique(triple_codes(crops.labels)))
    unseen = parts.get("unseen")
    val = parts.get("val")
    return ImportReport(out, out / "train", out / "val" if val is not None else None, len(parts["train"]),
                        len(val) if val is not None else 0, n_triples,
                        out / "unseen" if unseen is not None else None, len(unseen) if unseen is not None else 0,
                        len(np.unique(triple_codes(unseen.labels))) if unseen is not None else 0, n_excluded,
                        int(round(unseen_fraction * n_triples)))
