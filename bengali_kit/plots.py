"""Matplotlib figures for training runs (used by ``train``, the CLI and the notebooks).

Every function returns the ``Figure`` and, given ``path``, also saves it (atomically, PNG by default).
``pyplot`` is imported inside the functions so that importing the kit never chooses a backend; with no
display matplotlib falls back to Agg by itself. Close figures you do not show (``plt.close(fig)``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .components import COMPONENTS
from .files import atomic_path

__all__ = ["plot_history", "plot_per_class_recall", "plot_worst_classes", "save_figure"]

_SHORT = {"grapheme_root": "root", "vowel_diacritic": "vowel", "consonant_diacritic": "consonant"}


def _pyplot():
    # No matplotlib.use(): without a display matplotlib picks Agg itself; in a notebook it keeps inline.
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Save ``fig`` to ``path`` atomically (format from the suffix, PNG by default)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    return path


def _require(df: pd.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what} lacks column(s) {', '.join(missing)} (has {', '.join(map(str, df.columns))})")


def plot_history(history: pd.DataFrame | str | Path, path: str | Path | None = None):
    """Loss (train, val) and validation recall (weighted and per component) per epoch.

    ``history``: the run's ``history.csv`` (or its DataFrame) with columns epoch, train_loss, val_loss,
    val_weighted, val_<component> (as written by ``train``).
    """
    if not isinstance(history, pd.DataFrame):
        history = pd.read_csv(history)
    _require(history, ["epoch", "train_loss", "val_loss", "val_weighted"], "history")
    plt = _pyplot()
    fig, (ax_loss, ax_rec) = plt.subplots(1, 2, figsize=(10, 3.8))
    epochs = history["epoch"].to_numpy()
    marker = "o" if len(epochs) <= 30 else None
    ax_loss.plot(epochs, history["train_loss"], marker=marker, label="train")
    ax_loss.plot(epochs, history["val_loss"], marker=marker, label="validation")
    ax_loss.set(title="loss", xlabel="epoch", ylabel="weighted cross-entropy")
    ax_loss.legend()
    ax_rec.plot(epochs, history["val_weighted"], marker=marker, linewidth=2.5, color="black",
                label="weighted (metric)")
    for comp in COMPONENTS:
        col = f"val_{comp}"
        if col in history:
            ax_rec.plot(epochs, history[col], marker=marker, label=_SHORT[comp])
    best = int(np.nanargmax(history["val_weighted"].to_numpy())) if len(history) else None
    if best is not None:
        ax_rec.axvline(epochs[best], color="gray", linestyle=":", linewidth=1)
        ax_rec.set_title(f"validation macro recall (best {history['val_weighted'].iloc[best]:.4f} "
                         f"at epoch {epochs[best]})")
    else:
        ax_rec.set_title("validation macro recall")
    ax_rec.set(xlabel="epoch", ylabel="recall", ylim=(0, 1.02))
    ax_rec.legend(loc="best", fontsize="small")
    for ax in (ax_loss, ax_rec):
        ax.grid(alpha=0.3)
        if len(epochs) and len(epochs) <= 30:
            ax.set_xticks(epochs)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_per_class_recall(per_class: pd.DataFrame | str | Path, path: str | Path | None = None,
                          components: Sequence[str] = COMPONENTS):
    """Recall of every class, one panel per component, bars coloured by support (darker = more images).

    ``per_class``: ``metrics.per_class_recall`` output (component, label, recall, support), e.g. a run's
    ``val_per_class.csv``. Classes without validation images are left out.
    """
    if not isinstance(per_class, pd.DataFrame):
        per_class = pd.read_csv(per_class)
    _require(per_class, ["component", "label", "recall", "support"], "per-class table")
    plt = _pyplot()
    ratios = [max(int((per_class["component"] == c).sum()), 8) for c in components]
    fig, axes = plt.subplots(1, len(components), figsize=(14, 3.5), width_ratios=ratios, squeeze=False)
    for ax, comp in zip(axes[0], components):
        d = per_class[(per_class["component"] == comp) & (per_class["support"] > 0)].sort_values("label")
        if len(d):
            shade = np.log1p(d["support"].to_numpy()) / np.log1p(d["support"].max())
            ax.bar(d["label"], d["recall"], color=plt.cm.Blues(0.3 + 0.7 * shade), width=0.9)
            ax.axhline(d["recall"].mean(), color="red", linewidth=1, label=f"macro {d['recall'].mean():.3f}")
            ax.legend(loc="lower right", fontsize="small")
        ax.set(title=_SHORT.get(comp, comp), xlabel="class", ylim=(0, 1.02))
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("recall")
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_worst_classes(per_class: pd.DataFrame | str | Path, n: int = 20, component: str | None = None,
                       path: str | Path | None = None, min_support: int = 1):
    """Horizontal bars of the ``n`` classes with the lowest recall (of one component, or of all).

    Each bar is labelled ``component label (support)``; classes with fewer than ``min_support``
    validation images are left out.
    """
    if not isinstance(per_class, pd.DataFrame):
        per_class = pd.read_csv(per_class)
    _require(per_class, ["component", "label", "recall", "support"], "per-class table")
    d = per_class[per_class["support"] >= min_support]
    if component is not None:
        if component not in COMPONENTS:
            raise ValueError(f"component must be one of {COMPONENTS}, got {component!r}")
        d = d[d["component"] == component]
    d = d.sort_values(["recall", "support"], ascending=[True, False]).head(n).iloc[::-1]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.3 * max(len(d), 3) + 1))
    names = [f"{_SHORT.get(c, c)} {int(lab)} ({int(s)})" for c, lab, s in
             zip(d["component"], d["label"], d["support"])]
    ax.barh(np.arange(len(d)), d["recall"].to_numpy(), color="tab:red", alpha=0.8)
    ax.set_yticks(np.arange(len(d)), names, fontsize="small")
    ax.set(xlim=(0, 1.02), xlabel="recall",
           title=f"{len(d)} worst classes" + (f" ({_SHORT[component]})" if component else ""))
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig
