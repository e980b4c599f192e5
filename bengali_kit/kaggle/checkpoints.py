"""The checkpoints a package carries: checked up front, then written slim (weights and what inference needs).

A training checkpoint also holds the optimizer, scheduler, scaler and RNG state, which inference never
uses and which can double its size. The inference settings (``inference``: the class-prior correction
``prior_power``) and the class counts they need are kept, so the kernel predicts as ``predict`` does.
A float16 state dict (the shipped ``weights/*.pt``) stays float16 in the package; loading casts it back
to float32.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..components import N_CLASSES
from ..errors import DataError
from ..model import load_checkpoint, load_model, save_torch
from ..priors import resolve_prior_power

#: Checkpoint keys kept in the package: enough to rebuild the model, preprocess like training and predict
#: with the checkpoint's class-prior correction.
KEEP_KEYS = ("model", "model_config", "image_size", "preprocess", "metric", "class_counts", "inference")
_REQUIRED = ("model", "model_config", "image_size")


def check_package_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load ``path`` and make sure the package can use it; returns the slim checkpoint (nothing written).

    DataError (one line, naming the file) for a missing, unreadable or hand-edited file: a ``model`` that
    is not a state dict of tensors, non-finite weights, a missing key, or weights that do not rebuild.
    """
    path = Path(path)
    ckpt = load_checkpoint(path)  # missing, unreadable, a hand-edited ``model``, NaN/inf weights, bad image_size
    for key in _REQUIRED:
        if key not in ckpt:
            raise DataError(path, f"checkpoint has no {key!r} entry (not a bengali_kit training checkpoint?)")
    if not isinstance(ckpt["image_size"], int) or isinstance(ckpt["image_size"], bool):
        raise DataError(path, f"image_size {ckpt['image_size']!r} is not an integer")
    resolve_prior_power(ckpt, path)  # a prior power without class counts: refused here, not on Kaggle
    state = ckpt["model"]
    slim = {k: ckpt[k] for k in KEEP_KEYS if k in ckpt}
    slim["model"] = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    slim.setdefault("preprocess", {})
    try:
        model, _ = load_model(slim)  # the weights must rebuild the model the config describes
    except DataError as err:
        raise DataError(path, err.problem) from None
    n_classes = tuple(int(n) for n in model.cfg.n_classes)
    if n_classes != tuple(N_CLASSES):  # predict and the kernel refuse it: refused here, not on Kaggle
        raise DataError(path, f"model predicts {n_classes} classes, the competition has {tuple(N_CLASSES)}")
    return slim


def summary(slim: Mapping[str, Any], source: Path) -> dict[str, Any]:
    """What the manifest records of one checkpoint."""
    cfg = slim["model_config"]
    dtypes = sorted({str(v.dtype).replace("torch.", "") for v in slim["model"].values() if v.is_floating_point()})
    metric = slim.get("metric")
    return {"image_size": int(slim["image_size"]), "model": cfg.get("name", "?") if isinstance(cfg, Mapping) else "?",
            "metric": metric if isinstance(metric, (int, float)) and math.isfinite(metric) else None,
            "dtype": "/".join(dtypes), "source": source.name,
            "prior_power": resolve_prior_power(slim, source)}


def write_checkpoint(slim: Mapping[str, Any], dst: str | Path) -> Path:
    """Write a checked slim checkpoint atomically (a full disk is a one-line DataError, see ``save_torch``)."""
    return save_torch(dict(slim), dst)


def checkpoint_names(paths: Sequence[Path]) -> list[str]:
    """File names inside the package: the source's stem, prefixed by its position when there are several."""
    names: list[str] = []
    seen: set[str] = set()
    for i, p in enumerate(paths):
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", p.stem) or "model"
        name = f"{stem}.pt" if len(paths) == 1 else f"{i}_{stem}.pt"
        while name in seen:
            name = f"{i}_{name}"
        seen.add(name)
        names.append(name)
    return names
