"""Reading and validating the competition's files (csv and image parquets).

Image parquets hold one row per image: ``image_id`` then the columns ``'0'..'32331'``, the uint8
pixels of a 137×236 grayscale image (white background, dark ink). They are read in record batches
with pyarrow straight into uint8 arrays: no per-row pandas access and no float64 copy.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, NamedTuple

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .components import COMPONENTS, N_CLASSES
from .errors import DataError, one_line
from .files import atomic_path

__all__ = [
    "DataError", "IMAGE_HEIGHT", "IMAGE_WIDTH", "N_PIXELS", "ImageBatch", "iter_image_batches", "read_images",
    "count_images", "parquet_ids", "image_parquets", "read_train_csv", "read_test_csv", "read_sample_submission",
    "check_labels_match_images", "write_image_parquet", "labels_array", "data_files",
]

IMAGE_HEIGHT, IMAGE_WIDTH = 137, 236
N_PIXELS = IMAGE_HEIGHT * IMAGE_WIDTH  # 32332
PIXEL_COLUMNS: tuple[str, ...] = tuple(str(i) for i in range(N_PIXELS))
SPLITS = ("train", "test")


class ImageBatch(NamedTuple):
    """A slice of an image parquet: ``ids`` (str, (n,)) and ``images`` (uint8, (n, 137, 236))."""

    ids: np.ndarray
    images: np.ndarray


def _open_parquet(path: Path) -> pq.ParquetFile:
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(path, f"not a readable parquet file ({one_line(err).rstrip('.')})") from None
    schema = pf.schema_arrow
    names = schema.names
    if not names or names[0] != "image_id":
        raise DataError(path, f"first column must be 'image_id', got {names[:1]}")
    pixel_names = [n for n in names[1:] if n != "__index_level_0__"]
    if len(pixel_names) != N_PIXELS:
        raise DataError(path, f"expected {N_PIXELS} pixel columns (137×236 image), got {len(pixel_names)}")
    if tuple(pixel_names) != PIXEL_COLUMNS:
        raise DataError(path, "pixel columns must be named '0'..'32331' in order")
    bad = {str(schema.field(n).type) for n in pixel_names if schema.field(n).type != pa.uint8()}
    if bad:
        raise DataError(path, f"pixel columns must be uint8, found {', '.join(sorted(bad))}")
    return pf


def _damaged(err: BaseException) -> str:
    return f"cannot decode parquet data, the file is damaged ({one_line(err).rstrip('.')})"


def count_images(path: str | Path) -> int:
    """Number of images in an image parquet, from its metadata (no pixels read)."""
    path = Path(path)
    return _open_parquet(path).metadata.num_rows


def parquet_ids(path: str | Path) -> np.ndarray:
    """The ``image_id`` column of an image parquet (str, file order), read alone: no pixel is decoded."""
    path = Path(path)
    pf = _open_parquet(path)
    try:
        return _ids_of(path, pf.read(columns=["image_id"]).column(0))
    except (pa.ArrowException, OSError) as err:
        raise DataError(path, _damaged(err)) from None


# Row groups are decoded whole, 1,024 columns at a time (by index), straight into uint8 images. Memory is
# one row group's pixels plus one block: pyarrow's batch reader (iter_batches) keeps per-column state
# for all 32k columns (~1 GB even for a 4k-row file) and is 3x slower here. Parquet pages cannot be
# decoded partially, so a file written as one huge row group costs that group's pixels in any reader.
_COLUMN_BLOCK = 1024  # columns decoded per call: bounds the decoded-but-not-yet-copied data to ~1024 × rows


def _pixel_indices(pf: pq.ParquetFile) -> list[int]:
    names = pf.schema_arrow.names
    if names[1:1 + N_PIXELS] == list(PIXEL_COLUMNS):
        return list(range(1, 1 + N_PIXELS))
    index = {n: i for i, n in enumerate(names)}
    return [index[c] for c in PIXEL_COLUMNS]


def _copy_column(path: Path, j: int, col, dest: np.ndarray) -> None:
    """Copy pixel column ``j`` (a uint8 Array or ChunkedArray) into the 1-D array ``dest``."""
    if col.null_count:
        raise DataError(path, f"pixel column '{j}' has missing (NaN) values")
    # A uint8 Arrow array is one contiguous buffer: view it instead of converting through to_numpy.
    off = 0
    for chunk in getattr(col, "chunks", (col,)):
        k = len(chunk)
        if k:
            dest[off:off + k] = np.frombuffer(chunk.buffers()[1], dtype=np.uint8, count=k, offset=chunk.offset)
            off += k


def _ids_of(path: Path, col) -> np.ndarray:
    if col.null_count:
        raise DataError(path, "image_id has missing values")
    return np.asarray(col.to_pylist(), dtype=object).astype(str)


def _read_row_group(path: Path, pf: pq.ParquetFile, rg: int, pixel_idx: list[int],
                    out: np.ndarray | None = None) -> ImageBatch:
    """Decode one row group in blocks of columns selected by index (by name costs a lookup per column).

    Each block is transposed and written into its slice of the output, so besides the output only one
    block (``_COLUMN_BLOCK`` × rows) is held: a whole-file row group reads into ``out`` at little extra cost.
    """
    n = pf.metadata.row_group(rg).num_rows
    reader = pf.reader
    ids = _ids_of(path, reader.read_row_group(rg, column_indices=[0]).column(0))
    target = out if out is not None else np.empty((n, IMAGE_HEIGHT, IMAGE_WIDTH), dtype=np.uint8)
    flat = target.reshape(n, N_PIXELS)
    cols = np.empty((_COLUMN_BLOCK, n), dtype=np.uint8)
    for s in range(0, N_PIXELS, _COLUMN_BLOCK):
        table = reader.read_row_group(rg, column_indices=pixel_idx[s:s + _COLUMN_BLOCK], use_threads=True)
        k = table.num_columns
        for j, col in enumerate(table.columns):
            _copy_column(path, s + j, col, cols[j])
        del table
        if n:
            # OpenCV's blocked transpose is ~10x faster than numpy's strided one for these shapes.
            flat[:, s:s + k] = cv2.transpose(cols[:k])
    return ImageBatch(ids, target)


def iter_image_batches(path: str | Path, batch_size: int = 2048) -> Iterator[ImageBatch]:
    """Stream an image parquet as :class:`ImageBatch` es of at most ``batch_size`` images, in file order.

    Memory stays at about one row group's pixels (2,048 images for files written by
    :func:`write_image_parquet`), whatever the file size.
    """
    path = Path(path)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pf = _open_parquet(path)
    pixel_idx = _pixel_indices(pf)
    try:
        for rg in range(pf.metadata.num_row_groups):
            part = _read_row_group(path, pf, rg, pixel_idx)
            for s in range(0, len(part.ids), batch_size):
                yield ImageBatch(part.ids[s:s + batch_size], part.images[s:s + batch_size])
            del part
    except (pa.ArrowException, OSError) as err:
        raise DataError(path, _damaged(err)) from None


def read_images(path: str | Path, batch_size: int = 2048) -> ImageBatch:
    """Read a whole image parquet: ids (n,) and uint8 images (n, 137, 236), checking ids are unique.

    Peak memory is the result plus ~1,000 pixel columns of one row group. ``batch_size`` is accepted for
    symmetry with :func:`iter_image_batches` and unused: row groups are decoded whole.
    """
    path = Path(path)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pf = _open_parquet(path)
    pixel_idx = _pixel_indices(pf)
    n = pf.metadata.num_rows
    images = np.empty((n, IMAGE_HEIGHT, IMAGE_WIDTH), dtype=np.uint8)
    ids = np.empty(n, dtype=object)
    start = 0
    try:
        for rg in range(pf.metadata.num_row_groups):  # decoded straight into the result
            m = pf.metadata.row_group(rg).num_rows
            if start + m > n:
                raise DataError(path, f"more rows than the {n} in the file's metadata")
            part = _read_row_group(path, pf, rg, pixel_idx, out=images[start:start + m])
            ids[start:start + m] = part.ids
            start += m
    except (pa.ArrowException, OSError) as err:
        raise DataError(path, _damaged(err)) from None
    if start != n:
        raise DataError(path, f"{start} rows decoded but the file's metadata says {n}")
    ids = ids.astype(str)
    _check_unique(path, ids)
    return ImageBatch(ids, images)


def _check_unique(path: Path, ids: np.ndarray) -> None:
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        raise DataError(path, f"{len(dup)} duplicate image_id(s), e.g. {str(dup[0])!r}")


_PARQUET_RE = re.compile(r"^(train|test)_image_data_(\d+)\.parquet$")


#: Present in a competition folder while its files are being written (``competition_folder.write_competition_files``):
#: a folder that still holds it was left by an interrupted writer.
INCOMPLETE_MARKER = ".incomplete"


def image_parquets(data_dir: str | Path, split: str) -> list[Path]:
    """The ``{split}_image_data_{k}.parquet`` files of a competition folder, in order of k."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(data_dir, "data folder not found")
    if (data_dir / INCOMPLETE_MARKER).exists():
        raise DataError(data_dir, "incomplete folder: the command writing it was interrupted (write it again)")
    found = []
    for p in data_dir.iterdir():
        m = _PARQUET_RE.match(p.name)
        if m and m.group(1) == split:
            found.append((int(m.group(2)), p))
    if not found:
        raise DataError(data_dir, f"no {split}_image_data_*.parquet files in this folder")
    return [p for _, p in sorted(found)]


#: The csv files a competition folder is read from (with its parquets): what no output may replace.
DATA_CSVS = ("train.csv", "test.csv", "class_map.csv", "sample_submission.csv", "test_labels.csv")


def data_files(data_dir: str | Path) -> list[Path]:
    """The competition files present in ``data_dir`` (csv files and image parquets): a command's inputs."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        return []
    return sorted(p for p in data_dir.iterdir() if p.name in DATA_CSVS or _PARQUET_RE.match(p.name))


def _read_csv(path: str | Path, columns: list[str], dtypes: dict) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        header = pd.read_csv(path, nrows=0).columns.tolist()
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DataError(path, f"not a readable csv file ({err})") from None
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(path, f"missing column(s) {', '.join(missing)} (found {', '.join(header)})")
    try:
        df = pd.read_csv(path, dtype={c: t for c, t in dtypes.items() if c in header}, keep_default_na=False,
                         na_values={c: [""] for c in dtypes if dtypes[c] is not str})
    except (ValueError, pd.errors.ParserError) as err:
        raise DataError(path, f"bad value ({err})") from None
    return df


def read_train_csv(path: str | Path) -> pd.DataFrame:
    """Read ``train.csv``: image_id (str), the three labels (int64, range-checked), grapheme (str, optional)."""
    path = Path(path)
    cols = ["image_id", *COMPONENTS]
    df = _read_csv(path, cols, {"image_id": str, "grapheme": str, **{c: "float64" for c in COMPONENTS}})
    for name, n in zip(COMPONENTS, N_CLASSES):
        vals = df[name].to_numpy()
        if np.isnan(vals).any():
            raise DataError(path, f"column {name} has missing values")
        if (vals != np.round(vals)).any() or (vals < 0).any() or (vals >= n).any():
            bad = vals[(vals != np.round(vals)) | (vals < 0) | (vals >= n)][0]
            raise DataError(path, f"label out of range in {name}: {bad:g} (expected 0..{n - 1})")
        df[name] = vals.astype(np.int64)
    if df["image_id"].duplicated().any():
        raise DataError(path, f"duplicate image_id {df.loc[df.image_id.duplicated(), 'image_id'].iloc[0]!r}")
    return df


def read_test_csv(path: str | Path) -> pd.DataFrame:
    """Read ``test.csv`` (row_id, image_id, component), checking components and unique row ids."""
    path = Path(path)
    df = _read_csv(path, ["row_id", "image_id", "component"], {"row_id": str, "image_id": str, "component": str})
    bad = set(df["component"]) - set(COMPONENTS)
    if bad:
        raise DataError(path, f"unknown component(s) {sorted(bad)}")
    if df["row_id"].duplicated().any():
        raise DataError(path, f"duplicate row_id {df.loc[df.row_id.duplicated(), 'row_id'].iloc[0]!r}")
    return df


def read_sample_submission(path: str | Path) -> pd.DataFrame:
    """Read ``sample_submission.csv`` (row_id, target)."""
    return _read_csv(path, ["row_id", "target"], {"row_id": str, "target": "int64"})


def check_labels_match_images(labels: pd.DataFrame, image_ids: np.ndarray, labels_path: str | Path) -> None:
    """Raise if an image_id in the labels has no image (images without labels are allowed)."""
    missing = ~pd.Index(labels["image_id"]).isin(pd.Index(image_ids))
    if missing.any():
        ex = labels["image_id"].to_numpy()[missing][0]
        raise DataError(labels_path, f"{int(missing.sum())} image_id(s) have no image in the parquets, e.g. {ex!r}")


def labels_array(labels: pd.DataFrame) -> np.ndarray:
    """The three label columns as an int64 array (N, 3) in ``COMPONENTS`` order."""
    return labels[list(COMPONENTS)].to_numpy(dtype=np.int64)


def _check_image_batch(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (IMAGE_HEIGHT, IMAGE_WIDTH):
        raise ValueError(f"images must be uint8 (n, {IMAGE_HEIGHT}, {IMAGE_WIDTH}), got {images.dtype} {images.shape}")
    return images


def _pixel_columns(images: np.ndarray) -> np.ndarray:
    """(n, 137, 236) -> (32332, n): one row per pixel column of the parquet."""
    rows = images.reshape(len(images), N_PIXELS)
    cols = np.empty((N_PIXELS, len(images)), dtype=np.uint8)
    # transpose in blocks of pixel columns: a plain strided copy thrashes the cache and costs ~1 ms/image
    for p in range(0, N_PIXELS, 256):
        cols[p:p + 256] = rows[:, p:p + 256].T
    return cols


def write_image_parquet(path: str | Path, ids, images, row_group_size: int = 2048) -> None:
    """Write images with their ids as a competition-format parquet, atomically (the kit's one parquet writer).

    ``images``: uint8 (n, 137, 236), or an iterable of such arrays in row order (streamed, e.g. as they are
    rendered: at most one row group is held). Row groups of ``row_group_size`` images (the last one
    smaller); no column statistics (32,332 columns: they cost time and nobody reads them).
    """
    path = Path(path)
    ids = [str(i) for i in ids]
    if isinstance(images, np.ndarray) or not hasattr(images, "__iter__"):
        images = _check_image_batch(images)
        if len(ids) != len(images):
            raise ValueError(f"{len(ids)} ids for {len(images)} images")
        batches = [images]
    else:
        batches = images
    schema = pa.schema([("image_id", pa.string())] + [(c, pa.uint8()) for c in PIXEL_COLUMNS])

    def write_group(writer: pq.ParquetWriter, start: int, group: np.ndarray) -> None:
        arrays = [pa.array(ids[start:start + len(group)], type=pa.string())]
        arrays += [pa.array(c) for c in _pixel_columns(group)]
        writer.write_table(pa.Table.from_arrays(arrays, schema=schema))

    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, schema, compression="snappy", write_statistics=False) as writer:
            pending: list[np.ndarray] = []
            n_pending = written = 0
            for batch in batches:
                batch = _check_image_batch(batch)
                if written + n_pending + len(batch) > len(ids):
                    raise ValueError(f"{len(ids)} ids for more images")
                pending.append(batch)
                n_pending += len(batch)
                while n_pending >= row_group_size:
                    group = np.concatenate(pending) if len(pending) > 1 else pending[0]
                    write_group(writer, written, group[:row_group_size])
                    written += row_group_size
                    rest = group[row_group_size:]
                    pending, n_pending = ([rest] if len(rest) else []), len(rest)
            if n_pending or written == 0:  # an empty split still gets a valid (empty) parquet
                group = np.concatenate(pending) if pending else np.zeros((0, IMAGE_HEIGHT, IMAGE_WIDTH), np.uint8)
                write_group(writer, written, group)
                written += len(group)
            if written != len(ids):
                raise ValueError(f"{len(ids)} ids for {written} images")
