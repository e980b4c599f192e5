"""Synthetic competition folders: real Bengali graphemes rendered with Debian fonts, distorted to look handwritten.

:func:`write_competition_folder` writes a folder with exactly the competition's files (train.csv,
train_image_data_{k}.parquet, test.csv, test_image_data_{k}.parquet, class_map.csv, sample_submission.csv)
plus ``test_labels.csv``, the answer key of the synthetic test images, through the kit's one folder writer
(:mod:`.folder`: whole or not at all). Labels follow the real (root, vowel, consonant) frequencies, so roots
are long-tailed as in the real train set.

Everything random comes from numpy Generators seeded from ``(seed, split, file, chunk)``, so the files are
byte-identical for the same seed whatever the number of worker processes. With ``holdout_fonts=True`` the
test split is rendered only with the fonts whose file name starts with one of
:data:`~.fonts.HOLDOUT_FONT_PREFIXES` (Jamrul and Noto Serif Bengali) and train only with the others (see
:func:`~.fonts.split_fonts`).
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..competition_folder import file_slices, write_competition_files, write_folders
from ..components import COMPONENTS, load_class_map, read_grapheme_counts
from ..data import IMAGE_HEIGHT, IMAGE_WIDTH
from .fonts import find_bengali_fonts, split_fonts
from .labels import sample_triples
from .renderer import GraphemeRenderer

__all__ = ["write_competition_folder", "CHUNK_ROWS", "ROW_GROUP_ROWS"]

#: Images per rendering chunk, the unit of work of a worker process with its own seed (fixed: the bytes
#: must not depend on the number of workers).
CHUNK_ROWS = 1024
#: Images per parquet row group: 32,332 column chunks per group cost ~1 KB and real work each, so
#: large groups write ~3× faster and smaller files than 1,024-row ones.
ROW_GROUP_ROWS = 4 * CHUNK_ROWS

_SPLIT_IDS = {"train": 0, "test": 1}


@dataclass(frozen=True)
class _Chunk:
    split: str
    texts: list[str]
    seed_key: tuple[int, ...]


def _render_chunk(renderer: GraphemeRenderer, texts: Sequence[str], seed_key: tuple[int, ...]) -> np.ndarray:
    """Render a chunk of images, uint8 (n, 137, 236), from its own seed."""
    rng = np.random.default_rng(np.random.SeedSequence(seed_key))
    out = np.empty((len(texts), IMAGE_HEIGHT, IMAGE_WIDTH), dtype=np.uint8)
    for j, text in enumerate(texts):
        out[j] = renderer.render(text, rng)
    return out


_WORKER_RENDERERS: dict[str, GraphemeRenderer] = {}


def _worker_init_all(renderers: dict[str, GraphemeRenderer]) -> None:
    global _WORKER_RENDERERS
    _WORKER_RENDERERS = renderers
    cv2.setNumThreads(1)  # one process per core already


def _worker_render_split(split: str, texts: Sequence[str], seed_key: tuple[int, ...]) -> np.ndarray:
    return _render_chunk(_WORKER_RENDERERS[split], texts, seed_key)


def _rendered(jobs: list[_Chunk], renderers: dict[str, GraphemeRenderer], workers: int) -> Iterator[np.ndarray]:
    """The jobs' images, in job order, rendered here or in ``workers`` processes.

    At most one row group plus ``2 * workers`` chunks are in flight, so memory stays bounded (main process
    ~1 GB, each worker ~0.3 GB) whatever the number of rows.
    """
    if workers <= 1:
        for c in jobs:
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
        for c in it:
            pending.append(ex.submit(_worker_render_split, c.split, c.texts, c.seed_key))
            if len(pending) >= window:
                break
        for c in it:
            yield pending.pop(0).result()
            pending.append(ex.submit(_worker_render_split, c.split, c.texts, c.seed_key))
        while pending:
            yield pending.pop(0).result()
    finally:  # also on an error in the writer: don't render chunks nobody will write
        ex.shutdown(wait=True, cancel_futures=True)


def _take(it: Iterator[np.ndarray], n: int) -> Iterator[np.ndarray]:
    for _ in range(n):
        yield next(it)


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
    ``if __name__ == "__main__":`` guard. Refuses a non-empty folder unless ``overwrite``, which replaces
    the folder whole; the folder appears complete at the end or not at all.
    Raises ``ValueError`` on bad sizes, ``DataError`` on an unwritable output and ``RuntimeError`` when no
    Bengali font is installed. ``fonts`` replaces :func:`~.fonts.find_bengali_fonts` (e.g. to pin the font set).
    """
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

    counts = read_grapheme_counts()
    cmap = load_class_map()
    labels_all = counts[list(COMPONENTS)].to_numpy(dtype=np.int64)
    render_texts = [cmap.compose(*map(int, t)) for t in labels_all]  # ZWJ spellings that shape correctly
    graphemes = counts["grapheme"].tolist()  # the spelling of the real train.csv

    renderers = {"train": GraphemeRenderer(train_fonts), "test": GraphemeRenderer(test_fonts)}
    jobs: list[_Chunk] = []
    chunks_per_file: dict[str, list[int]] = {}
    frames = {}
    for split, n in (("train", train_rows), ("test", test_rows)):
        sid = _SPLIT_IDS[split]
        idx = sample_triples(n, np.random.default_rng(np.random.SeedSequence((seed, sid))), counts)
        labels = labels_all[idx]
        frames[split] = pd.DataFrame({"image_id": [f"{split.capitalize()}_{i}" for i in range(n)],
                                      **{c: labels[:, j] for j, c in enumerate(COMPONENTS)}})
        if split == "train":
            frames[split]["grapheme"] = [graphemes[i] for i in idx]
        chunks_per_file[split] = []
        for k, part in enumerate(file_slices(n, files)):
            starts = range(part.start, part.stop, CHUNK_ROWS)
            for j, s in enumerate(starts):
                e = min(s + CHUNK_ROWS, part.stop)
                # seed key (seed, split, file, chunk, 1): independent of the labels' stream (seed, split)
                jobs.append(_Chunk(split, [render_texts[i] for i in idx[s:e]], (seed, sid, k, j, 1)))
            chunks_per_file[split].append(len(starts))

    if workers is None:
        # beyond ~3 renderers the main process (parquet encoding, ~0.5 ms/image) is the bottleneck
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        workers = 1 if train_rows + test_rows <= 4 * CHUNK_ROWS else min(cpus, 3, len(jobs))

    def write(tmp: Path) -> None:
        with tqdm(total=train_rows + test_rows, desc="synth", unit="img", disable=not progress) as bar:
            res = _rendered(jobs, renderers, max(1, int(workers)))
            try:
                # the files consume the rendered chunks in job order: train files, then test files
                images = {split: [_take(res, m) for m in chunks_per_file[split]] for split in ("train", "test")}
                write_competition_files(tmp, frames["train"], frames["test"], images["train"], images["test"],
                                        files, row_group_size=ROW_GROUP_ROWS, on_images=bar.update)
            finally:
                res.close()

    return write_folders(out_dir, overwrite, write)
