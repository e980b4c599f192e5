"""Starting a run from another run's weights (``train --init CKPT``) and training the heads alone.

``load_init_weights`` copies what fits: everything when the architectures agree; otherwise the backbone
(and the neck and heads too when those fit, e.g. when only the pooling differs), and says which.
``set_head_only`` freezes the backbone (weights and batch-norm statistics) for warm-up epochs, so that fresh
heads do not send large gradients into pretrained features.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from .errors import DataError
from .model import _unwrap, load_checkpoint

__all__ = ["InitReport", "load_init_weights", "set_backbone_trainable", "set_head_only"]


@dataclass
class InitReport:
    """What :func:`load_init_weights` copied: ``mode`` is "all", "backbone+heads" or "backbone"."""

    path: str
    mode: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # in the model but left at their initial values
    source_config: dict = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the console and ``config.json``."""
        what = {"all": "all weights", "backbone+heads": "backbone, neck and heads",
                "backbone": "the backbone only"}[self.mode]
        extra = f"; kept fresh: {', '.join(_group_names(self.skipped))}" if self.skipped else ""
        return f"initialised from {self.path}: {what} ({len(self.loaded)} tensors){extra}"

    def to_dict(self) -> dict:
        return {"path": self.path, "mode": self.mode, "n_loaded": len(self.loaded), "skipped": self.skipped}


def _group_names(keys: list[str]) -> list[str]:
    out: list[str] = []
    for k in keys:
        g = k.split(".")[0] if not k.startswith("heads.") else ".".join(k.split(".")[:2])
        if g not in out:
            out.append(g)
    return out


def load_init_weights(model: nn.Module, ckpt_path: str | Path) -> InitReport:
    """Copy the weights of a kit checkpoint into ``model`` where they fit; return what was done.

    DataError when not even the backbone fits (another EfficientNet variant).
    """
    path = Path(ckpt_path)
    ckpt = load_checkpoint(path)
    src = ckpt["model"]
    bare = _unwrap(model)
    own = bare.state_dict()
    fits = {k for k, v in own.items() if k in src and tuple(src[k].shape) == tuple(v.shape)}
    backbone = [k for k in own if k.startswith("backbone.")]
    if not backbone or not all(k in fits for k in backbone):
        bad = next((k for k in backbone if k not in fits), "backbone")
        theirs = ckpt.get("model_config", {}).get("name", "?")
        raise DataError(path, f"its backbone ({theirs}) does not fit {bare.cfg.name}: {bad} differs")
    if fits == set(own) == set(src):
        mode, keys = "all", sorted(own)
    else:  # e.g. GeM's p on one side only, or heads of another size
        top = [k for k in own if k.startswith(("neck.", "heads."))]
        if top and all(k in fits for k in top):
            mode, keys = "backbone+heads", [k for k in own if k in fits]
        else:
            mode, keys = "backbone", backbone
    bare.load_state_dict({k: src[k] for k in keys}, strict=False)
    skipped = [k for k in own if k not in set(keys)]
    return InitReport(str(path), mode, list(keys), skipped, dict(ckpt.get("model_config", {})))


def set_backbone_trainable(model: nn.Module, trainable: bool) -> None:
    """Switch gradients of the backbone's parameters on or off (pooling, neck and heads stay trainable)."""
    for p in _unwrap(model).backbone.parameters():
        p.requires_grad_(trainable)


def set_head_only(model: nn.Module, enabled: bool) -> None:
    """Freeze (``enabled``) or unfreeze the backbone for an epoch; call after ``model.train()``.

    Frozen: no gradients to the backbone and its batch norms in eval mode (statistics kept).
    """
    bare = _unwrap(model)
    set_backbone_trainable(bare, not enabled)
    if enabled:
        bare.backbone.eval()

