"""Pretraining on the on-the-fly synthetic stream, watched on real crops; writes a kit checkpoint.

``pretrain(PretrainConfig(...)) -> run folder`` with ``last.pt`` (weights as an EMA, usable by
``train --init``; also optimiser state so an interrupted run continues with ``resume=True``) and
``history.csv`` (step, loss, real-crop recalls, seconds). The real crops only measure transfer: they never
choose a checkpoint, so a model pretrained here has seen no real image.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .files import atomic_path, atomic_write_text
from .model import model_input
from .synth_stream import StreamConfig, SyntheticGraphemes

__all__ = ["PretrainConfig", "pretrain", "real_crops_preprocessed", "evaluate_arrays"]


@dataclass
class PretrainConfig:
    out_dir: str = "runs/pretrain"
    stream: StreamConfig = field(default_factory=StreamConfig)
    model: str = "efficientnet-b0"
    pooling: str = "gem"
    steps: int = 3000
    budget_s: float | None = None  # wall-clock budget: the lr schedule follows time, and training stops at it
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-2
    warmup: float = 0.03
    label_smoothing: float = 0.0
    ema_decay: float = 0.999  # 0: no EMA
    affine_degrees: float = 5.0
    num_workers: int = 1
    threads: int = 1
    eval_every: int = 250
    eval_npz: str | None = None  # real crops to watch transfer on (e.g. real_sample_64.npz)
    eval_limit: int | None = 1292  # how many of them (the first ones of a seeded shuffle)
    resume: bool = False
    progress: bool = True

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stream"] = self.stream.to_dict()
        return d


def real_crops_preprocessed(npz: str | Path, size: int, index: np.ndarray | None = None,
                            ) -> tuple[np.ndarray, np.ndarray]:
    """Real crops as the kit sees them after import: placed on frames, then ``crop_resize`` at ``size``.

    Returns (uint8 (N, size, size) ink bright, int64 labels (N, 3)).
    """
    from .preprocess import crop_resize_batch
    from .realdata import load_crops, place_crops

    crops = load_crops(npz)
    if index is not None:
        crops = crops.subset(np.asarray(index))
    out = np.empty((len(crops), size, size), dtype=np.uint8)
    for s in range(0, len(crops), 512):
        out[s:s + 512] = crop_resize_batch(place_crops(crops.images[s:s + 512]), size)[0]
    return out, crops.labels


@torch.no_grad()
def evaluate_arrays(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> dict:
    """Component recalls and the weighted score of ``model`` on preprocessed uint8 images."""
    from .metrics import component_recalls

    was = model.training
    model.eval()
    preds = []
    for s in range(0, len(images), batch_size):
        x = model_input(torch.from_numpy(np.ascontiguousarray(images[s:s + batch_size])))
        logits = model(x)
        preds.append(torch.stack([z.argmax(1) for z in logits], 1).numpy())
    model.train(was)
    return component_recalls(labels, np.concatenate(preds))


def _lr_factor(progress: float, warmup: float) -> float:
    """Linear warm-up over the first ``warmup`` of the run, then cosine down to 2 % of the peak."""
    if progress < warmup:
        return max(progress / warmup, 0.01)
    t = min((progress - warmup) / max(1 - warmup, 1e-9), 1.0)
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t))


def optimizer_step(model: torch.nn.Module, opt: torch.optim.Optimizer, loss_fn, lr: float, x: torch.Tensor,
                   labels: torch.Tensor, aug=None, ema=None) -> torch.Tensor:
    """One plain float32 training step at learning rate ``lr``: augment, loss, backward, step, EMA update.

    Shared by pretraining and the real-accuracy benchmark's fine-tuning loop (``train.py`` has its own,
    with AMP, gradient clipping and DDP). Returns the detached loss.
    """
    for g in opt.param_groups:
        g["lr"] = lr
    targets = labels
    if aug is not None:
        x, targets = aug(x, labels)
    loss = loss_fn(model(x), targets)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if ema is not None:
        ema.update(model)
    return loss.detach()


def pretrain(cfg: PretrainConfig) -> Path:
    """Train on rendered graphemes for ``cfg.steps`` steps or ``cfg.budget_s`` seconds, whichever ends first;
    returns the run folder (see module doc)."""
    from tqdm.auto import tqdm

    from .augment import BatchAugmenter
    from .ema import ModelEMA
    from .losses import MultiHeadLoss
    from .model import ModelConfig, build_model, load_checkpoint, save_checkpoint
    from .optim import lars_param_groups
    from .preprocess import CropParams

    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
    torch.manual_seed(cfg.stream.seed)
    model = build_model(ModelConfig(name=cfg.model, pooling=cfg.pooling))
    opt = torch.optim.AdamW(lars_param_groups(model, cfg.weight_decay), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = ModelEMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None
    start, history, elapsed = 0, [], 0.0
    if cfg.resume and (out / "last.pt").is_file():
        ck = load_checkpoint(out / "last.pt")
        model.load_state_dict(ck["raw_model"])
        opt.load_state_dict(ck["optimizer"])
        if ema is not None and "ema" in ck:
            ema.load_state_dict(ck["ema"])
        start, history, elapsed = int(ck["step"]), list(ck.get("history", [])), float(ck.get("seconds", 0.0))
    loss_fn = MultiHeadLoss(label_smoothing=cfg.label_smoothing)
    aug = BatchAugmenter(cfg.affine_degrees, (0.9, 1.1), 0.04, 5.0, seed=cfg.stream.seed)
    data = SyntheticGraphemes(StreamConfig(**{**cfg.stream.to_dict(), "length": cfg.steps * cfg.batch_size}))
    sampler = range(start * cfg.batch_size, cfg.steps * cfg.batch_size)
    loader = torch.utils.data.DataLoader(data, batch_size=cfg.batch_size, sampler=sampler,
                                         num_workers=cfg.num_workers, drop_last=True,
                                         persistent_workers=False, prefetch_factor=4 if cfg.num_workers else None)
    eval_set = None
    if cfg.eval_npz:
        rng = np.random.default_rng(0)
        n = len(np.load(cfg.eval_npz)["grapheme_root"])
        idx = np.sort(rng.permutation(n)[: cfg.eval_limit or n])
        eval_set = real_crops_preprocessed(cfg.eval_npz, cfg.stream.size, idx)

    def save(step: int, scores: dict) -> None:
        net = ema.module if ema is not None else model
        save_checkpoint(out / "last.pt", net, image_size=int(cfg.stream.size),
                        preprocess=CropParams().asdict(), train_config=cfg.to_dict(), epoch=0,
                        metric=float(scores.get("weighted", float("nan"))), scores=dict(scores),
                        raw_model=model.state_dict(), optimizer=opt.state_dict(),
                        ema=ema.state_dict() if ema is not None else {}, step=int(step),
                        history=[dict(h) for h in history], seconds=float(elapsed), data_source="synthetic-stream")
        with atomic_path(out / "history.csv") as tmp:
            pd.DataFrame(history).to_csv(tmp, index=False, float_format="%.6g")

    model.train()
    t0, run_loss, n_loss = time.perf_counter(), 0.0, 0
    bar = tqdm(total=cfg.steps, initial=start, desc="pretrain", disable=not cfg.progress, dynamic_ncols=True)
    step = start
    def progress() -> float:
        t = step / cfg.steps
        if cfg.budget_s:
            t = max(t, (elapsed + time.perf_counter() - t0) / cfg.budget_s)
        return t

    for images, labels in loader:
        x = model_input(images)
        loss = optimizer_step(model, opt, loss_fn, cfg.lr * _lr_factor(progress(), cfg.warmup), x, labels, aug, ema)
        step += 1
        run_loss += float(loss.detach())
        n_loss += 1
        bar.update(1)
        done = step == cfg.steps or progress() >= 1.0
        if step % cfg.eval_every == 0 or done:
            scores = {}
            if eval_set is not None:
                scores = evaluate_arrays(ema.module if ema is not None else model, *eval_set)
            now = time.perf_counter()
            elapsed += now - t0
            t0 = now
            history.append({"step": step, "images": step * cfg.batch_size, "loss": run_loss / max(n_loss, 1),
                            **{f"real_{k}": v for k, v in scores.items()}, "seconds": elapsed})
            bar.write(f"step {step}: loss {run_loss / max(n_loss, 1):.4f}"
                      + (f", real recall {scores['weighted']:.4f}" if scores else "") + f", {elapsed:.0f}s")
            run_loss, n_loss = 0.0, 0
            save(step, scores)
        if done:
            break
    bar.close()
    return out
