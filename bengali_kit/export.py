"""Turning a run's checkpoint into a small file to ship (``bengali-kit export``): the weights alone.

A ``last.pt`` also holds the optimizer, the raw weights beside their EMA, RNG states and the history;
inference and ``train --init`` need none of it. ``export`` keeps the weights that are validated (the EMA
when the run kept one), the model config, image size, crop parameters and what the model card reports
(scores, config, training seconds), what the model saw in training (``class_counts``, ``train_triples``) and
the inference settings (``inference``: ``prior_power``, settable here), optionally as float16 (half the
size; loading casts back to float32).
"""
from __future__ import annotations

from pathlib import Path

import torch

from .errors import DataError
from .files import check_output_file
from .model import check_checkpoint_structure, load_checkpoint, save_torch
from .priors import resolve_prior_power

__all__ = ["export_weights", "KEEP"]

#: What an exported checkpoint keeps besides the weights.
KEEP = ("model_config", "image_size", "preprocess", "metric", "scores", "n_val", "train_config", "init_from",
        "epoch", "step", "seconds", "data_source", "kit_version", "class_counts", "train_triples", "inference")


def export_weights(src: str | Path, dst: str | Path, half: bool = True, overwrite: bool = False,
                   prior_power: float | None = None) -> dict:
    """Write the shippable part of checkpoint ``src`` to ``dst``; returns the exported checkpoint.

    ``prior_power``: the class-prior correction k that inference applies by default (None: keep ``src``'s).
    """
    src, dst = Path(src), Path(dst)
    check_output_file(dst, overwrite=overwrite, inputs=[src])  # never the checkpoint it reads
    ckpt = load_checkpoint(src)
    power = resolve_prior_power(ckpt, src, prior_power)  # k > 0 without class counts fails before writing
    ema = ckpt.get("ema")
    weights = ema["model"] if isinstance(ema, dict) and isinstance(ema.get("model"), dict) else ckpt["model"]
    out = {key: ckpt[key] for key in KEEP if key in ckpt}
    if prior_power is not None:
        out["inference"] = {**(ckpt.get("inference") or {}), "prior_power": power}
    out["model"] = {k: (v.half() if half and v.is_floating_point() else v).contiguous() for k, v in weights.items()}
    out["exported_from"] = {"file": src.name, "weights": "ema" if weights is not ckpt["model"] else "raw"}
    check_checkpoint_structure(out, dst)  # finite, a state dict of tensors, a size the model takes
    if half and any(v.is_floating_point() and not torch.isfinite(v).all() for v in out["model"].values()):
        raise DataError(src, "weights overflow float16; export without --half")
    save_torch(out, dst)
    return out
