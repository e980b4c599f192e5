"""The one training engine: the schedule, one epoch of optimizer steps, validation, checkpoints.

Every training in the kit goes through these functions, called in order by ``train.train`` (a fresh run, a
fine-tune with ``--init``, pretraining on the synthetic stream, the benchmarks):

    state = TrainState(...)                       # model, optimizer, EMA, loss, augmentation, counters
    for epoch in ...:
        loss = train_one_epoch(state, loader, schedule, ...)   # stops early when the time budget is spent
        scores, val_loss, y_pred = validate(state, val_loader, ...)
        save_checkpoints(state, run_dir, ...)     # best.pt when improved, last.pt always, history, curves

The learning rate follows ``Schedule`` (warm-up then cosine or one-cycle) over the run's progress: the
fraction of its steps done or, under a time budget, of its seconds spent, whichever is further along.
"""
from __future__ import annotations

import math
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
from torch import nn

from .augment import BatchAugmenter
from .components import COMPONENTS
from .ema import ModelEMA
from .files import atomic_path
from .finetune import set_head_only
from .losses import MultiHeadLoss
from .metrics import component_recalls, per_class_recall
from .model import model_input, save_checkpoint
from .plots import plot_history

__all__ = ["Schedule", "Clock", "TrainState", "TrainingDiverged", "train_one_epoch", "validate",
           "save_checkpoints", "epoch_seed", "seed_everything", "rng_state", "set_rng_state", "HISTORY_COLUMNS"]

HISTORY_COLUMNS = ("epoch", "step", "train_loss", "val_loss", "val_weighted", *(f"val_{c}" for c in COMPONENTS),
                   "lr", "seconds")


class TrainingDiverged(ValueError):
    """The loss or the weights became NaN/inf: nothing is saved as a model from that point on."""


# ---------------------------------------------------------------- schedule and time
class Schedule:
    """Multiplier of the peak learning rate over a run's progress t in [0, 1].

    ``onecycle``: linear warm-up from 1/25 of the peak, then cosine down to ~0; ``cosine``: warm-up from 0,
    then cosine to 0; ``constant``: 1. Progress is ``steps / total_steps`` or, with ``budget_s``, the share
    of the time budget spent, whichever is larger: so a time-budgeted run anneals fully when its time ends.
    """

    def __init__(self, kind: str, total_steps: int, warmup: float, budget_s: float | None = None):
        if kind not in ("onecycle", "cosine", "constant"):
            raise ValueError(f"unknown schedule {kind!r}")
        self.kind, self.total, self.warmup, self.budget = kind, max(int(total_steps), 1), float(warmup), budget_s

    def progress(self, step: int, seconds: float) -> float:
        """How far along the run is after ``step`` steps and ``seconds`` of training."""
        t = step / self.total
        if self.budget:
            t = max(t, seconds / self.budget)
        return t

    def done(self, step: int, seconds: float) -> bool:
        return self.progress(step, seconds) >= 1.0

    def factor(self, t: float) -> float:
        """The learning-rate multiplier at progress ``t``."""
        if self.kind == "constant":
            return 1.0
        t = min(max(t, 0.0), 1.0)
        start = 1 / 25 if self.kind == "onecycle" else 0.0
        if t < self.warmup:
            return start + (1 - start) * t / self.warmup
        u = (t - self.warmup) / max(1 - self.warmup, 1e-9)
        floor = 1e-4 if self.kind == "onecycle" else 0.0
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * u))


class Clock:
    """Seconds of training: those of earlier sessions (resume) plus this process's since the clock was made."""

    def __init__(self, before: float = 0.0):
        self.before, self._t0 = float(before), time.perf_counter()

    def __call__(self) -> float:
        return self.before + time.perf_counter() - self._t0


# ---------------------------------------------------------------- randomness
def epoch_seed(seed: int, epoch: int, rank: int, stream: int) -> int:
    """A seed for (run seed, epoch, rank, purpose): everything random in an epoch derives from it."""
    return int(np.random.SeedSequence([seed, epoch, rank, stream]).generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Global RNG states as tensors / lists / ints so that ``weights_only=True`` loading works."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, pystate, pygauss = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
             "python": [int(version), list(pystate), pygauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, pystate, pygauss = state["python"]
    random.setstate((version, tuple(pystate), pygauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------- state
@dataclass
class TrainState:
    """Everything that changes while training, and what a step needs."""

    model: nn.Module  # the bare BengaliNet (saved, EMA source)
    net: nn.Module  # what the training forward pass calls: ``model``, or it wrapped in DDP
    optimizer: torch.optim.Optimizer
    loss_fn: MultiHeadLoss
    augment: BatchAugmenter | None  # None: the batch as it comes
    device: torch.device
    peak_lr: float
    ema: ModelEMA | None = None
    amp: bool = False  # float16 autocast + GradScaler (CUDA only)
    channels_last: bool = False
    grad_clip: float = 0.0
    world: int = 1
    scaler: torch.amp.GradScaler = field(init=False)
    step: int = 0  # optimizer steps done
    epoch: int = 0  # epochs done
    history: list[dict] = field(default_factory=list)
    best: float = -math.inf

    def __post_init__(self) -> None:
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        if self.channels_last:  # faster on CUDA and on the CPU (~1.4x per b0 step with oneDNN); inputs follow
            # in ``to_input``. In place: the optimizer keeps the same Parameter objects.
            self.model.to(memory_format=torch.channels_last)
            if self.ema is not None:
                self.ema.module.to(memory_format=torch.channels_last)

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are validated and saved as best.pt: the EMA when there is one."""
        return self.ema.module if self.ema is not None else self.model

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def autocast(self):
        return torch.autocast(device_type="cuda", dtype=torch.float16) if self.amp else nullcontext()

    def to_input(self, images: torch.Tensor) -> torch.Tensor:
        x = model_input(images.to(self.device, non_blocking=True))
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def state_dict(self) -> dict:
        """What last.pt needs besides the weights to continue exactly."""
        out = {"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(), "step": int(self.step),
               "epoch": int(self.epoch), "history": [dict(r) for r in self.history], "best_metric": float(self.best)}
        if self.ema is not None:
            out["ema"] = self.ema.state_dict()
        return out

    def load_state_dict(self, ckpt: dict) -> None:
        """Restore weights and counters from a last.pt."""
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.amp and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None and ckpt.get("ema"):
            self.ema.load_state_dict(ckpt["ema"])
        self.step, self.epoch = int(ckpt["step"]), int(ckpt["epoch"])
        self.history = [dict(r) for r in ckpt.get("history", [])]
        self.best = float(ckpt.get("best_metric", -math.inf))


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _mean_across_ranks(total: float, count: int, device: torch.device, world: int) -> float:
    if world > 1:
        t = torch.tensor([total, count], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        total, count = t.tolist()
    return total / max(count, 1)


# ---------------------------------------------------------------- the loop
def train_step(state: TrainState, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """One optimizer step on a batch: augment on the device, forward, backward, step, EMA. Returns the loss."""
    x = state.to_input(images)
    y = labels.to(state.device, non_blocking=True)
    x, targets = state.augment(x, y) if state.augment is not None else (x, y)
    with state.autocast():
        if state.loss_fn.has_aux:  # training-only heads train alongside (through DDP's forward)
            logits, aux = state.net(x, with_aux=True)
            loss = state.loss_fn(logits, targets, aux.get("grapheme"), aux.get("parts"))
        else:
            loss = state.loss_fn(state.net(x), targets)
    if not torch.isfinite(loss.detach()).item():
        raise TrainingDiverged(f"training diverged: the loss is {float(loss.detach())} at step {state.step + 1} "
                               f"(lr {state.lr:.3g}); try a lower --lr")
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()
    if state.grad_clip > 0:
        state.scaler.unscale_(state.optimizer)
        torch.nn.utils.clip_grad_norm_(state.net.parameters(), state.grad_clip)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    if state.ema is not None:
        state.ema.update(state.model)
    state.step += 1
    return loss.detach()


def train_one_epoch(state: TrainState, loader: Sequence, schedule: Schedule, clock: Callable[[], float], *,
                    max_steps: int, seed: int, head_only: bool = False, bar: Any = None,
                    log_every: int = 10) -> tuple[float, int]:
    """Up to ``max_steps`` optimizer steps over ``loader``; stops early when ``schedule`` is done.

    ``seed`` seeds every random draw of the epoch (dropout, augmentation), so a resumed run repeats it.
    ``head_only`` freezes the backbone (weights and batch-norm statistics) for a head warm-up epoch.
    Returns (mean training loss over all ranks, steps taken).
    """
    state.net.train()
    set_head_only(state.model, head_only)
    seed_everything(seed)
    if state.augment is not None:
        state.augment.reseed(seed + 1)
    total, count = torch.zeros((), dtype=torch.float64, device=state.device), 0
    for i, (images, labels) in enumerate(loader):
        if i >= max_steps:
            break
        _set_lr(state.optimizer, state.peak_lr * schedule.factor(schedule.progress(state.step + 1, clock())))
        total += train_step(state, images, labels).double()
        count += 1
        if bar is not None:
            bar.update(1)
            if count % log_every == 0:
                bar.set_postfix(loss=f"{total.item() / count:.4f}", lr=f"{state.lr:.2e}")
        if schedule.done(state.step, clock()):  # checked after the step: a run always takes one
            break
    return _mean_across_ranks(total.item(), count, state.device, state.world), count


@torch.no_grad()
def validate(state: TrainState, loader: Sequence, val_labels: np.ndarray, positions: np.ndarray,
             prior_shift: Sequence[torch.Tensor] | None = None) -> tuple[dict, float, np.ndarray]:
    """Predict this rank's validation shard, gather all shards, score the whole validation set.

    ``prior_shift``: each head's k * log class prior, subtracted from the logits before the argmax (the
    class-prior correction, as ``priors.prior_corrected`` applies it to probabilities); None: plain argmax.
    Returns (component recalls and "weighted", mean loss, predictions (n_val, 3) in ``val_labels`` order).
    """
    net = state.eval_model  # never the DDP wrapper: ranks see different numbers of batches
    net.eval()
    if state.world > 1:
        # Each rank's batch-norm running stats drifted on its own shard: validate with rank 0's (the ones
        # saved in the checkpoints) so every shard is scored by the same model.
        for buf in net.buffers():
            dist.broadcast(buf, 0)
    preds, loss_sum = [], 0.0
    for images, labels in loader:
        x = state.to_input(images)
        y = labels.to(state.device)
        with state.autocast():
            logits = net(x)
            loss_sum += float(state.loss_fn(logits, y)) * len(y)
        if prior_shift is not None:  # argmax of log p - k log prior = argmax of the logits - k log prior
            logits = [z.float() - shift for z, shift in zip(logits, prior_shift)]
        preds.append(torch.stack([z.argmax(1) for z in logits], 1).cpu())
    pred = torch.cat(preds).numpy() if preds else np.zeros((0, 3), dtype=np.int64)
    pos = positions
    if state.world > 1:
        gathered: list = [None] * state.world
        dist.all_gather_object(gathered, (pos, pred, loss_sum))
        pos = np.concatenate([g[0] for g in gathered])
        pred = np.concatenate([g[1] for g in gathered])
        loss_sum = sum(g[2] for g in gathered)
    y_pred = np.empty_like(val_labels)
    y_pred[pos] = pred
    scores = {k: float(v) for k, v in component_recalls(val_labels, y_pred).items()}
    return scores, loss_sum / max(len(val_labels), 1), y_pred


# ---------------------------------------------------------------- checkpoints
def _check_finite(model: nn.Module, where: str) -> None:
    for name, value in model.state_dict().items():
        if value.dtype.is_floating_point and not torch.isfinite(value).all():
            raise TrainingDiverged(f"training diverged: {name} holds NaN/inf weights; {where} was not written "
                                   f"(try a lower --lr)")


def save_checkpoints(state: TrainState, run_dir: Path, meta: dict, scores: dict | None,
                     y_pred: np.ndarray | None = None, val_labels: np.ndarray | None = None,
                     save_last: Callable[..., Path] = save_checkpoint) -> bool:
    """Write best.pt (when ``scores`` beat the best so far), last.pt, history.csv, curves.png.

    ``meta`` holds what both checkpoints carry (image size, crop parameters, config, ...). A model with
    NaN/inf weights is never written. Returns whether best.pt was written. A full disk or a read-only folder
    is a one-line ``DataError`` naming the file (``files.atomic_path``).
    """
    _check_finite(state.eval_model, "best.pt")
    _check_finite(state.model, "last.pt")
    improved = scores is not None and scores["weighted"] > state.best
    info = {**meta, "epoch": int(state.epoch), "step": int(state.step)}
    if scores is not None:
        info.update(metric=float(scores["weighted"]), scores=dict(scores))
    if improved:
        state.best = float(scores["weighted"])
        save_checkpoint(run_dir / "best.pt", state.eval_model, **info)
        if y_pred is not None:
            with atomic_path(run_dir / "val_per_class.csv") as tmp:
                per_class_recall(val_labels, y_pred).to_csv(tmp, index=False, float_format="%.6g")
    save_last(run_dir / "last.pt", state.model, **{**info, **state.state_dict()})
    write_history(run_dir, state.history)
    return improved


def write_history(run_dir: Path, history: list[dict]) -> None:
    """history.csv (one row per epoch) and its plot curves.png."""
    df = pd.DataFrame(history, columns=list(HISTORY_COLUMNS))
    with atomic_path(run_dir / "history.csv") as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    plt.close(plot_history(df, run_dir / "curves.png"))
