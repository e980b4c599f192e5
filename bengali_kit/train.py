"""``train(TrainConfig(...)) -> run folder``: one training run, read top to bottom.

Every way the kit trains is this function with another config: a fresh run on a competition folder, a
fine-tune from a checkpoint (``init``), pretraining on the on-the-fly synthetic stream
(``synthetic_stream``, e.g. ``--preset cpu-pretrain``), the benchmarks. The data comes from
``bengali_kit.datasets``; the steps, validation and checkpoints from ``bengali_kit.engine``.

The run folder gets ``config.json``, ``val_ids.csv`` (the validation images), ``last.pt`` (everything needed
to resume), ``best.pt`` (the best epoch by validation weighted recall; what inference reads), ``history.csv``,
``curves.png`` and ``val_per_class.csv``.

Reproducibility: the split, the initial weights, each epoch's shuffling (``DistributedSampler(seed).set_epoch``)
and every random number drawn during an epoch derive from (seed, epoch, rank), so a run resumed from
``last.pt`` reproduces the uninterrupted run exactly on the CPU (without a time budget: time is not
reproducible). Under ``torchrun`` each process trains on its shard; only rank 0 writes files; validation
predictions are gathered from all ranks so the score covers the whole validation set.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from .augment import BatchAugmenter
from .components import COMPONENTS, SHORT_NAMES, grapheme_index, root_parts
from .datasets import build_sources, check_folder, require_fonts, set_stream_epoch, write_val_ids
from .device import resolve_device
from .distributed import barrier, dist_env, is_dist
from .ema import ModelEMA
from .engine import (
    Clock,
    Schedule,
    TrainState,
    epoch_seed,
    rng_state,
    save_checkpoints,
    seed_everything,
    set_rng_state,
    train_one_epoch,
    validate,
)
from .errors import DataError
from .files import (
    atomic_write_text,
    check_output_file,
    hold_lock,
    os_problem,
    refuse_inputs,
    remove_stale_temps,
    temp_prefix,
)
from .finetune import load_init_weights
from .losses import MultiHeadLoss
from .model import ModelConfig, build_model, check_image_size, load_checkpoint, save_checkpoint
from .optim import LARS, lars_param_groups
from .priors import log_prior, training_label_record
from .train_config import TrainConfig

__all__ = ["TrainConfig", "train", "save_last"]

_CHECKPOINTS = ("last.pt", "best.pt")
#: The files a run writes into its folder: what an --overwrite replaces (its cache and other files stay).
RUN_FILES = ("config.json", "val_ids.csv", "last.pt", "best.pt", "history.csv", "curves.png", "val_per_class.csv")


def save_last(path: Path, model: torch.nn.Module, **extra) -> Path:
    """Write last.pt (a module-level name so tests can simulate an interruption right after it)."""
    return save_checkpoint(path, model, **extra)


def _check_inputs(cfg: TrainConfig) -> dict | None:
    """Every input checked before anything is built or written; returns the resume checkpoint (or None)."""
    cfg.validate()
    check_image_size(cfg.model, cfg.image_size)
    if cfg.data_dir or not cfg.synthetic_stream:
        check_folder(cfg.data_dir)
    if cfg.val_data_dir:
        check_folder(cfg.val_data_dir)
    if cfg.init:
        load_checkpoint(cfg.init)  # DataError naming the file when missing or unreadable
    limit = max(4, 2 * (os.cpu_count() or 1))
    if cfg.num_workers > limit:  # thousands of workers are killed for lack of memory, without a message
        raise ValueError(f"--num-workers {cfg.num_workers} is more than this machine can run: at most {limit} "
                         f"({os.cpu_count()} CPU cores)")
    out = Path(cfg.out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(out, "run folder path exists and is not a folder")
    refuse_inputs(out, [p for p in (cfg.data_dir, cfg.val_data_dir, cfg.init) if p], "--out")
    has = [name for name in _CHECKPOINTS if (out / name).exists()]
    if cfg.resume:
        return _load_resume(cfg)
    if has and not cfg.overwrite:
        raise DataError(out, f"run folder already holds {', '.join(has)} (pass --resume to continue "
                             f"or --overwrite to start again)")
    if has and not _is_run_config(out / "config.json"):
        raise DataError(out, "holds checkpoints but no valid config.json: not a run folder of the kit; --overwrite "
                             "replaces only a run folder: choose a new --out")
    return None


def _is_run_config(path: Path) -> bool:
    """Whether ``path`` is the config.json a run writes (the run folder's manifest)."""
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and {"out_dir", "model", "image_size", "epochs"} <= set(cfg)


def _load_resume(cfg: TrainConfig) -> dict:
    path = Path(cfg.out_dir) / "last.pt"
    if not path.is_file():
        raise DataError(path, "nothing to resume from (no last.pt in the run folder)")
    ckpt = load_checkpoint(path)
    saved = ckpt.get("train_config")
    if not isinstance(saved, dict) or "epoch" not in ckpt or "optimizer" not in ckpt:
        raise DataError(path, "not a training checkpoint (no train_config/epoch/optimizer)")
    try:
        diffs = cfg.differences(TrainConfig.from_dict(saved))
    except (TypeError, ValueError) as err:
        raise DataError(path, f"unreadable train_config ({err})") from None
    if diffs:
        raise DataError(path, f"written with another config ({'; '.join(diffs[:3])}); "
                              f"resume with the same settings or start a new run folder")
    return ckpt


def _write_config(run: Path, cfg: TrainConfig, extra: dict) -> None:
    """config.json: written once the data is checked (a failed --resume leaves the old one)."""
    try:
        atomic_write_text(run / "config.json", json.dumps({**cfg.to_dict(), **extra}, indent=2) + "\n")
    except OSError as err:
        raise DataError(run, f"cannot write the run folder: {os_problem(err)}") from None


class _RunFolder:
    """Where a run writes, and how it is undone when the run dies before its first checkpoint.

    A new run writes into ``--out`` (created now) and removes what it made on failure. An ``--overwrite`` of a
    run with checkpoints writes its files into a folder beside it; the old run's files are swapped for the
    new ones only once the new run has a checkpoint (its cache, and files that are not a run's, stay).
    """

    def __init__(self, out: Path, beside: bool):
        self.out = out
        self.before = {p.name for p in out.iterdir()} if out.is_dir() else None
        try:
            out.mkdir(parents=True, exist_ok=True)  # an unwritable place fails here, before any work
            if beside:
                remove_stale_temps(out)
                self.work = Path(tempfile.mkdtemp(prefix=temp_prefix(out), suffix=".tmp", dir=out.parent))
            else:
                self.work = out
            check_output_file(self.work / "config.json", overwrite=True)  # a probe: writable, not full
        except OSError as err:
            raise DataError(out, f"cannot write the run folder: {os_problem(err)}") from None
        self.committed = False

    def commit(self) -> None:
        """After the first checkpoint: the new run's files replace the old run's (no-op for a new run)."""
        if self.committed:
            return
        self.committed = True
        if self.work == self.out:
            return
        old = Path(tempfile.mkdtemp(prefix=temp_prefix(self.out, "old."), dir=self.out.parent))
        for name in RUN_FILES:  # the old run's own files only: a cache or a user's notes stay where they are
            if (self.out / name).exists():
                os.replace(self.out / name, old / name)
        for entry in self.work.iterdir():
            os.replace(entry, self.out / entry.name)
        shutil.rmtree(old, ignore_errors=True)
        self.work.rmdir()
        self.work = self.out

    def abandon(self) -> None:
        """The run died: before its first checkpoint, remove what it made and leave what existed; after it
        (last.pt is written, e.g. a Ctrl-C during the history plot), keep the new run as it is."""
        if self.committed:
            return
        if (self.work / "last.pt").is_file():
            self.commit()
            return
        if self.work != self.out:
            shutil.rmtree(self.work, ignore_errors=True)
        if self.before is None:
            shutil.rmtree(self.out, ignore_errors=True)
            return
        for entry in self.out.iterdir():
            if entry.name not in self.before:
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)



def _optimizer(cfg: TrainConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    groups = lars_param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "lars":
        return LARS(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _set_bn_momentum(model: torch.nn.Module, momentum: float) -> None:
    """Set the running-statistics momentum of every batch norm (not part of the state dict)."""
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = momentum


def _run(cfg: TrainConfig) -> Path:
    rank, world, local_rank = dist_env()
    resume = _check_inputs(cfg)
    device = resolve_device(cfg.device, local_rank if world > 1 else None)
    if rank != 0:  # only the first process writes the run folder (and holds its lock)
        return _train(cfg, resume, device, Path(cfg.out_dir), None)
    out = Path(cfg.out_dir).absolute()  # absolute: the lock and a folder built beside `--out .` go in its parent
    with hold_lock(out):  # one writer per run folder: a second run refuses at once, naming the holder
        beside = resume is None and any((out / name).exists() for name in _CHECKPOINTS)
        folder = _RunFolder(out, beside)
        try:
            return _train(cfg, resume, device, folder.work, folder)
        except BaseException:
            folder.abandon()
            raise


def _train(cfg: TrainConfig, resume: dict | None, device: torch.device, run: Path,
           folder: _RunFolder | None) -> Path:
    rank, world, _ = dist_env()
    is_main = rank == 0
    cuda = device.type == "cuda"

    # ---- data
    if cfg.synthetic_stream or cfg.synthetic_mix:
        require_fonts("--synthetic-stream" if cfg.synthetic_stream else "--synthetic-mix")
    try:
        src = build_sources(cfg, rank, world)
    except OSError as err:  # a full disk or a read-only cache folder while building the cache
        raise DataError(err.filename or cfg.cache_path, f"cannot write the cache: {os_problem(err)}") from None
    if src.n_train < cfg.batch_size * world:
        raise DataError(cfg.data_dir or "--synthetic-stream", f"only {src.n_train} training images for batch size "
                        f"{cfg.batch_size} x {world} process(es); lower --batch-size")
    sampler = DistributedSampler(src.train_set, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed,
                                 drop_last=True)
    # Own generators: a DataLoader iterator otherwise draws its base seed from the global RNG, and
    # persistent workers create fewer iterators, so num_workers would change the dropout stream.
    loader_kw = {"num_workers": cfg.num_workers, "pin_memory": cuda,
                 "persistent_workers": cfg.num_workers > 0 and src.persistent_workers,
                 "generator": torch.Generator().manual_seed(cfg.seed)}
    train_loader = DataLoader(src.train_set, batch_size=cfg.batch_size, sampler=sampler, drop_last=True, **loader_kw)
    val_loader = DataLoader(src.val_set, batch_size=cfg.batch_size * 2, shuffle=False, **loader_kw)
    steps_per_epoch = min(len(train_loader), cfg.max_steps or len(train_loader))

    # ---- model, optimizer, EMA, loss, augmentation
    seed_everything(cfg.seed)
    n_graphemes = int((grapheme_index() >= 0).sum()) if cfg.grapheme_loss_weight > 0 else 0
    n_parts = root_parts()[0].shape[1] if cfg.root_parts_loss_weight > 0 else 0
    model = build_model(ModelConfig(name=cfg.model, pooling=cfg.pooling, dropout=cfg.dropout,
                                    grapheme_classes=n_graphemes, part_classes=n_parts),
                        imagenet_weights=cfg.imagenet_weights)
    _set_bn_momentum(model, cfg.bn_momentum)
    model.to(device)
    init_from = None
    if cfg.init and resume is None:
        report = load_init_weights(model, cfg.init)
        init_from = report.to_dict()
        if is_main:
            print(f"train: {report.summary()}", flush=True)
    elif resume is not None:
        init_from = resume.get("init_from")
    state = TrainState(
        model=model, net=model, optimizer=_optimizer(cfg, model), device=device, peak_lr=cfg.lr,
        loss_fn=MultiHeadLoss(weights=cfg.loss_weights, label_smoothing=cfg.label_smoothing,
                              grapheme_weight=cfg.grapheme_loss_weight, part_weight=cfg.root_parts_loss_weight),
        augment=BatchAugmenter(cfg.affine_degrees, cfg.affine_scale, cfg.affine_translate, cfg.affine_shear,
                               cfg.cutmix_p, cfg.mixup_p, cfg.mix_alpha, device=device, erase_p=cfg.erase_p),
        ema=ModelEMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None,
        amp=cfg.amp and cuda, channels_last=cfg.channels_last, grad_clip=cfg.grad_clip, world=world)
    if resume is not None:
        state.load_state_dict(resume)
        set_rng_state(resume["rng"])
    if world > 1:  # a frozen backbone during head warm-up leaves parameters without gradients
        state.net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if cuda else None, find_unused_parameters=cfg.head_warmup_epochs > 0)
    schedule = Schedule(cfg.schedule, steps_per_epoch * cfg.epochs, cfg.warmup, cfg.time_budget)

    # ---- the run folder (the data is checked: only now is config.json written)
    if is_main:
        _write_config(run, cfg, {"init_from": init_from} if init_from else {})
        write_val_ids(run, src.val_ids)
    meta = {"image_size": int(cfg.image_size), "preprocess": dict(src.crop_params), "train_config": cfg.to_dict(),
            "n_val": int(src.n_val), "init_from": init_from,
            "data_source": "synthetic-stream" if cfg.synthetic_stream else "folder"}
    if not cfg.synthetic_stream:  # the real labels' class counts and triples: rendered images are not counted
        meta.update(training_label_record(getattr(src.train_set, "real", src.train_set).labels))
    prior_shift = None
    if cfg.prior_power:  # carried for inference; validation scores with it, so best.pt is chosen as it predicts
        meta["inference"] = {"prior_power": float(cfg.prior_power)}
        prior_shift = [torch.as_tensor(cfg.prior_power * head, dtype=torch.float32, device=device)
                       for head in log_prior(meta["class_counts"])]
    show = cfg.progress and is_main  # bars; the one line per epoch is printed either way
    budget = f", time budget {cfg.time_budget:.0f}s" if cfg.time_budget else ""
    if is_main:
        tqdm.write(f"train: {src.n_train} images, val: {src.n_val}, {world} process(es) on {device}, "
                   f"{steps_per_epoch} steps/epoch, {cfg.epochs} epochs{budget} -> {cfg.out_dir}")

    # ---- the epochs
    clock = Clock(float(resume.get("seconds", 0.0)) if resume is not None else 0.0)
    while state.epoch < cfg.epochs and not (state.step and schedule.done(state.step, clock())):
        epoch = state.epoch
        sampler.set_epoch(epoch)
        set_stream_epoch(src.train_set, epoch)
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", dynamic_ncols=True,
                   disable=not show)
        train_loss, _ = train_one_epoch(state, train_loader, schedule, clock, max_steps=steps_per_epoch,
                                        seed=epoch_seed(cfg.seed, epoch, rank, 0), bar=bar, log_every=cfg.log_every,
                                        head_only=epoch < cfg.head_warmup_epochs)
        state.epoch += 1
        last = state.epoch >= cfg.epochs or schedule.done(state.step, clock())
        scores = y_pred = None
        val_loss = math.nan
        if last or state.epoch % cfg.val_every == 0:
            scores, val_loss, y_pred = validate(state, val_loader, src.val_labels, src.val_positions, prior_shift)
            bar.set_postfix(loss=f"{train_loss:.4f}", val_loss=f"{val_loss:.4f}",
                            val_recall=f"{scores['weighted']:.4f}")
        bar.close()
        state.history.append({"epoch": state.epoch, "step": state.step, "train_loss": train_loss, "val_loss": val_loss,
                              "val_weighted": scores["weighted"] if scores else math.nan,
                              **{f"val_{c}": scores[c] if scores else math.nan for c in COMPONENTS},
                              "lr": state.lr, "seconds": clock()})
        if is_main:
            save_checkpoints(state, run, {**meta, "seconds": clock(), "rng": rng_state()}, scores, y_pred,
                             src.val_labels, save_last=save_last)
            if folder is not None and not folder.committed:
                folder.commit()
                run = folder.work
            seen = (f"val recall {scores['weighted']:.4f} ("
                    + ", ".join(f"{SHORT_NAMES[c]} {scores[c]:.4f}" for c in COMPONENTS) + ")"
                    if scores else f"train loss {train_loss:.4f}")
            tqdm.write(f"epoch {state.epoch}/{cfg.epochs}: {seen}, {clock():.0f}s")
        barrier()
    return Path(cfg.out_dir)


def train(cfg: TrainConfig) -> Path:
    """Train a model as ``cfg`` says; returns the run folder. Works alone or under ``torchrun``."""
    _, world, _ = dist_env()
    own_group = False
    if world > 1 and not is_dist():
        dist.init_process_group("nccl" if torch.cuda.is_available() and cfg.device != "cpu" else "gloo")
        own_group = True
    try:
        return _run(cfg)
    finally:
        if own_group and is_dist():
            dist.destroy_process_group()
