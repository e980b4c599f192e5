"""Prediction over image parquets, the submission file, and scoring a checkpoint on labelled images.

The test parquets are streamed batch by batch (the hidden test set is about as large as train: ~200k
images, 6.5 GB of pixels) and each batch is cropped/resized with the parameters stored in the checkpoint,
i.e. exactly as the training cache was made. A background thread reads and preprocesses the next batch
while the model runs on the current one. Several checkpoints are averaged in probability space; models
with different image sizes or crop parameters each get their own preprocessed copy of the batch.

Submission rows are filled by looking up each test.csv row's ``image_id`` and ``component`` — never by
position — so the row order and the component of every prediction are those of test.csv.
"""
from __future__ import annotations

import json
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

from .components import COMPONENTS, N_CLASSES
from .errors import DataError
from .files import atomic_path

__all__ = [
    "PredictionResult", "EvaluationResult", "predict", "predict_to_submission", "make_submission",
    "write_submission", "evaluate", "resolve_device", "TTA_VIEWS",
]

#: Rows read from a parquet at a time (about 66 MB of raw pixels).
READ_BATCH = 2048

#: Flip-free test-time augmentation: (scale, shift_x, shift_y) of each view, shifts as a fraction of the
#: image side. No flips: mirrored Bengali graphemes are other (or no) characters.
TTA_VIEWS: tuple[tuple[float, float, float], ...] = (
    (1.0, 0.0, 0.0), (0.9, 0.0, 0.0), (1.0, 0.04, 0.04), (1.0, -0.04, -0.04),
)


# ----------------------------------------------------------------------------------------- results
@dataclass
class PredictionResult:
    """Predictions for a stream of images.

    ``image_ids`` (str, (N,)) in parquet order; ``probabilities[component]`` float32 (N, n_classes)
    averaged over checkpoints (and TTA views); ``labels`` int64 (N, 3) argmax in ``COMPONENTS`` order.
    """

    image_ids: np.ndarray
    probabilities: dict[str, np.ndarray]
    labels: np.ndarray
    seconds: float
    device: str = "cpu"
    n_models: int = 1
    tta: bool = False
    n_blank: int = 0

    @property
    def n_images(self) -> int:
        return len(self.image_ids)

    @property
    def images_per_second(self) -> float:
        return self.n_images / self.seconds if self.seconds > 0 else float("inf")

    def summary(self) -> str:
        extra = f", {self.n_blank} blank image(s)" if self.n_blank else ""
        return (f"predicted {self.n_images} images in {self.seconds:.1f} s ({self.images_per_second:.1f} images/s) "
                f"on {self.device} with {self.n_models} model(s){' + TTA' if self.tta else ''}{extra}")


@dataclass
class EvaluationResult:
    """Scores of a checkpoint on labelled images: the competition metric and where it fails."""

    scores: dict[str, float]  # COMPONENTS + "weighted"
    per_class: pd.DataFrame  # metrics.per_class_recall
    n_images: int
    subset: str  # which images were scored, in words
    prediction: PredictionResult
    y_true: np.ndarray = field(repr=False, default=None)

    def worst_classes(self, n: int = 10) -> pd.DataFrame:
        """The ``n`` classes (any component) with the lowest recall among those present."""
        df = self.per_class[self.per_class["support"] > 0]
        return df.sort_values(["recall", "support"], ascending=[True, False]).head(n).reset_index(drop=True)

    def summary(self, worst: int = 10) -> str:
        s = self.scores
        lines = [f"scored {self.n_images} labelled images ({self.subset})",
                 f"  weighted recall      {s['weighted']:.4f}"]
        lines += [f"  {c:<20} {s[c]:.4f}" for c in COMPONENTS]
        if worst:
            lines.append("  worst classes (recall, support):")
            for r in self.worst_classes(worst).itertuples():
                lines.append(f"    {r.component:<20} {int(r.label):>3}  {r.recall:.3f}  {int(r.support)}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------- models
def resolve_device(device: str = "auto"):
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    import torch

    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but CUDA is not available here")
    return dev


@dataclass
class _Group:
    """Models that share one preprocessing (image size + crop parameters)."""

    size: int
    params: dict
    models: list = field(default_factory=list)


def _freeze(d: Any) -> str:
    return json.dumps(d, sort_keys=True, default=str)


def _load_groups(checkpoints: Sequence[str | Path], device) -> list[_Group]:
    from .model import load_model

    if isinstance(checkpoints, (str, Path)):
        checkpoints = [checkpoints]
    if not checkpoints:
        raise ValueError("at least one checkpoint is needed")
    groups: dict[tuple, _Group] = {}
    for path in checkpoints:
        model, ckpt = load_model(path, map_location="cpu")
        size = ckpt.get("image_size")
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise DataError(path, f"checkpoint has no valid 'image_size' ({size!r}); cannot preprocess "
                                  "test images like its training images")
        n_classes = tuple(int(n) for n in model.cfg.n_classes)
        if n_classes != tuple(N_CLASSES):
            raise DataError(path, f"model predicts {n_classes} classes, the competition has {tuple(N_CLASSES)}")
        params = ckpt.get("preprocess") or {}
        if not isinstance(params, dict):
            raise DataError(path, f"checkpoint 'preprocess' must be a dict of crop parameters, got {type(params).__name__}")
        try:
            from .preprocess import CropParams

            params = CropParams.make(**params).asdict()
        except (TypeError, ValueError) as err:
            raise DataError(path, f"checkpoint crop parameters do not fit this bengali_kit: {err}") from None
        model.to(device).eval()
        if device.type == "cuda":
            import torch
            model.to(memory_format=torch.channels_last)
        key = (size, _freeze(params))
        groups.setdefault(key, _Group(size=size, params=dict(params))).models.append(model)
    return list(groups.values())


# ----------------------------------------------------------------------------------------- streaming
def _check_parquets(data_dir: Path, split: str) -> tuple[list[Path], int]:
    from .data import count_images, image_parquets

    files = image_parquets(data_dir, split)
    total = 0
    for f in files:
        n = count_images(f)  # also validates the schema: malformed files fail before any work
        if n == 0:
            raise DataError(f, "parquet holds no images (empty file)")
        total += n
    return files, total


def _preprocess(images: np.ndarray, group: _Group, workers: int) -> tuple[np.ndarray, int]:
    from .preprocess import crop_resize_batch

    return crop_resize_batch(images, size=group.size, workers=workers, **group.params)


def _batches(data_dir: Path, split: str, files: list[Path], groups: list[_Group], keep: set | None,
             workers: int) -> Iterator[tuple[np.ndarray, list[np.ndarray], int]]:
    """Yield ``(ids, [preprocessed uint8 (n,S,S) per group], n_blank)`` over all files, in order.

    Parquets are read ``READ_BATCH`` rows at a time whatever the model's batch size: decoding costs a
    fixed amount per 32,332-column batch, so small reads would be slow.
    """
    from .data import iter_image_batches
    from .preprocess import iter_preprocessed

    if len(groups) == 1 and keep is None:
        g = groups[0]
        for ids, images in iter_preprocessed(data_dir, split, size=g.size, batch_size=READ_BATCH,
                                             workers=workers, **g.params):
            yield ids, [images], 0
        return
    for f in files:
        for batch in iter_image_batches(f, batch_size=READ_BATCH):
            ids, images = batch.ids, batch.images
            if keep is not None:
                mask = np.fromiter((i in keep for i in ids), dtype=bool, count=len(ids))
                if not mask.any():
                    continue
                ids, images = ids[mask], images[mask]
            views, blank = [], 0
            for g in groups:
                arr, nb = _preprocess(images, g, workers)
                views.append(arr)
                blank = max(blank, nb)
            yield ids, views, blank


def _prefetch(it: Iterator, depth: int = 2) -> Iterator:
    """Run ``it`` in a background thread (parquet decoding and OpenCV release the GIL)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work():
        try:
            for item in it:
                if stop.is_set():
                    break
                q.put(item)
            else:
                q.put(done)
        except BaseException as err:  # noqa: BLE001 - re-raised in the consumer
            q.put(err)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()  # shut the preprocessing pool down in this thread when the consumer stops early

    t = threading.Thread(target=work, daemon=True, name="bengali-kit-prefetch")
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while t.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get(timeout=0.1)
            except queue.Empty:
                pass


def _tta_batch(x, views):
    """Stack flip-free affine views of x (B,1,S,S): returns (V*B,1,S,S); background stays 0."""
    import torch
    import torch.nn.functional as F

    b = x.shape[0]
    thetas = []
    for scale, sx, sy in views:
        # affine_grid maps output to input coordinates: sampling at coords/scale shows the content at `scale`.
        thetas.append(torch.tensor([[1.0 / scale, 0.0, -2.0 * sx / scale], [0.0, 1.0 / scale, -2.0 * sy / scale]],
                                   dtype=x.dtype, device=x.device))
    theta = torch.stack(thetas).repeat_interleave(b, dim=0)
    xs = x.repeat(len(views), 1, 1, 1)
    grid = F.affine_grid(theta, list(xs.shape), align_corners=False)
    return F.grid_sample(xs, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _run_models(group: _Group, images: np.ndarray, device, tta: bool) -> list[np.ndarray]:
    """Sum over models (and views) of the softmax, per component: float32 (n, classes) each."""
    import torch

    from .model import model_input

    x = model_input(torch.from_numpy(np.ascontiguousarray(images)).to(device, non_blocking=True))
    n = x.shape[0]
    if tta:
        x = _tta_batch(x, TTA_VIEWS)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    sums = [torch.zeros((n, k), dtype=torch.float32, device=device) for k in N_CLASSES]
    with torch.inference_mode(), torch.autocast(device_type=device.type, dtype=torch.float16,
                                                enabled=device.type == "cuda"):
        for model in group.models:
            logits = model(x)
            for j, z in enumerate(logits):
                p = torch.softmax(z.float(), dim=1)
                sums[j] += p.view(-1, n, p.shape[1]).sum(0)
    return [s.cpu().numpy() for s in sums]


def _predict_stream(data_dir: Path, split: str, checkpoints, batch_size: int, device: str, tta: bool,
                    progress: bool, keep: set | None = None, workers: int | None = None) -> PredictionResult:
    import torch
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    data_dir = Path(data_dir)
    dev = resolve_device(device)
    groups = _load_groups(checkpoints, dev)
    files, total = _check_parquets(data_dir, split)
    # On a GPU the CPU-side crop is the bottleneck: spread it over the cores. On the CPU the model
    # needs the cores itself.
    n_workers = workers if workers is not None else (max(1, min(os.cpu_count() or 1, 8))
                                                      if dev.type == "cuda" else 1)
    n_models = sum(len(g.models) for g in groups)
    denom = float(n_models * (len(TTA_VIEWS) if tta else 1))
    expected = total if keep is None else len(keep)

    t0 = time.perf_counter()
    ids_parts: list[np.ndarray] = []
    prob_parts: list[list[np.ndarray]] = [[] for _ in COMPONENTS]
    n_blank = 0
    bar = tqdm(total=expected, unit="img", desc=f"predict {split}", disable=not progress)
    try:
        for ids, views, _ in _prefetch(_batches(data_dir, split, files, groups, keep, n_workers)):
            for s in range(0, len(ids), batch_size):
                acc = None
                for g, imgs in zip(groups, views):
                    part = _run_models(g, imgs[s:s + batch_size], dev, tta)
                    acc = part if acc is None else [a + p for a, p in zip(acc, part)]
                for j in range(len(COMPONENTS)):
                    prob_parts[j].append((acc[j] / denom).astype(np.float32))
                bar.update(len(acc[0]))
            ids_parts.append(ids)
            # Blank = nothing above the crop's noise floor: counted on the first model's input.
            n_blank += int((views[0].reshape(len(ids), -1).max(axis=1) == 0).sum()) if len(ids) else 0
    finally:
        bar.close()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    if not ids_parts:
        raise DataError(data_dir, f"no {split} images to predict")
    image_ids = np.concatenate(ids_parts)
    uniq, counts = np.unique(image_ids, return_counts=True)
    if (counts > 1).any():
        raise DataError(data_dir, f"image_id {uniq[counts > 1][0]!r} appears more than once in the "
                                  f"{split} parquets")
    probs = {c: np.concatenate(prob_parts[j]) for j, c in enumerate(COMPONENTS)}
    labels = np.stack([probs[c].argmax(1) for c in COMPONENTS], axis=1).astype(np.int64)
    return PredictionResult(image_ids=image_ids, probabilities=probs, labels=labels, seconds=seconds,
                            device=str(dev), n_models=n_models, tta=tta, n_blank=n_blank)


def predict(data_dir: str | Path, checkpoints: Sequence[str | Path] | str | Path, batch_size: int = 256,
            device: str = "auto", tta: bool = False, progress: bool = True,
            workers: int | None = None) -> PredictionResult:
    """Predict every image of ``<data_dir>/test_image_data_*.parquet``, streaming.

    ``checkpoints``: one or several kit checkpoints (softmax averaged). ``device``: ``"auto"`` (CUDA when
    present, with float16 autocast), ``"cpu"``, ``"cuda:0"``... ``tta``: average the flip-free views in
    ``TTA_VIEWS``. ``workers``: processes for the crop/resize (default: the cores on a GPU, 1 on the
    CPU). Raises ``DataError`` for missing/malformed/empty parquets and unusable checkpoints.
    """
    return _predict_stream(Path(data_dir), "test", checkpoints, batch_size, device, tta, progress,
                           workers=workers)


# ----------------------------------------------------------------------------------------- submission
def make_submission(test_df: pd.DataFrame, image_ids: Sequence[str], labels: np.ndarray) -> pd.DataFrame:
    """The submission for ``test_df`` (test.csv): ``row_id, target`` in test.csv's row order.

    ``labels[i]`` are the (root, vowel, consonant) predictions of ``image_ids[i]``. Each row's target is
    picked by that row's ``image_id`` and ``component`` columns, never by position.
    """
    labels = np.asarray(labels)
    ids = np.asarray(image_ids).astype(str)
    if labels.ndim != 2 or labels.shape != (len(ids), len(COMPONENTS)):
        raise ValueError(f"labels must have shape ({len(ids)}, 3), got {labels.shape}")
    for col in ("row_id", "image_id", "component"):
        if col not in test_df.columns:
            raise DataError(Path("test.csv"), f"missing column {col!r}")
    pos = pd.Series(np.arange(len(ids)), index=pd.Index(ids))
    if pos.index.has_duplicates:
        raise ValueError("image_ids has duplicates")
    rows = pos.reindex(test_df["image_id"].astype(str).to_numpy())
    if rows.isna().any():
        missing = test_df["image_id"].to_numpy()[rows.isna().to_numpy()]
        raise DataError(Path("test.csv"), f"{len(set(missing))} image_id(s) of test.csv have no image in the "
                                          f"test parquets, e.g. {missing[0]!r}")
    comp_index = {c: j for j, c in enumerate(COMPONENTS)}
    comps = test_df["component"].map(comp_index)
    if comps.isna().any():
        bad = test_df["component"][comps.isna()].iloc[0]
        raise DataError(Path("test.csv"), f"unknown component {bad!r}")
    target = labels[rows.to_numpy(dtype=np.int64), comps.to_numpy(dtype=np.int64)]
    return pd.DataFrame({"row_id": test_df["row_id"].astype(str).to_numpy(), "target": target.astype(np.int64)})


def write_submission(df: pd.DataFrame, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``row_id,target`` to ``path`` atomically; refuses an existing file unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists (pass --overwrite to replace it)")
    if path.is_dir():
        raise DataError(path, "is a folder, expected a .csv file path")
    if list(df.columns) != ["row_id", "target"]:
        raise ValueError(f"submission columns must be ['row_id', 'target'], got {list(df.columns)}")
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path


def predict_to_submission(data_dir: str | Path, checkpoints: Sequence[str | Path] | str | Path,
                          out: str | Path, batch_size: int = 256, device: str = "auto", tta: bool = False,
                          overwrite: bool = False, progress: bool = True) -> tuple[PredictionResult, pd.DataFrame]:
    """test.csv + test parquets -> ``out`` (submission.csv). Bad inputs fail before any prediction."""
    from .data import read_test_csv

    data_dir, out = Path(data_dir), Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists (pass --overwrite to replace it)")
    test_df = read_test_csv(data_dir / "test.csv")
    result = predict(data_dir, checkpoints, batch_size=batch_size, device=device, tta=tta, progress=progress)
    sub = make_submission(test_df, result.image_ids, result.labels)
    write_submission(sub, out, overwrite=overwrite)
    return result, sub


# ----------------------------------------------------------------------------------------- evaluate
def _parquet_ids(files: list[Path]) -> np.ndarray:
    import pyarrow.parquet as pq

    return np.concatenate([np.asarray(pq.read_table(f, columns=["image_id"]).column(0).to_pylist(), dtype=str)
                           for f in files])


def _validation_ids(data_dir: Path, labels_df: pd.DataFrame, ckpt: dict, where: Path) -> tuple[set | None, str]:
    """The image ids of the checkpoint's validation split, reproduced as train.py made it.

    train.py splits the labelled rows in the cache's order (parquet order) with ``split_indices``.
    Returns ``(None, reason)`` when the checkpoint records no split.
    """
    from .data import check_labels_match_images, image_parquets, labels_array

    tc = ckpt.get("train_config")
    if not isinstance(tc, dict) or "seed" not in tc:
        return None, "all labelled images: the checkpoint records no training split"
    if tc.get("val_data_dir") or tc.get("synthetic_stream"):
        # validated on another folder (or trained on rendered images): no split of this folder to reproduce
        return None, (f"all labelled images: the checkpoint was validated on {tc.get('val_data_dir')}"
                      if tc.get("val_data_dir") else "all labelled images: trained on rendered images only")
    from .train import split_indices

    ids = _parquet_ids(image_parquets(data_dir, "train"))
    check_labels_match_images(labels_df, ids, data_dir / "train.csv")
    pos = pd.Series(np.arange(len(ids)), index=pd.Index(ids))
    rows = pos.loc[labels_df["image_id"].to_numpy()].to_numpy()
    order = np.argsort(rows, kind="stable")
    ordered_ids = labels_df["image_id"].to_numpy()[order]
    roots = labels_array(labels_df)[order][:, 0]
    _, val_idx = split_indices(roots, float(tc.get("val_fraction", 0.2)), int(tc.get("n_folds", 0) or 0),
                               int(tc.get("fold", 0) or 0), int(tc.get("seed", 0)))
    n_val = ckpt.get("n_val")
    if n_val is not None and int(n_val) != len(val_idx):
        raise DataError(where, f"the checkpoint was validated on {n_val} images but this folder's split gives "
                               f"{len(val_idx)}: not the data it was trained on? (use --all to score every image)")
    how = (f"fold {tc.get('fold', 0)} of {tc['n_folds']}" if tc.get("n_folds")
           else f"val_fraction {tc.get('val_fraction', 0.2)}")
    return set(ordered_ids[val_idx].tolist()), f"the checkpoint's validation split ({how}, seed {tc['seed']})"


def evaluate(data_dir: str | Path, checkpoint: str | Path, all: bool = False, batch_size: int = 256,
             device: str = "auto", tta: bool = False, progress: bool = True) -> EvaluationResult:
    """Score ``checkpoint`` on the labelled train images of ``data_dir`` (train.csv + train parquets).

    By default only the validation split recorded in the checkpoint (``train_config``: val_fraction or
    n_folds/fold, and seed) is scored, so the figure is not inflated by training images; ``all=True``
    (or a checkpoint without a recorded split) scores every labelled image.
    """
    from .data import labels_array, read_train_csv
    from .metrics import component_recalls, per_class_recall
    from .model import load_checkpoint

    data_dir, checkpoint = Path(data_dir), Path(checkpoint)
    labels_df = read_train_csv(data_dir / "train.csv")
    if len(labels_df) == 0:
        raise DataError(data_dir / "train.csv", "no labelled images")
    if all:
        keep, subset = None, "all labelled images"
    else:
        keep, subset = _validation_ids(data_dir, labels_df, load_checkpoint(checkpoint), checkpoint)
    if keep is None:
        keep = set(labels_df["image_id"].tolist())
    res = _predict_stream(data_dir, "train", [checkpoint], batch_size, device, tta, progress, keep=keep)
    truth = labels_df.set_index("image_id").loc[res.image_ids]
    missing = keep - set(res.image_ids.tolist())
    if missing:
        raise DataError(data_dir / "train.csv", f"{len(missing)} labelled image_id(s) have no image in the "
                                                f"train parquets, e.g. {sorted(missing)[0]!r}")
    y_true = labels_array(truth.reset_index())
    scores = component_recalls(y_true, res.labels)
    return EvaluationResult(scores=scores, per_class=per_class_recall(y_true, res.labels),
                            n_images=res.n_images, subset=subset, prediction=res, y_true=y_true)
