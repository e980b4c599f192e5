"""The training loop: cached data, stratified split, augmentation on the device, AMP, DDP, checkpoints, resume.

``train(TrainConfig(data_dir=..., out_dir=...)) -> run folder`` with ``config.json``, ``last.pt`` (everything
needed to resume), ``best.pt`` (the best epoch by validation weighted recall; what inference reads),
``history.csv``, ``curves.png`` and ``val_per_class.csv`` (per-class recall of the best epoch).

Reproducibility: the split, the initial weights, each epoch's shuffling (``DistributedSampler(seed).set_epoch``)
and every random number drawn during an epoch (dropout, augmentation) derive from (seed, epoch, rank), so
a run resumed from ``last.pt`` after epoch k reproduces the uninterrupted run exactly on the CPU.
Under ``torchrun`` each process trains on its shard; only rank 0 writes files; validation predictions are
gathered from all ranks so the score covers the whole validation set.
"""
from __future__ import annotations

import json
import math
import os
import random
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .augment import BatchAugmenter
from .components import COMPONENTS
from .errors import DataError
from .files import atomic_path, atomic_write_text
from .train_config import TrainConfig, add_config_arguments, config_from_args

__all__ = ["TrainConfig", "train", "split_indices", "CacheDataset", "add_config_arguments", "config_from_args",
           "HISTORY_COLUMNS"]

HISTORY_COLUMNS = ("epoch", "train_loss", "val_loss", "val_weighted", *(f"val_{c}" for c in COMPONENTS),
                   "lr", "seconds")
_CHECKPOINTS = ("last.pt", "best.pt")


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


# ---------------------------------------------------------------- data
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


def _prepare_cache(cfg: TrainConfig, is_main: bool) -> tuple[Path, np.ndarray, dict]:
    """Build (rank 0) / open the train cache. Returns (npy path, image ids, crop parameters)."""
    from . import preprocess

    size, cache_dir = cfg.image_size, cfg.cache_path
    if is_main:
        kw: dict[str, Any] = {"out_dir": cache_dir, "progress": cfg.progress}
        if cfg.preprocess_workers is not None:
            kw["workers"] = cfg.preprocess_workers
        info = preprocess.build_cache(cfg.data_dir, "train", size=size, **kw)
    _barrier()
    if not is_main:
        info = None
    images, ids = preprocess.load_cache(cache_dir, "train", size)
    npy = Path(getattr(images, "filename", None) or Path(cache_dir) / f"train_{size}.npy")
    del images
    return npy, np.asarray(ids).astype(str), _crop_params(info)


def _crop_params(info: Any) -> dict:
    """The crop/resize parameters as a plain dict (stored in best.pt for inference)."""
    from . import preprocess

    for source in (getattr(info, "params", None), getattr(preprocess, "DEFAULT_PARAMS", None),
                   getattr(preprocess, "CropParams", None)):
        if source is None:
            continue
        if isinstance(source, type):
            source = source()
        if hasattr(source, "_asdict"):
            return dict(source._asdict())
        if hasattr(source, "__dataclass_fields__"):
            import dataclasses
            return dataclasses.asdict(source)
        if isinstance(source, dict):
            return dict(source)
    return {}


def _labels_for(cfg: TrainConfig, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cache rows that have labels, and their labels (N, 3) in cache order."""
    from .data import check_labels_match_images, labels_array, read_train_csv

    path = Path(cfg.data_dir) / "train.csv"
    df = read_train_csv(path)
    check_labels_match_images(df, ids, path)
    pos = pd.Series(np.arange(len(ids)), index=pd.Index(ids))
    rows = pos.loc[df["image_id"].to_numpy()].to_numpy()
    order = np.argsort(rows, kind="stable")
    return rows[order], labels_array(df)[order]


# ---------------------------------------------------------------- distributed / device
def _dist_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment (0, 1, 0 when not distributed)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def _is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def _barrier() -> None:
    if _is_dist():
        dist.barrier()


def _resolve_device(cfg: TrainConfig, local_rank: int, world: int) -> torch.device:
    name = cfg.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {cfg.device!r} requested but CUDA is not available")
        if world > 1 or device.index is None:
            device = torch.device("cuda", local_rank if world > 1 else 0)
        torch.cuda.set_device(device)
    return device


def _epoch_seed(seed: int, epoch: int, rank: int, stream: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, rank, stream]).generate_state(1)[0])


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    """Global RNG states as tensors / lists / ints so that ``weights_only=True`` loading works."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, pystate, pygauss = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
             "python": [int(version), list(pystate), pygauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, pystate, pygauss = state["python"]
    random.setstate((version, tuple(pystate), pygauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------- optimisation
def _set_bn_momentum(model: torch.nn.Module, momentum: float) -> None:
    """Set the running-statistics momentum of every batch norm (not part of the state dict)."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = momentum


def _build_optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    from .optim import LARS, lars_param_groups

    groups = lars_param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "lars":
        return LARS(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


class _LRFactor:
    """Multiplier of the peak lr at a step: linear warm-up, then cosine (one-cycle / cosine) or flat.

    One-cycle starts at lr/25 and decays to ~0; cosine warms up from 0. A class (not a lambda) so the
    scheduler's state dict holds only numbers.
    """

    def __init__(self, schedule: str, total_steps: int, warmup: float):
        self.schedule, self.total, self.warm = schedule, max(int(total_steps), 1), int(round(warmup * total_steps))

    def __call__(self, step: int) -> float:
        if self.schedule == "constant":
            return 1.0
        start = 1 / 25 if self.schedule == "onecycle" else 0.0
        if step < self.warm:
            return start + (1 - start) * (step + 1) / self.warm
        t = min((step - self.warm) / max(self.total - self.warm, 1), 1.0)
        floor = 1e-4 if self.schedule == "onecycle" else 0.0
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))


# ---------------------------------------------------------------- run folder
def _check_run_dir(cfg: TrainConfig) -> None:
    """Refuse to clobber a run with checkpoints; require last.pt for resume."""
    out = Path(cfg.out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(out, "run folder path exists and is not a folder")
    has = [name for name in _CHECKPOINTS if (out / name).exists()]
    if cfg.resume:
        if not (out / "last.pt").is_file():
            raise DataError(out / "last.pt", "nothing to resume from (no last.pt in the run folder)")
    elif has and not cfg.overwrite:
        raise DataError(out, f"run folder already holds {', '.join(has)} (pass --resume to continue "
                             f"or --overwrite to start again)")


def _check_data(cfg: TrainConfig) -> None:
    from .data import image_parquets

    data = Path(cfg.data_dir)
    if not data.is_dir():
        raise DataError(data, "data folder not found")
    if not (data / "train.csv").is_file():
        raise DataError(data / "train.csv", "file not found (a competition folder needs train.csv)")
    image_parquets(data, "train")


def _write_history(run: Path, history: list[dict]) -> None:
    df = pd.DataFrame(history, columns=list(HISTORY_COLUMNS))
    with atomic_path(run / "history.csv") as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    try:
        from .plots import plot_history
        import matplotlib.pyplot as plt

        fig = plot_history(df, run / "curves.png")
        plt.close(fig)
    except ImportError:  # pragma: no cover - matplotlib is a dependency; keep training if it is broken
        pass


# ---------------------------------------------------------------- the loop
class _Trainer:
    """State of one training process (one rank); ``run()`` does the epochs."""

    def __init__(self, cfg: TrainConfig):
        from .model import ModelConfig, build_model, check_image_size

        self.cfg = cfg.validate()
        self.rank, self.world, local_rank = _dist_env()
        self.is_main = self.rank == 0
        self.run_dir = Path(cfg.out_dir)
        check_image_size(cfg.model, cfg.image_size)
        self.model_config = ModelConfig(name=cfg.model, pooling=cfg.pooling, dropout=cfg.dropout)
        if cfg.data_dir or not cfg.synthetic_stream:
            _check_data(cfg)
        if cfg.val_data_dir:
            import dataclasses

            _check_data(dataclasses.replace(cfg, data_dir=cfg.val_data_dir))
        _check_run_dir(cfg)
        self.resume_ckpt = self._load_resume() if cfg.resume else None

        self.device = _resolve_device(cfg, local_rank, self.world)
        self.cuda = self.device.type == "cuda"
        self.amp = cfg.amp and self.cuda
        self.channels_last = cfg.channels_last and self.cuda

        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_dir / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
        from .sources import build_sources

        src = build_sources(cfg, self.is_main, self.rank, self.world)
        persistent = cfg.num_workers > 0
        if src is None:
            npy, ids, self.crop_params = _prepare_cache(cfg, self.is_main)
            rows, labels = _labels_for(cfg, ids)
            train_idx, val_idx = split_indices(labels[:, 0], cfg.val_fraction, cfg.n_folds, cfg.fold, cfg.seed)
            if len(train_idx) < cfg.batch_size * self.world:
                raise ValueError(f"only {len(train_idx)} training images for batch size {cfg.batch_size} "
                                 f"x {self.world} process(es); lower --batch-size")
            self.train_set = CacheDataset(npy, rows[train_idx], labels[train_idx])
            shard = val_idx[self.rank::self.world]
            self.val_set = CacheDataset(npy, rows[shard], labels[shard])
            self.val_positions = np.arange(len(val_idx))[self.rank::self.world]
            self.val_labels = labels[val_idx]
            self.n_train, self.n_val = len(train_idx), len(val_idx)
        else:  # --val-data and/or --synthetic-stream
            self.train_set, self.val_set, self.crop_params = src.train_set, src.val_set, src.crop_params
            self.val_positions, self.val_labels = src.val_positions, src.val_labels
            self.n_train, self.n_val = src.n_train, src.n_val
            persistent = persistent and src.persistent_workers
            if self.n_train < cfg.batch_size * self.world:
                raise ValueError(f"only {self.n_train} training images for batch size {cfg.batch_size} "
                                 f"x {self.world} process(es); lower --batch-size")

        self.sampler = DistributedSampler(self.train_set, num_replicas=self.world, rank=self.rank,
                                          shuffle=True, seed=cfg.seed, drop_last=True)
        # Own generators: a DataLoader iterator otherwise draws its base seed from the global RNG, and
        # persistent workers create fewer iterators, so num_workers would change the dropout stream.
        loader_kw = {"num_workers": cfg.num_workers, "pin_memory": self.cuda,
                     "persistent_workers": persistent,
                     "generator": torch.Generator().manual_seed(cfg.seed)}
        self.train_loader = DataLoader(self.train_set, batch_size=cfg.batch_size, sampler=self.sampler,
                                       drop_last=True, **loader_kw)
        self.val_loader = DataLoader(self.val_set, batch_size=cfg.batch_size * 2, shuffle=False, **loader_kw)
        self.steps_per_epoch = len(self.train_loader)
        if cfg.max_steps:
            self.steps_per_epoch = min(self.steps_per_epoch, cfg.max_steps)

        self._build(build_model)

    def _load_resume(self) -> dict:
        from .model import load_checkpoint

        path = self.run_dir / "last.pt"
        ckpt = load_checkpoint(path)
        saved = ckpt.get("train_config")
        if not isinstance(saved, dict) or "epoch" not in ckpt:
            raise DataError(path, "not a training checkpoint (no train_config/epoch)")
        try:
            diffs = self.cfg.differences(TrainConfig.from_dict(saved))
        except (TypeError, ValueError) as err:
            raise DataError(path, f"unreadable train_config ({err})") from None
        if diffs:
            raise DataError(path, f"written with another config ({'; '.join(diffs[:3])}); "
                                  f"resume with the same settings or start a new run folder")
        return ckpt

    def _build(self, build_model) -> None:
        from .losses import MultiHeadLoss

        cfg = self.cfg
        _seed_everything(cfg.seed)
        model = build_model(self.model_config, imagenet_weights=cfg.imagenet_weights)
        _set_bn_momentum(model, cfg.bn_momentum)
        model.to(self.device)
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
        self.bare = model
        self.init_from = None
        if cfg.init and self.resume_ckpt is None:
            from .finetune import load_init_weights

            report = load_init_weights(model, cfg.init)
            self.init_from = report.to_dict()
            if self.is_main:
                print(f"train: {report.summary()}", flush=True)
        elif self.resume_ckpt is not None:
            self.init_from = self.resume_ckpt.get("init_from")
        self.ema = None
        if cfg.ema_decay > 0:
            from .ema import ModelEMA

            self.ema = ModelEMA(model, cfg.ema_decay)
        self.optimizer = _build_optimizer(cfg, model)
        self.lr_factor = _LRFactor(cfg.schedule, self.steps_per_epoch * cfg.epochs, cfg.warmup)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.lr_factor)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.loss_fn = MultiHeadLoss(weights=cfg.loss_weights, label_smoothing=cfg.label_smoothing)
        self.augment = BatchAugmenter(cfg.affine_degrees, cfg.affine_scale, cfg.affine_translate, cfg.affine_shear,
                                      cfg.cutmix_p, cfg.mixup_p, cfg.mix_alpha, device=self.device)
        self.start_epoch, self.step, self.history, self.best = 0, 0, [], -math.inf
        if self.resume_ckpt is not None:
            self._restore(self.resume_ckpt)
        self.model = model
        if self.world > 1:
            # a frozen backbone during head warm-up leaves parameters without gradients
            self.model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.cuda else None,
                find_unused_parameters=cfg.head_warmup_epochs > 0)
        if self.is_main and self.init_from is not None:
            atomic_write_text(self.run_dir / "config.json",
                              json.dumps({**cfg.to_dict(), "init_from": self.init_from}, indent=2) + "\n")

    def _restore(self, ckpt: dict) -> None:
        self.bare.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.amp and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        _set_rng_state(ckpt["rng"])
        self.start_epoch, self.step = int(ckpt["epoch"]), int(ckpt["step"])
        self.history = [dict(row) for row in ckpt.get("history", [])]
        if self.ema is not None and ckpt.get("ema"):
            self.ema.load_state_dict(ckpt["ema"])
        self.best = float(ckpt.get("best_metric", -math.inf))

    # ------------------------------------------------------------ epochs
    def run(self) -> Path:
        from tqdm.auto import tqdm

        cfg = self.cfg
        if self.is_main and cfg.progress:
            tqdm.write(f"train: {self.n_train} images, val: {self.n_val}, {self.world} process(es) on "
                       f"{self.device}, {self.steps_per_epoch} steps/epoch, {cfg.epochs} epochs -> {self.run_dir}")
        for epoch in range(self.start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", dynamic_ncols=True,
                       disable=not (cfg.progress and self.is_main))
            train_loss = self._train_epoch(epoch, bar)
            scores, val_loss, y_pred = self._validate()
            bar.set_postfix(loss=f"{train_loss:.4f}", val_loss=f"{val_loss:.4f}", val_recall=f"{scores['weighted']:.4f}")
            bar.close()
            row = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": val_loss,
                   "val_weighted": scores["weighted"], **{f"val_{c}": scores[c] for c in COMPONENTS},
                   "lr": self.optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - t0}
            self.history.append(row)
            if self.is_main:
                self._save(epoch + 1, scores, y_pred)
                if cfg.progress:
                    tqdm.write(f"epoch {epoch + 1}/{cfg.epochs}: val recall {scores['weighted']:.4f} ("
                               + ", ".join(f"{c.split('_')[0]} {scores[c]:.4f}" for c in COMPONENTS)
                               + f"), {row['seconds']:.1f}s")
            _barrier()
        return self.run_dir

    def _train_epoch(self, epoch: int, bar) -> float:
        cfg = self.cfg
        self.model.train()
        self.sampler.set_epoch(epoch)
        from .finetune import set_head_only
        from .sources import set_stream_epoch

        set_stream_epoch(self.train_set, epoch)
        set_head_only(self.bare, epoch < cfg.head_warmup_epochs)  # warm-up: only pooling, neck, heads learn
        # Everything random in this epoch derives from (seed, epoch, rank): resume needs no RNG history.
        _seed_everything(_epoch_seed(cfg.seed, epoch, self.rank, 0))
        self.augment.reseed(_epoch_seed(cfg.seed, epoch, self.rank, 1))
        total, count = torch.zeros((), dtype=torch.float64, device=self.device), 0
        for i, (images, labels) in enumerate(self.train_loader):
            if i >= self.steps_per_epoch:
                break
            loss = self._train_step(images, labels)
            total += loss.detach().double()
            count += 1
            bar.update(1)
            if (i + 1) % cfg.log_every == 0 or i + 1 == self.steps_per_epoch:
                bar.set_postfix(loss=f"{total.item() / count:.4f}", lr=f"{self.optimizer.param_groups[0]['lr']:.2e}")
        return self._mean_across_ranks(total.item(), count)

    def _to_input(self, images: torch.Tensor) -> torch.Tensor:
        from .model import model_input

        return model_input(images.to(self.device, non_blocking=True))

    def _autocast(self):
        return torch.autocast(device_type="cuda", dtype=torch.float16) if self.amp else nullcontext()

    def _train_step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = self._to_input(images)
        y = labels.to(self.device, non_blocking=True)
        x, targets = self.augment(x, y)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            loss = self.loss_fn(self.model(x), targets)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.bare)
        self.step += 1
        return loss

    def _mean_across_ranks(self, total: float, count: int) -> float:
        if self.world > 1:
            t = torch.tensor([total, count], dtype=torch.float64, device=self.device)
            dist.all_reduce(t)
            total, count = t.tolist()
        return total / max(count, 1)

    @torch.no_grad()
    def _validate(self) -> tuple[dict, float, np.ndarray]:
        """Predict this rank's validation shard, gather all shards, score the whole validation set."""
        from .metrics import component_recalls

        self.model.eval()
        if self.world > 1:
            # Each rank's batch-norm running stats drifted on its own shard: validate with rank 0's
            # (the ones saved in the checkpoints) so every shard is scored by the same model.
            for buf in self.bare.buffers():
                dist.broadcast(buf, 0)
        preds, loss_sum = [], 0.0
        for images, labels in self.val_loader:
            x = self._to_input(images)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = labels.to(self.device)
            with self._autocast():
                net = self.ema.module if self.ema is not None else self.bare
                logits = net(x)  # no DDP wrapper: ranks see different numbers of batches
                loss_sum += float(self.loss_fn(logits, y)) * len(y)
            preds.append(torch.stack([z.argmax(1) for z in logits], 1).cpu())
        pred = torch.cat(preds).numpy() if preds else np.zeros((0, 3), dtype=np.int64)
        pos = self.val_positions
        if self.world > 1:
            gathered: list = [None] * self.world
            dist.all_gather_object(gathered, (pos, pred, loss_sum))
            pos = np.concatenate([g[0] for g in gathered])
            pred = np.concatenate([g[1] for g in gathered])
            loss_sum = sum(g[2] for g in gathered)
        y_pred = np.empty_like(self.val_labels)
        y_pred[pos] = pred
        scores = component_recalls(self.val_labels, y_pred)
        return {k: float(v) for k, v in scores.items()}, loss_sum / max(self.n_val, 1), y_pred

    # ------------------------------------------------------------ checkpoints
    def _common(self, epoch: int, scores: dict) -> dict:
        return {"image_size": int(self.cfg.image_size), "preprocess": dict(self.crop_params),
                "train_config": self.cfg.to_dict(), "epoch": int(epoch),
                "metric": float(scores["weighted"]), "scores": dict(scores), "n_val": int(self.n_val),
                "init_from": self.init_from}

    def _save(self, epoch: int, scores: dict, y_pred: np.ndarray) -> None:
        from .model import save_checkpoint

        improved = scores["weighted"] > self.best
        if improved:
            self.best = scores["weighted"]
            save_checkpoint(self.run_dir / "best.pt", self.ema.module if self.ema is not None else self.bare,
                            **self._common(epoch, scores))
            self._write_per_class(y_pred)
        extra = {"ema": self.ema.state_dict()} if self.ema is not None else {}
        save_last(self.run_dir / "last.pt", self.bare, **self._common(epoch, scores), **extra,
                  optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                  scaler=self.scaler.state_dict(), rng=_rng_state(), step=int(self.step),
                  history=[dict(r) for r in self.history], best_metric=float(self.best))
        _write_history(self.run_dir, self.history)

    def _write_per_class(self, y_pred: np.ndarray) -> None:
        from .metrics import per_class_recall

        df = per_class_recall(self.val_labels, y_pred)
        with atomic_path(self.run_dir / "val_per_class.csv") as tmp:
            df.to_csv(tmp, index=False, float_format="%.6g")


def save_last(path: Path, model: torch.nn.Module, **extra: Any) -> Path:
    """Write last.pt (a separate function so tests can simulate an interruption right after it)."""
    from .model import save_checkpoint

    return save_checkpoint(path, model, **extra)


def train(cfg: TrainConfig) -> Path:
    """Train a model as ``cfg`` says; returns the run folder. Works alone or under ``torchrun``."""
    rank, world, _ = _dist_env()
    own_group = False
    if world > 1 and not _is_dist():
        backend = "nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo"
        dist.init_process_group(backend)
        own_group = True
    try:
        return _Trainer(cfg).run()
    finally:
        if own_group and _is_dist():
            dist.destroy_process_group()
