"""Prediction over image parquets: streamed, preprocessed like training, averaged over checkpoints.

The test parquets are streamed batch by batch (the hidden test set is about as large as train: ~200k
images, 6.5 GB of pixels) and each batch is cropped/resized with the parameters stored in the checkpoint,
i.e. exactly as the training cache was made. A background thread reads and preprocesses the next batch
while the model runs on the current one. Several checkpoints are averaged in probability space; models
with different image sizes or crop parameters each get their own preprocessed copy of the batch.
The labels are each head's argmax, corrected for the training class prior when the checkpoints carry a
``prior_power`` (see ``priors.py``); the probabilities stay uncorrected.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .components import COMPONENTS, N_CLASSES
from .data import count_images, image_parquets, iter_image_batches
from .device import resolve_device
from .errors import DataError
from .model import BengaliNet, load_model, model_input
from .preprocess import CropParams, crop_resize_batch, iter_preprocessed
from .priors import checkpoint_class_counts, log_prior, prior_corrected_labels, resolve_prior_power
from .speed import fold_batch_norm, fold_static_padding

__all__ = ["PredictionResult", "predict", "predict_images", "fast_for_inference", "TTA_VIEWS", "READ_BATCH"]

log = logging.getLogger(__name__)

#: Rows read from a parquet at a time (about 66 MB of raw pixels).
READ_BATCH = 2048

#: Flip-free test-time augmentation: (scale, shift_x, shift_y) of each view, shifts as a fraction of the
#: image side. No flips: mirrored Bengali graphemes are other (or no) characters.
TTA_VIEWS: tuple[tuple[float, float, float], ...] = (
    (1.0, 0.0, 0.0), (0.9, 0.0, 0.0), (1.0, 0.04, 0.04), (1.0, -0.04, -0.04),
)


@dataclass
class PredictionResult:
    """Predictions for a stream of images.

    ``image_ids`` (str, (N,)) in parquet order; ``probabilities[component]`` float32 (N, n_classes)
    averaged over checkpoints (and TTA views); ``labels`` int64 (N, 3) in ``COMPONENTS`` order: the argmax
    of ``log p - prior_power * class_prior`` (plain argmax at ``prior_power`` 0). ``class_prior``: each
    head's log training class frequency, None unless every checkpoint carries its class counts.
    """

    image_ids: np.ndarray
    probabilities: dict[str, np.ndarray]
    labels: np.ndarray
    seconds: float
    device: str = "cpu"
    n_models: int = 1
    tta: bool = False
    n_blank: int = 0
    prior_power: float = 0.0
    class_prior: list[np.ndarray] | None = field(default=None, repr=False)

    @property
    def n_images(self) -> int:
        """Number of images predicted."""
        return len(self.image_ids)

    @property
    def images_per_second(self) -> float:
        """Throughput of the whole stream (reading, preprocessing and the models)."""
        return self.n_images / self.seconds if self.seconds > 0 else float("inf")

    def summary(self) -> str:
        """One line: how many images, how fast, where, with how many models."""
        extra = f", {self.n_blank} blank image(s)" if self.n_blank else ""
        extra += f", class-prior correction k={self.prior_power:g}" if self.prior_power else ""
        return (f"predicted {self.n_images} images in {self.seconds:.1f} s ({self.images_per_second:.1f} images/s) "
                f"on {self.device} with {self.n_models} model(s){' + TTA' if self.tta else ''}{extra}")


# ----------------------------------------------------------------------------------------- models
@dataclass
class _Group:
    """Models that share one preprocessing (image size + crop parameters)."""

    size: int
    params: dict
    models: list = field(default_factory=list)


def _freeze(d: Any) -> str:
    return json.dumps(d, sort_keys=True, default=str)


def _ensemble_prior(priors: Sequence[tuple[Path, Mapping[str, Any]]],
                    override: float | None) -> tuple[float, list[np.ndarray] | None]:
    """The prior power every checkpoint predicts with (they must agree) and the ensemble's log class prior."""
    powers = [resolve_prior_power(ck, path, override) for path, ck in priors]
    for (path, _), k in zip(priors[1:], powers[1:]):
        if k != powers[0]:
            raise DataError(path, f"carries prior_power {k:g} but {priors[0][0]} carries {powers[0]:g}; "
                                  "pass --prior-power to choose one for the ensemble")
    counts = [checkpoint_class_counts(ck, path) for path, ck in priors]
    if any(c is None for c in counts):
        return powers[0], None
    # The averaged probabilities are corrected once, by the mean of the models' training class frequencies:
    # one model, or models trained on the same labels, gets exactly its own prior; fold models the mean.
    per_model = [[np.exp(h) for h in log_prior(c)] for c in counts]
    return powers[0], [np.log(np.mean([m[j] for m in per_model], axis=0)) for j in range(len(COMPONENTS))]


def _load_groups(checkpoints: Sequence[str | Path], device: torch.device) -> list[_Group]:
    """The models grouped by preprocessing (benchmarks/gpu_check.py runs them itself)."""
    return _load_models(checkpoints, device)[0]


def fast_for_inference(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` made faster to run, not different: efficientnet's symmetric padding moved into its convs,
    batch norms folded into the layers before them (benchmarks/README.md, "CPU throughput"), channels_last
    (faster on CUDA and on the CPU). Another kind of model, or one of a layout the folds do not know, runs
    as it is."""
    if isinstance(model, BengaliNet):
        try:
            model = fold_batch_norm(fold_static_padding(model))
        except ValueError as err:  # exactness first
            log.debug("inference runs unfolded: %s", err)
    return model.to(memory_format=torch.channels_last)


def _load_models(checkpoints: Sequence[str | Path], device: torch.device,
                 prior_power: float | None = None) -> tuple[list[_Group], float, list[np.ndarray] | None]:
    """The models grouped by preprocessing, the prior power and the ensemble's log class prior."""
    if isinstance(checkpoints, (str, Path)):
        checkpoints = [checkpoints]
    if not checkpoints:
        raise ValueError("at least one checkpoint is needed")
    groups: dict[tuple, _Group] = {}
    priors: list[tuple[Path, dict]] = []
    for path in checkpoints:
        model, ckpt = load_model(path, map_location="cpu")
        priors.append((Path(path), {k: ckpt[k] for k in ("inference", "class_counts") if k in ckpt}))
        size = ckpt.get("image_size")
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise DataError(path, f"checkpoint has no valid 'image_size' ({size!r}); cannot preprocess "
                                  "test images like its training images")
        n_classes = tuple(int(n) for n in model.cfg.n_classes)
        if n_classes != tuple(N_CLASSES):
            raise DataError(path, f"model predicts {n_classes} classes, the competition has {tuple(N_CLASSES)}")
        params = ckpt.get("preprocess") or {}
        if not isinstance(params, dict):
            raise DataError(path, f"checkpoint 'preprocess' must be a dict of crop parameters, "
                                  f"got {type(params).__name__}")
        try:
            params = CropParams.make(**params).asdict()
        except (TypeError, ValueError) as err:
            raise DataError(path, f"checkpoint crop parameters do not fit this bengali_kit: {err}") from None
        model = fast_for_inference(model.to(device).eval())
        key = (size, _freeze(params))
        groups.setdefault(key, _Group(size=size, params=dict(params))).models.append(model)
    return list(groups.values()), *_ensemble_prior(priors, prior_power)


# ----------------------------------------------------------------------------------------- streaming
def _check_parquets(data_dir: Path, split: str) -> tuple[list[Path], int]:
    files = image_parquets(data_dir, split)
    total = 0
    for f in files:
        n = count_images(f)  # also validates the schema: malformed files fail before any work
        if n == 0:
            raise DataError(f, "parquet holds no images (empty file)")
        total += n
    return files, total


def _batches(data_dir: Path, split: str, files: list[Path], groups: list[_Group], keep: set | None,
             workers: int) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
    """Yield ``(ids, [preprocessed uint8 (n,S,S) per group])`` over all files, in order.

    Parquets are read ``READ_BATCH`` rows at a time whatever the model's batch size: decoding costs a
    fixed amount per 32,332-column batch, so small reads would be slow.
    """
    if len(groups) == 1 and keep is None:
        g = groups[0]
        for ids, images in iter_preprocessed(data_dir, split, size=g.size, batch_size=READ_BATCH,
                                             workers=workers, **g.params):
            yield ids, [images]
        return
    for f in files:
        for batch in iter_image_batches(f, batch_size=READ_BATCH):
            ids, images = batch.ids, batch.images
            if keep is not None:
                mask = np.fromiter((i in keep for i in ids), dtype=bool, count=len(ids))
                if not mask.any():
                    continue
                ids, images = ids[mask], images[mask]
            yield ids, [crop_resize_batch(images, size=g.size, workers=workers, **g.params)[0] for g in groups]


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


def _tta_batch(x: torch.Tensor, views: Sequence[tuple[float, float, float]]) -> torch.Tensor:
    """Stack flip-free affine views of x (B,1,S,S): returns (V*B,1,S,S); background stays 0."""
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


def _run_models(group: _Group, images: np.ndarray, device: torch.device, tta: bool) -> list[np.ndarray]:
    """Sum over models (and views) of the softmax, per component: float32 (n, classes) each."""
    x = model_input(torch.from_numpy(np.ascontiguousarray(images)).to(device, non_blocking=True))
    n = x.shape[0]
    if tta:
        x = _tta_batch(x, TTA_VIEWS)
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


def predict_images(data_dir: str | Path, split: str, checkpoints: Sequence[str | Path] | str | Path, *,
                   batch_size: int = 256, device: str = "auto", tta: bool = False, progress: bool = True,
                   keep: set[str] | None = None, workers: int | None = None,
                   prior_power: float | None = None) -> PredictionResult:
    """Predict the ``<split>_image_data_*.parquet`` images of ``data_dir`` (only ids in ``keep`` if given).

    ``prior_power``: the class-prior correction k (None: the one the checkpoints carry). Everything is
    checked (device, checkpoints, parquet schemas) before the first image is read.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    data_dir = Path(data_dir)
    dev = resolve_device(device)
    groups, k, class_prior = _load_models(checkpoints, dev, prior_power)
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
        for ids, views in _prefetch(_batches(data_dir, split, files, groups, keep, n_workers)):
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
        raise DataError(data_dir, f"image_id {str(uniq[counts > 1][0])!r} appears more than once in the "
                                  f"{split} parquets")
    probs = {c: np.concatenate(prob_parts[j]) for j, c in enumerate(COMPONENTS)}
    labels = prior_corrected_labels(probs, class_prior, k)
    return PredictionResult(image_ids=image_ids, probabilities=probs, labels=labels, seconds=seconds,
                            device=str(dev), n_models=n_models, tta=tta, n_blank=n_blank, prior_power=k,
                            class_prior=class_prior)


def predict(data_dir: str | Path, checkpoints: Sequence[str | Path] | str | Path, batch_size: int = 256,
            device: str = "auto", tta: bool = False, progress: bool = True,
            workers: int | None = None, prior_power: float | None = None) -> PredictionResult:
    """Predict every image of ``<data_dir>/test_image_data_*.parquet``, streaming.

    ``checkpoints``: one or several kit checkpoints (softmax averaged). ``device``: ``"auto"`` (a GPU this
    torch can run on, with float16 autocast, else the CPU), ``"cpu"``, ``"cuda:0"``... ``tta``: average the
    flip-free views in ``TTA_VIEWS``. ``workers``: threads for the crop/resize (default: the cores on a
    GPU, 1 on the CPU). ``prior_power``: the class-prior correction k, overriding the checkpoints' (they
    must agree when not overridden). Raises ``DataError`` for missing/malformed/empty parquets and
    unusable checkpoints.
    """
    return predict_images(data_dir, "test", checkpoints, batch_size=batch_size, device=device, tta=tta,
                          progress=progress, workers=workers, prior_power=prior_power)
