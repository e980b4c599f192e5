"""Small helpers the notebooks share: the data folder (real, or synthetic made on the fly), image samples,
and a checkpoint to run inference with. Kept here so the notebooks' cells only call the kit and show results.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from . import plots
from .competition_folder import write_competition_files, write_folders
from .components import COMPONENTS, ClassMap
from .data import image_parquets, iter_image_batches, read_train_csv
from .errors import DataError
from .synthetic import SyntheticGraphemes, novel_triples, write_competition_folder
from .train import train

__all__ = ["prepare_data", "sample_images", "checkpoint_or_train", "find_file", "predicted_labels",
           "show_predictions", "render_novel_triples", "write_labelled_folder", "REPO_CANDIDATES"]

#: Files a finished synthetic folder has (write_competition_folder writes the csv files first).
_SYNTH_DONE = ("train.csv", "test.csv", "class_map.csv", "sample_submission.csv", "test_labels.csv")


def prepare_data(data_dir: str | Path | None, work_dir: str | Path, train_rows: int = 600, test_rows: int = 48,
                 seed: int = 0, files: int = 2, progress: bool = True) -> Path:
    """The competition folder to use: ``data_dir`` when given (checked), else a synthetic one.

    The synthetic folder ``<work_dir>/synth_<train>_<test>_s<seed>`` is written once (into a temporary
    folder renamed when complete, so an interrupted run never leaves a half folder that looks usable)
    and reused by every notebook with the same settings.
    """
    if data_dir is not None:
        data_dir = Path(data_dir)
        if not (data_dir / "train.csv").is_file() and not (data_dir / "test.csv").is_file():
            raise DataError(data_dir, "not a competition folder (no train.csv or test.csv)")
        return data_dir
    out = Path(work_dir) / f"synth_{train_rows}_{test_rows}_s{seed}"
    if all((out / f).is_file() for f in _SYNTH_DONE) and any(out.glob("test_image_data_*.parquet")):
        return out
    tmp = out.with_name(out.name + ".partial")
    write_competition_folder(tmp, train_rows=train_rows, test_rows=test_rows, seed=seed, files=files,
                             overwrite=True, progress=progress, workers=1)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def sample_images(data_dir: str | Path, split: str = "train",
                  n: int = 1000) -> tuple[np.ndarray, np.ndarray, pd.DataFrame | None]:
    """The first ``n`` images of a split (parquets in order, streamed): ``(ids, uint8 (n, 137, 236), labels)``.

    ``labels``: the train.csv rows of those ids in the same order (for ``"train"``), else the synthetic
    answer key ``test_labels.csv`` when the folder has one, else None. Train rows are in random label
    order in the competition files, so the first rows are a fair sample.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    data_dir = Path(data_dir)
    ids, images, got = [], [], 0
    for path in image_parquets(data_dir, split):
        for batch in iter_image_batches(path, batch_size=min(n, 2048)):
            take = min(n - got, len(batch.ids))
            ids.append(batch.ids[:take])
            images.append(batch.images[:take])
            got += take
            if got >= n:
                break
        if got >= n:
            break
    ids_arr, images_arr = np.concatenate(ids), np.concatenate(images)
    labels = None
    if split == "train":
        labels = read_train_csv(data_dir / "train.csv").set_index("image_id").loc[ids_arr].reset_index()
    elif (data_dir / "test_labels.csv").is_file():
        key = pd.read_csv(data_dir / "test_labels.csv", dtype={"image_id": str}).set_index("image_id")
        labels = key.reindex(ids_arr).reset_index() if set(ids_arr) <= set(key.index) else None
    return ids_arr, images_arr, labels


def checkpoint_or_train(checkpoint: str | Path | None, search: list[str | Path], cfg=None) -> Path:
    """A checkpoint for inference: ``checkpoint`` if given, else the first existing path in ``search``,
    else a model trained now with ``cfg`` (a ``TrainConfig``; its run folder's best.pt)."""
    if checkpoint is not None:
        path = Path(checkpoint)
        if not path.is_file():
            raise DataError(path, "checkpoint not found")
        return path
    for candidate in search:
        if Path(candidate).is_file():
            return Path(candidate)
    if cfg is None:
        raise DataError(Path(search[0]) if search else Path("."), "no checkpoint found and nothing to train")
    return Path(train(cfg)) / "best.pt"


#: Where a checkout keeps what the notebooks look for: the repository root (bengali_kit/ is inside it), the
#: current folder and its parent (notebooks/ runs from notebooks/), and the real reference data beside it.
REPO_CANDIDATES = (Path(__file__).resolve().parents[1], Path.cwd(), Path.cwd().parent)


def find_file(*relative: str, roots: tuple = REPO_CANDIDATES) -> Path | None:
    """The first existing ``root / rel`` for the given relative paths (in order) and roots, else None.

    E.g. ``find_file("weights/synth-b0-96.pt")`` or ``find_file("../shared/reference/real_sample_64.npz",
    "tests/data/real_slice_64.npz")``: the full real sample beside a checkout, else the vendored slice.
    """
    for rel in relative:
        for root in roots:
            path = (Path(root) / rel).resolve()
            if path.is_file():
                return path
    return None


def predicted_labels(prediction, ids) -> np.ndarray:
    """The labels (N, 3) that ``prediction`` (a ``PredictionResult``) gives the images ``ids``, in that order."""
    position = pd.Series(np.arange(len(prediction.image_ids)), index=prediction.image_ids)
    return prediction.labels[position.loc[list(ids)].to_numpy()]


def show_predictions(images: np.ndarray, ids, prediction, truth: np.ndarray | None, class_map: ClassMap,
                     title: str, ncols: int = 8):
    """Images under the graphemes that ``prediction`` (a ``PredictionResult`` covering ``ids``) composes for
    them; with ``truth``, green when all three components are right and red otherwise, the true labels below."""
    pred = predicted_labels(prediction, ids)
    texts = [class_map.compose(*map(int, p)) for p in pred]
    captions = [f"{i}: {'-'.join(map(str, p))}" for i, p in zip(ids, pred)]
    colors = None
    if truth is not None:
        truth = np.asarray(truth)
        colors = ["green" if ok else "red" for ok in (truth == pred).all(axis=1)]
        captions = [f"{c}\ntrue {'-'.join(map(str, t))}" for c, t in zip(captions, truth)]
    return plots.plot_labelled_images(images, texts, captions, colors, ncols=ncols, title=title)


def render_novel_triples(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` valid (root, vowel, consonant) triples absent from the real train set (``novel_triples``), drawn
    with ``seed``, and their images rendered by the kit's synthetic generator: ``(int64 (n, 3), uint8 (n, 137,
    236))``, dark ink on white like competition images. RuntimeError (one line) when no Bengali font is installed.
    """
    novel = novel_triples()
    triples = novel[np.sort(np.random.default_rng(seed).choice(len(novel), size=min(n, len(novel)), replace=False))]
    stream = SyntheticGraphemes(seed=seed)
    return triples, np.stack([stream.render_labels(t, k) for k, t in enumerate(triples)])


def write_labelled_folder(out_dir: str | Path, images: np.ndarray, labels: np.ndarray, prefix: str = "Image") -> Path:
    """A competition folder (replaced whole if it exists) whose train and test splits both hold ``images``
    (uint8 (N, 137, 236)) labelled ``labels`` (N, 3), ids ``<prefix>_<k>``: ``evaluate(..., all_images=True)``
    then scores them through the kit's own prediction path (crop, resize, any prior correction)."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1, 3)
    frame = pd.DataFrame(labels, columns=list(COMPONENTS))
    frame.insert(0, "image_id", [f"{prefix}_{k}" for k in range(len(labels))])
    return write_folders(out_dir, True, lambda tmp: write_competition_files(tmp, frame, frame, images, images, 1))
