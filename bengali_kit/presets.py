"""Named sets of training settings (``bengali-kit train --preset NAME``); options given on the command line win.

- ``kaggle``: the real competition data on a Kaggle GPU (P100 or 2×T4): efficientnet-b3 at 128 px, batch
  128, 40 epochs of AdamW one-cycle, GeM, label smoothing, cutmix, an EMA of the weights.
- ``kaggle-pretrain``: the optional first stage of ``kaggle``: the same model on the on-the-fly synthetic
  stream (no data folder needed); then ``--preset kaggle --init <that run>/last.pt``.
- ``cpu-real``: the recipe measured on the CPU on the real sample (``benchmarks/real_accuracy.py``): b0 at 64 px.
"""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any

__all__ = ["PRESETS", "apply_preset", "explicit_fields"]

_KAGGLE: dict[str, Any] = {
    "model": "efficientnet-b3", "image_size": 128, "pooling": "gem", "batch_size": 128, "epochs": 40,
    "optimizer": "adamw", "lr": 2e-3, "weight_decay": 1e-2, "schedule": "onecycle", "warmup": 0.05,
    "label_smoothing": 0.1, "cutmix_p": 0.5, "mixup_p": 0.0, "mix_alpha": 1.0,
    "affine_degrees": 8.0, "affine_scale": (0.9, 1.1), "affine_translate": 0.06, "affine_shear": 8.0,
    "val_fraction": 0.05, "num_workers": 4, "amp": True, "channels_last": True, "ema_decay": 0.999,
}

PRESETS: dict[str, dict[str, Any]] = {
    "kaggle": _KAGGLE,
    "kaggle-pretrain": {**_KAGGLE, "synthetic_stream": True, "steps_per_epoch": 2000, "epochs": 6,
                        "cutmix_p": 0.0, "val_fraction": 0.05},
    "cpu-real": {"model": "efficientnet-b0", "image_size": 64, "pooling": "gem", "batch_size": 64,
                 "optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-2, "label_smoothing": 0.1,
                 "cutmix_p": 0.0, "ema_decay": 0.99, "head_warmup_epochs": 1},
}


def explicit_fields(args: argparse.Namespace, cls: type) -> set[str]:
    """Fields of dataclass ``cls`` whose value in ``args`` differs from the dataclass default (= given)."""
    out = set()
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        value = getattr(args, f.name, default)
        if isinstance(default, tuple) and value is not None:
            value = tuple(value)
        if value != default:
            out.add(f.name)
    return out


def apply_preset(cfg, name: str | None, explicit: set[str] = frozenset()):
    """A copy of ``cfg`` (a ``TrainConfig``) with preset ``name``'s values, except for ``explicit`` fields.

    Keys the config does not know are ignored (a preset may name options of a newer kit).
    """
    if not name:
        return cfg
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    known = {f.name for f in dataclasses.fields(cfg)}
    changes = {k: v for k, v in PRESETS[name].items() if k in known and k not in explicit}
    return dataclasses.replace(cfg, **changes)
