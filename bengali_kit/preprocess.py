"""The Iafoss crop/resize of competition images, fast and blank-safe, and the uint8 cache it fills.

One image (``crop_resize``): invert (ink bright on black), scale so the brightest pixel is 255, find the
bounding box of pixels > 80 ignoring a 5 px frame (scans often have lines at their edges), widen it by
13 px in x and 10 px in y, zero pixels < 28 (faint noise), pad to a centred square of side
max(w, h) + 16, and resize to ``size`` with OpenCV (``INTER_LINEAR`` by default, as in Iafoss's kernel;
``interpolation="area"`` averages when shrinking a lot, e.g. to 64 px, at about 5× the resize cost).

Two deliberate differences from the public kernel: the box found inside the 5 px frame is shifted back
into image coordinates (the kernel uses it unshifted, so its crops sit 5 px up and left) and its far
edge is inclusive; the square is exactly square (the kernel pads ``(l - w) // 2`` on both sides, one
pixel short when ``l - w`` is odd). An image with no ink (all white, or ink only inside the frame)
becomes all zeros and is counted as blank instead of crashing.

The batch path gives the same bytes as the per-image reference (``crop_resize_reference``): it folds
invert, scale and noise removal into one 256-entry lookup table per image, finds every box of a batch
with row/column minima of the raw pixels, and runs OpenCV per image only for the table, the border and
the resize. ``build_cache`` streams the parquets of a split through a thread pool, chunk by chunk, into
``<out>/<split>_<size>.npy`` (uint8, N×S×S) and ``<out>/<split>_<size>_ids.csv``, with a JSON manifest
that makes an up-to-date cache be reused.
"""
from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import os
import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from . import data
from .errors import DataError
from .files import atomic_path, atomic_write_text, hold_lock

__all__ = [
    "CropParams", "CacheInfo", "crop_resize", "crop_resize_reference", "crop_resize_batch", "build_cache",
    "load_cache", "iter_preprocessed", "cache_paths", "INTERPOLATIONS", "check_split",
]

MANIFEST_VERSION = 1

# Names rather than cv2 flags so the parameters stay plain JSON in manifests and checkpoints.
INTERPOLATIONS = {"area": 3, "linear": 1, "cubic": 2, "nearest": 0, "lanczos": 4}  # cv2.INTER_* values


@dataclasses.dataclass(frozen=True)
class CropParams:
    """Parameters of the crop/resize (defaults: Iafoss's kernel). ``asdict()`` goes into checkpoints."""

    threshold: int = 80  # bounding box of (scaled) pixels > threshold
    border: int = 5  # ignore this many pixels at each edge when finding the box
    pad_x: int = 13  # widen the box by this much left and right (clipped to the image)
    pad_y: int = 10  # ... and up and down
    noise: int = 28  # pixels < noise inside the box become 0
    margin: int = 16  # square side = max(box w, box h) + margin
    interpolation: str = "linear"  # cv2.resize interpolation: area | linear | cubic | nearest | lanczos

    def __post_init__(self) -> None:
        for name in ("threshold", "border", "pad_x", "pad_y", "noise", "margin"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"crop parameter {name} must be an integer >= 0, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.threshold > 254:
            raise ValueError(f"crop parameter threshold must be <= 254, got {self.threshold}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {sorted(INTERPOLATIONS)}, got {self.interpolation!r}")

    def asdict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def make(cls, params: CropParams | dict | None = None, **kwargs: Any) -> CropParams:
        """Build from a ``CropParams``, a dict (e.g. from a checkpoint) and/or keyword overrides."""
        base = params.asdict() if isinstance(params, CropParams) else dict(params or {})
        base.update(kwargs)
        unknown = set(base) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown crop parameter(s) {', '.join(sorted(unknown))}")
        return cls(**base)


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    return int(size)


def _check_images(images: np.ndarray, ndim: int) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != ndim:
        what = "an image (H, W)" if ndim == 2 else "images (N, H, W)"
        raise ValueError(f"expected {what} of uint8, got {images.dtype} with shape {images.shape}")
    return images


# ---------------------------------------------------------------- reference (one image, plain numpy)
def crop_resize_reference(image: np.ndarray, size: int = 128, **params: Any) -> np.ndarray:
    """The crop/resize of one raw image (dark ink on white) written as a straightforward loop body.

    The specification the fast path is tested against; slow (a few full-image float passes).
    """
    p = CropParams.make(**params)
    size = _check_size(size)
    image = _check_images(image, 2)
    blank = np.zeros((size, size), dtype=np.uint8)
    inverted = 255 - image
    top = int(inverted.max())
    if top == 0:
        return blank
    scaled = (inverted * (255.0 / top)).astype(np.uint8)
    h, w = scaled.shape
    b = p.border
    ink = scaled[b:h - b, b:w - b] > p.threshold
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if rows.size == 0:
        return blank
    y0, y1 = max(rows[0] + b - p.pad_y, 0), min(rows[-1] + b + 1 + p.pad_y, h)
    x0, x1 = max(cols[0] + b - p.pad_x, 0), min(cols[-1] + b + 1 + p.pad_x, w)
    crop = scaled[y0:y1, x0:x1].copy()
    crop[crop < p.noise] = 0
    ch, cw = crop.shape
    side = max(ch, cw) + p.margin
    top_pad, left_pad = (side - ch) // 2, (side - cw) // 2
    square = np.pad(crop, ((top_pad, side - ch - top_pad), (left_pad, side - cw - left_pad)))
    return cv2.resize(square, (size, size), interpolation=INTERPOLATIONS[p.interpolation])


# ---------------------------------------------------------------- fast batch path
_LEVELS = 255 - np.arange(256, dtype=np.int64)  # inverted value of each raw pixel value


def _crop_chunk(images: np.ndarray, size: int, p: CropParams) -> tuple[np.ndarray, int]:
    """Crop/resize a (n, H, W) uint8 chunk in this process; returns (n, size, size) and the blank count."""
    n, h, w = images.shape
    out = np.zeros((n, size, size), dtype=np.uint8)
    if n == 0:
        return out, 0
    b = p.border
    top = 255 - images.reshape(n, -1).min(axis=1).astype(np.int64)  # brightest inverted pixel per image
    nonzero = top > 0
    # Per image, the scaled value of each raw level, computed exactly as the reference does
    # (uint8 level * float64 factor, truncated), so both paths give identical bytes.
    factor = np.where(nonzero, 255.0 / np.maximum(top, 1), 0.0)
    # Levels above an image's brightest value never occur in it; capping them keeps the table monotonic.
    levels = np.minimum(_LEVELS[None, :], top[:, None])
    scaled = (levels * factor[:, None]).astype(np.uint8)  # (n, 256), non-increasing in raw level
    # scaled > threshold holds for raw levels 0..k-1: a raw pixel is ink iff it is < k.
    k = (scaled > p.threshold).sum(axis=1)
    luts = np.where(scaled < p.noise, 0, scaled).astype(np.uint8)
    inner = images[:, b:h - b, b:w - b]
    if inner.size:
        row_hit = inner.min(axis=2) < k[:, None]
        col_hit = inner.min(axis=1) < k[:, None]
        found = row_hit.any(axis=1) & nonzero
    else:
        found = np.zeros(n, dtype=bool)
    n_blank = int(n - found.sum())
    if not found.any():
        return out, n_blank
    r0, r1 = row_hit.argmax(axis=1), row_hit.shape[1] - 1 - row_hit[:, ::-1].argmax(axis=1)
    c0, c1 = col_hit.argmax(axis=1), col_hit.shape[1] - 1 - col_hit[:, ::-1].argmax(axis=1)
    y0, y1 = np.maximum(r0 + b - p.pad_y, 0), np.minimum(r1 + b + 1 + p.pad_y, h)
    x0, x1 = np.maximum(c0 + b - p.pad_x, 0), np.minimum(c1 + b + 1 + p.pad_x, w)
    interp = INTERPOLATIONS[p.interpolation]
    for i in np.flatnonzero(found):
        crop = cv2.LUT(images[i, y0[i]:y1[i], x0[i]:x1[i]], luts[i])
        ch, cw = crop.shape
        side = max(ch, cw) + p.margin
        t, left = (side - ch) // 2, (side - cw) // 2
        square = cv2.copyMakeBorder(crop, t, side - ch - t, left, side - cw - left, cv2.BORDER_CONSTANT, value=0)
        out[i] = cv2.resize(square, (size, size), interpolation=interp)
    return out, n_blank


def crop_resize(image: np.ndarray, size: int = 128, **params: Any) -> np.ndarray:
    """Crop/resize one raw image (uint8 (H, W), dark ink on white) to uint8 (size, size), ink bright on 0.

    Parameters are those of :class:`CropParams`; a blank image gives all zeros.
    """
    image = _check_images(image, 2)
    return _crop_chunk(image[None], _check_size(size), CropParams.make(**params))[0][0]


def crop_resize_batch(images: np.ndarray, size: int = 128, *, workers: int = 1, chunk_size: int = 256,
                      **params: Any) -> tuple[np.ndarray, int]:
    """Crop/resize uint8 images (N, H, W) to (N, size, size); returns them and the number of blank images.

    ``workers`` > 1 splits the batch into chunks of ``chunk_size`` over that many threads (the heavy
    numpy/OpenCV calls release the GIL).
    """
    images = _check_images(images, 3)
    size, p = _check_size(size), CropParams.make(**params)
    workers = _check_workers(workers)
    if workers == 1 or len(images) <= chunk_size:
        return _crop_chunk(images, size, p)
    out = np.empty((len(images), size, size), dtype=np.uint8)
    n_blank = 0
    with _make_pool(workers) as pool:
        starts = range(0, len(images), chunk_size)
        futures = [pool.submit(_crop_chunk, images[s:s + chunk_size], size, p) for s in starts]
        for s, fut in zip(starts, futures):
            res, blanks = fut.result()
            out[s:s + len(res)] = res
            n_blank += blanks
    return out, n_blank


# ---------------------------------------------------------------- streaming over parquets
def _check_workers(workers: int | None) -> int:
    if workers is None:
        return max(os.cpu_count() or 1, 1)
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    return int(workers)


def _make_pool(workers: int) -> ThreadPoolExecutor:
    # Threads, not processes: numpy's reductions and OpenCV's LUT/border/resize release the GIL, so
    # chunks crop in parallel without pickling every image to a worker and back (which cost as much as
    # the crop itself), and nothing is forked from a process whose OpenCV/pyarrow thread pools run.
    return ThreadPoolExecutor(workers, thread_name_prefix="crop")


class _InProcess(Executor):
    """Executor running tasks at submit time: workers=1 without a pool."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as err:  # handed to the caller through the future, as a pool would
            fut.set_exception(err)
        return fut


def _stream(paths: list[Path], size: int, p: CropParams, workers: int, batch_size: int,
            chunk_size: int) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """Yield (ids, images (n, size, size), n_blank) per parquet batch, in file order.

    The reader (this process) decodes batch k+1 while the pool crops batch k's chunks, so at most two
    raw batches are in memory at once.
    """
    pool: Executor = _make_pool(workers) if workers > 1 else _InProcess()
    pending: collections.deque = collections.deque()

    def drain() -> tuple[np.ndarray, np.ndarray, int]:
        ids, futures = pending.popleft()
        parts = [f.result() for f in futures]
        images = np.concatenate([im for im, _ in parts]) if parts else np.zeros((0, size, size), np.uint8)
        return ids, images, sum(nb for _, nb in parts)

    try:
        for path in paths:
            for batch in data.iter_image_batches(path, batch_size=batch_size):
                futures = [pool.submit(_crop_chunk, batch.images[s:s + chunk_size], size, p)
                           for s in range(0, len(batch.ids), chunk_size)]
                pending.append((batch.ids, futures))
                del batch
                if len(pending) > 1:
                    yield drain()
        while pending:
            yield drain()
    finally:
        for _, futures in pending:
            for f in futures:
                f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def iter_preprocessed(data_dir: str | Path, split: str, size: int = 128, batch_size: int = 2048, *,
                      workers: int | None = None, chunk_size: int = 256,
                      **params: Any) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Stream ``(ids, uint8 (n, size, size))`` over all parquets of a split (k order), writing nothing.

    For inference on the hidden test set: memory stays at a couple of batches.
    """
    size, p, workers = _check_size(size), CropParams.make(**params), _check_workers(workers)
    if batch_size < 1 or chunk_size < 1:
        raise ValueError(f"batch_size and chunk_size must be >= 1, got {batch_size}, {chunk_size}")
    for ids, images, _ in _stream(data.image_parquets(data_dir, split), size, p, workers, batch_size, chunk_size):
        yield ids, images


# ---------------------------------------------------------------- the cache
@dataclasses.dataclass
class CacheInfo:
    """What ``build_cache`` wrote (or found up to date)."""

    split: str
    size: int
    images_path: Path
    ids_path: Path
    manifest_path: Path
    n_images: int
    n_blank: int
    seconds: float  # time spent preprocessing now (0 when reused)
    reused: bool
    params: dict[str, Any]

    @property
    def images_per_s(self) -> float:
        return self.n_images / self.seconds if self.seconds > 0 else float("nan")


def cache_paths(out_dir: str | Path, split: str, size: int) -> tuple[Path, Path, Path]:
    """``(<split>_<size>.npy, <split>_<size>_ids.csv, <split>_<size>.json)`` in ``out_dir``."""
    out_dir = Path(out_dir)
    stem = f"{split}_{size}"
    return out_dir / f"{stem}.npy", out_dir / f"{stem}_ids.csv", out_dir / f"{stem}.json"


def folder_cache_dir(cache_dir: str | Path, data_dir: str | Path, size: int, split: str = "train") -> Path:
    """Where the ``split`` cache of ``data_dir`` lives in a cache folder that several data folders share.

    ``cache_dir`` itself when its cache was made from this folder's parquets (e.g. by ``bengali-kit preprocess
    --out cache_dir``), else ``cache_dir/<folder name>-<hash of its path>``: two data folders never share one
    cache file, which each would rebuild in turn (under the other's running job, too).
    """
    cache_dir = Path(cache_dir)
    manifest = _read_manifest(cache_paths(cache_dir, split, size)[2]) or {}
    made_from = [s.get("path") for s in manifest.get("sources", []) if isinstance(s, dict)]
    if made_from and made_from == [s["path"] for s in _sources(data.image_parquets(data_dir, split))]:
        return cache_dir
    folder = Path(data_dir).resolve()
    return cache_dir / f"{folder.name}-{hashlib.sha1(str(folder).encode()).hexdigest()[:8]}"


def _sources(paths: list[Path]) -> list[dict[str, Any]]:
    out = []
    for p in paths:
        st = p.stat()
        out.append({"path": str(p.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


def _read_manifest(path: Path) -> dict | None:
    """A cache manifest's contents, or None when it is missing or unreadable."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _up_to_date(manifest_path: Path, images_path: Path, ids_path: Path, expected: dict[str, Any]) -> dict | None:
    manifest = _read_manifest(manifest_path)
    if manifest is None:
        return None
    if any(manifest.get(k) != v for k, v in expected.items()):
        return None
    try:
        arr = np.load(images_path, mmap_mode="r")
    except (OSError, ValueError):
        return None
    n = manifest.get("n_images")
    if arr.dtype != np.uint8 or arr.shape != (n, expected["size"], expected["size"]) or not ids_path.is_file():
        return None
    return manifest


def build_cache(data_dir: str | Path, split: str, size: int = 128, out_dir: str | Path | None = None, *,
                workers: int | None = None, progress: bool = True, batch_size: int = 2048, chunk_size: int = 256,
                force: bool = False, **params: Any) -> CacheInfo:
    """Preprocess every ``{split}_image_data_{k}.parquet`` of ``data_dir`` into a uint8 cache.

    Writes ``<out_dir>/<split>_<size>.npy`` (N×size×size, parquets concatenated in k order),
    ``<split>_<size>_ids.csv`` (column image_id) and ``<split>_<size>.json`` (manifest), each atomically.
    An existing cache whose manifest matches the sources (paths, sizes, mtimes) and parameters is reused
    unless ``force``. ``out_dir`` defaults to ``<data_dir>/cache``; ``workers`` to the number of CPUs.
    """
    size, p, workers = _check_size(size), CropParams.make(**params), _check_workers(workers)
    if batch_size < 1 or chunk_size < 1:
        raise ValueError(f"batch_size and chunk_size must be >= 1, got {batch_size}, {chunk_size}")
    paths = data.image_parquets(data_dir, split)
    out_dir = Path(out_dir) if out_dir is not None else Path(data_dir) / "cache"
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(out_dir, "exists and is not a folder")
    images_path, ids_path, manifest_path = cache_paths(out_dir, split, size)
    expected = {"version": MANIFEST_VERSION, "split": split, "size": size, "params": p.asdict(),
                "sources": _sources(paths)}
    if not force:
        manifest = _up_to_date(manifest_path, images_path, ids_path, expected)
        if manifest is not None:
            return CacheInfo(split, size, images_path, ids_path, manifest_path, manifest["n_images"],
                             manifest["n_blank"], 0.0, True, p.asdict())

    total = check_split(data_dir, split)
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with hold_lock(images_path):  # one writer per cache file: a second process refuses, naming the holder
            return _write_cache(paths, data_dir, split, size, p, out_dir, expected, total, workers, progress,
                                batch_size, chunk_size)
    except BaseException:
        if created and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()  # a failed first build (a full disk, Ctrl-C) leaves no empty folder behind
        raise


def check_split(data_dir: str | Path, split: str) -> int:
    """The number of images of a split's parquets (metadata only); DataError for none or a damaged file."""
    paths = data.image_parquets(data_dir, split)
    total = sum(data.count_images(path) for path in paths)
    if total == 0:
        raise DataError(Path(data_dir), f"the {split} parquets hold no images (0 rows): nothing to preprocess")
    return total


def _write_cache(paths: list[Path], data_dir: str | Path, split: str, size: int, p: CropParams, out_dir: Path,
                 expected: dict[str, Any], total: int, workers: int, progress: bool, batch_size: int,
                 chunk_size: int) -> CacheInfo:
    """Preprocess the parquets into the cache files (see :func:`build_cache`), under its lock."""
    images_path, ids_path, manifest_path = cache_paths(out_dir, split, size)
    # Remove the old manifest first: a crash below then leaves no manifest claiming a stale cache is valid.
    manifest_path.unlink(missing_ok=True)
    start = time.perf_counter()
    all_ids: list[np.ndarray] = []
    n_blank = written = 0
    with atomic_path(images_path) as tmp, open(tmp, "wb") as fh, \
            tqdm(total=total, desc=f"preprocess {split}", unit="img", disable=not progress) as bar:
        # Written sequentially rather than through a memmap: dirty memmap pages would count against
        # (and stay in) this process's memory for the whole file.
        np.lib.format.write_array_header_1_0(
            fh, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
                 "shape": (total, size, size)})
        for ids, images, blanks in _stream(paths, size, p, workers, batch_size, chunk_size):
            written += len(ids)
            if written > total:
                break
            fh.write(memoryview(np.ascontiguousarray(images)).cast("B"))
            all_ids.append(ids)
            n_blank += blanks
            bar.update(len(ids))
        if written != total:
            raise DataError(Path(data_dir), f"{split} parquets hold {written} images but their metadata says {total}")
        ids = np.concatenate(all_ids) if all_ids else np.zeros(0, dtype=str)
        uniq, first = np.unique(ids, return_index=True)
        if len(uniq) != len(ids):
            dup = str(ids[np.setdiff1d(np.arange(len(ids)), first)[0]])
            raise DataError(Path(data_dir), f"duplicate image_id {dup!r} across the {split} parquets")
    seconds = time.perf_counter() - start
    with atomic_path(ids_path) as tmp:
        pd.DataFrame({"image_id": ids}).to_csv(tmp, index=False)
    manifest = {**expected, "n_images": total, "n_blank": n_blank, "seconds": round(seconds, 3)}
    atomic_write_text(manifest_path, json.dumps(manifest, indent=1) + "\n")
    return CacheInfo(split, size, images_path, ids_path, manifest_path, total, n_blank, seconds, False, p.asdict())


def load_cache(out_dir: str | Path, split: str, size: int, mmap: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Read a cache written by :func:`build_cache`: (uint8 (N, size, size), memmap by default; ids str (N,))."""
    images_path, ids_path, _ = cache_paths(out_dir, split, size)
    for path in (images_path, ids_path):
        if not path.is_file():
            raise DataError(path, "cache file not found (run `bengali-kit preprocess` first)")
    try:
        images = np.load(images_path, mmap_mode="r" if mmap else None)
    except (OSError, ValueError) as err:
        raise DataError(images_path, f"not a readable .npy file ({err})") from None
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (size, size):
        raise DataError(images_path, f"expected uint8 (N, {size}, {size}), got {images.dtype} {images.shape}")
    try:
        ids = pd.read_csv(ids_path, dtype={"image_id": str}, keep_default_na=False)["image_id"].to_numpy(dtype=str)
    except (KeyError, ValueError, pd.errors.EmptyDataError) as err:
        raise DataError(ids_path, f"not a readable ids file ({err})") from None
    if len(ids) != len(images):
        raise DataError(ids_path, f"{len(ids)} ids for {len(images)} cached images")
    return images, ids
