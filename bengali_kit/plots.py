"""Matplotlib figures for training runs and data exploration (used by ``train``, the CLI and the notebooks).

Every function returns the ``Figure`` and, given ``path``, also saves it (atomically, PNG by default).
``pyplot`` is imported inside the functions so that importing the kit never chooses a backend; with no
display matplotlib falls back to Agg by itself. Close figures you do not show (``plt.close(fig)``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import font_manager
from matplotlib.colors import LinearSegmentedColormap
from PIL import ImageFont, features

from .components import COMPONENTS, N_CLASSES, SHORT_NAMES, load_class_map
from .files import atomic_path
from .synthetic import find_bengali_fonts

__all__ = ["plot_history", "plot_per_class_recall", "plot_worst_classes", "save_figure",
           # EDA and image figures
           "bengali_font", "text_image", "plot_class_counts", "plot_top_graphemes", "plot_component_samples",
           "plot_intensity", "plot_crop_examples", "plot_labelled_images"]


def _pyplot():
    # No matplotlib.use(): without a display matplotlib picks Agg itself; in a notebook it keeps inline.
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
    # with --val-every N only every N-th epoch has validation figures: those rows draw the validation lines
    validated = history[history["val_weighted"].notna()]
    val_epochs = validated["epoch"].to_numpy()
    ax_loss.plot(epochs, history["train_loss"], marker=marker, label="train")
    ax_loss.plot(val_epochs, validated["val_loss"], marker=marker, label="validation")
    ax_loss.set(title="loss", xlabel="epoch", ylabel="weighted cross-entropy")
    ax_loss.legend()
    ax_rec.plot(val_epochs, validated["val_weighted"], marker=marker, linewidth=2.5, color="black",
                label="weighted (metric)")
    for comp in COMPONENTS:
        col = f"val_{comp}"
        if col in history:
            ax_rec.plot(val_epochs, validated[col], marker=marker, label=SHORT_NAMES[comp])
    best = int(np.argmax(validated["val_weighted"].to_numpy())) if len(validated) else None
    if best is not None:
        ax_rec.axvline(val_epochs[best], color="gray", linestyle=":", linewidth=1)
        ax_rec.set_title(f"validation macro recall (best {validated['val_weighted'].iloc[best]:.4f} "
                         f"at epoch {val_epochs[best]})")
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
        ax.set(title=SHORT_NAMES.get(comp, comp), xlabel="class", ylim=(0, 1.02))
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
    names = [f"{SHORT_NAMES.get(c, c)} {int(lab)} ({int(s)})" for c, lab, s in
             zip(d["component"], d["label"], d["support"])]
    ax.barh(np.arange(len(d)), d["recall"].to_numpy(), color="tab:red", alpha=0.8)
    ax.set_yticks(np.arange(len(d)), names, fontsize="small")
    ax.set(xlim=(0, 1.02), xlabel="recall",
           title=f"{len(d)} worst classes" + (f" ({SHORT_NAMES[component]})" if component else ""))
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    if path is not None:
        save_figure(fig, path)
    return fig


# ================================================================ EDA and image figures (notebooks)
# Matplotlib does not shape complex scripts: a Bengali conjunct or a reordered vowel sign drawn with
# ``ax.text`` comes out as unjoined, misplaced glyphs. Bengali text is therefore rendered by Pillow (raqm
# layout, the shaping engine the synthetic generator uses) into an image that is shown with ``imshow``.


_PREFERRED_FONTS = ("NotoSansBengali-Regular", "Lohit-Bengali", "NotoSerifBengali-Regular")
_font_cache: dict = {}


def _is_bengali(ch: str) -> bool:
    # The Bengali block, ZWJ/ZWNJ (conjunct control) and the dotted circle HarfBuzz puts under lone marks.
    return "\u0980" <= ch <= "\u09ff" or ch in "\u200c\u200d\u25cc"


def bengali_font(font: str | Path | None = None) -> Path | None:
    """The font file used for Bengali labels: ``font`` if given, else an installed Bengali font (Noto Sans
    Bengali preferred), or None when none is installed (labels then fall back to class numbers)."""
    if font is not None:
        return Path(font)
    if "auto" not in _font_cache:
        try:
            fonts = find_bengali_fonts()
        except RuntimeError:
            fonts = []
        by_stem = {f.stem: f for f in fonts}
        pick = next((by_stem[s] for s in _PREFERRED_FONTS if s in by_stem), fonts[0] if fonts else None)
        _font_cache["auto"] = pick
    return _font_cache["auto"]


def _pil_font(path: str | Path | None, size: int):
    key = (str(path), size)
    if key not in _font_cache:
        if path is None:  # matplotlib's own DejaVu Sans: always there, covers Latin and arrows
            path = font_manager.findfont("DejaVu Sans")
        layout = ImageFont.Layout.RAQM if features.check("raqm") else ImageFont.Layout.BASIC
        _font_cache[key] = ImageFont.truetype(str(path), size, layout_engine=layout)
    return _font_cache[key]


def text_image(text: str, height: int = 48, font: str | Path | None = None) -> np.ndarray | None:
    """``text`` shaped and rendered by Pillow: uint8 (h, w), ink 255 on 0, cropped to the ink horizontally.

    Bengali runs use ``bengali_font(font)``; other characters (digits, Latin, arrows) use DejaVu Sans, on
    one baseline. Returns None for empty text, or when the text has Bengali and no Bengali font exists.
    """
    from PIL import Image, ImageDraw

    if not text:
        return None
    runs: list[tuple[bool, str]] = []
    for ch in text:
        b = _is_bengali(ch) or (ch == " " and runs and runs[-1][0])
        if runs and runs[-1][0] == b:
            runs[-1] = (b, runs[-1][1] + ch)
        else:
            runs.append((b, ch))
    beng = bengali_font(font)
    if beng is None and any(b for b, _ in runs):
        return None
    fonts = {True: _pil_font(beng, height) if beng else None, False: _pil_font(None, int(height * 0.8))}
    draw = ImageDraw.Draw(Image.new("L", (1, 1)))
    width = sum(int(draw.textlength(s, font=fonts[b])) + 2 for b, s in runs) + 2 * height
    canvas = Image.new("L", (width, 3 * height), 0)
    draw = ImageDraw.Draw(canvas)
    x, baseline = height, 2 * height
    for b, s in runs:
        draw.text((x, baseline), s, fill=255, font=fonts[b], anchor="ls")
        x += int(draw.textlength(s, font=fonts[b])) + 2
    arr = np.asarray(canvas)
    rows, cols = np.flatnonzero(arr.any(1)), np.flatnonzero(arr.any(0))
    if rows.size == 0:
        return None
    # a fixed band around the baseline (not the ink's box) keeps every label at the same scale
    top, bottom = min(rows[0], int(0.7 * height)), max(rows[-1] + 1, int(2.5 * height))
    m = max(2, height // 8)
    return np.pad(arr[top:bottom, cols[0]:cols[-1] + 1], ((0, 0), (m, m)))


def _show_text(ax, text: str, font=None, fallback: str = "", height: int = 48, color: str = "black") -> None:
    """Draw ``text`` (shaped by Pillow) centred in ``ax``; ``fallback`` (plain matplotlib) if it cannot."""
    ax.set_axis_off()
    img = text_image(text, height, font)
    if img is None:
        ax.text(0.5, 0.5, fallback or text or "-", ha="center", va="center", fontsize=9, color=color,
                transform=ax.transAxes)
        return
    cmap = LinearSegmentedColormap.from_list("ink", ["white", color])
    # pad to a fixed aspect so every label shows at the same scale, centred in its axes
    h, w = img.shape
    aspect = 2.5
    H, W = max(h, int(np.ceil(w / aspect))), max(w, int(np.ceil(h * aspect)))
    img = np.pad(img, (((H - h) // 2, H - h - (H - h) // 2), ((W - w) // 2, W - w - (W - w) // 2)))
    ax.imshow(img, cmap=cmap, vmin=0, vmax=255, interpolation="antialiased")


def _finish(fig, path):
    if path is not None:
        save_figure(fig, path)
    return fig


def plot_class_counts(labels: pd.DataFrame, path: str | Path | None = None):
    """Images per class for each component (train.csv): roots sorted by count show the long tail."""
    _require(labels, COMPONENTS, "labels")
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), width_ratios=(4, 1.2, 1))
    for ax, comp, n in zip(axes, COMPONENTS, N_CLASSES):
        counts = np.bincount(labels[comp].to_numpy(dtype=np.int64), minlength=n)
        if comp == "grapheme_root":
            order = np.argsort(-counts, kind="stable")
            ax.bar(np.arange(n), counts[order], width=1.0, color="tab:blue")
            ax.set_xlabel("roots, most to least frequent")
            top = ", ".join(f"{int(k)}" for k in order[:3])
            ax.set_title(f"grapheme_root: {int((counts > 0).sum())}/{n} classes seen; most {counts.max()} images "
                         f"(roots {top}), least {counts[counts > 0].min() if counts.any() else 0}")
            ax.axhline(counts.mean(), color="red", linewidth=1, label=f"mean {counts.mean():.1f}")
            ax.legend(loc="upper right")
        else:
            ax.bar(np.arange(n), counts, color="tab:orange" if comp.startswith("vowel") else "tab:green")
            ax.set_xticks(np.arange(n))
            ax.set_xlabel("label (0 = none)")
            ax.set_title(f"{SHORT_NAMES[comp]}: {n} classes")
        ax.set_ylabel("images")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return _finish(fig, path)


def _grapheme_table(labels: pd.DataFrame) -> pd.DataFrame:
    counts = labels.groupby(list(COMPONENTS)).size().rename("count").reset_index()
    if "grapheme" in labels.columns:
        first = labels.drop_duplicates(list(COMPONENTS)).set_index(list(COMPONENTS))["grapheme"]
        counts["grapheme"] = first.reindex(pd.MultiIndex.from_frame(counts[list(COMPONENTS)])).to_numpy()
    else:
        cmap = load_class_map()
        counts["grapheme"] = [cmap.compose(*map(int, t)) for t in counts[list(COMPONENTS)].to_numpy()]
    return counts.sort_values(["count", *COMPONENTS], ascending=[False, True, True, True]).reset_index(drop=True)


def plot_top_graphemes(labels: pd.DataFrame, n: int = 10, path: str | Path | None = None,
                       font: str | Path | None = None):
    """The ``n`` most and ``n`` least common graphemes (root, vowel, consonant triples) with their counts."""
    _require(labels, COMPONENTS, "labels")
    table = _grapheme_table(labels)
    n = max(1, min(n, len(table)))
    plt = _pyplot()
    fig, axes = plt.subplots(2, n, figsize=(1.3 * n + 0.5, 3.6), squeeze=False)
    for row, (part, name) in enumerate(((table.head(n), "most common"), (table.tail(n).iloc[::-1], "least common"))):
        for ax, r in zip(axes[row], part.itertuples(index=False)):
            r_, v_, c_ = (int(getattr(r, c)) for c in COMPONENTS)
            _show_text(ax, str(r.grapheme), font, fallback=f"{r_}/{v_}/{c_}")
            ax.set_title(f"{int(r.count)}", fontsize=9)
            ax.text(0.5, -0.08, f"{r_}-{v_}-{c_}", ha="center", va="top", fontsize=7, color="gray",
                    transform=ax.transAxes)
        for ax in axes[row][len(part):]:
            ax.set_axis_off()
        axes[row][0].text(-0.15, 0.5, name, rotation=90, ha="right", va="center", fontsize=10,
                          transform=axes[row][0].transAxes)
    fig.suptitle(f"{len(table)} distinct graphemes; images per grapheme (title) and root-vowel-consonant labels")
    fig.tight_layout()
    return _finish(fig, path)


def plot_component_samples(images: np.ndarray, labels: pd.DataFrame | np.ndarray, component: str,
                           classes: Sequence[int] | None = None, n_per_class: int = 6, max_classes: int = 8,
                           ink_bright: bool = False, path: str | Path | None = None, font: str | Path | None = None,
                           seed: int = 0):
    """One row per class of ``component``: the component as text (Bengali font), then example images.

    ``images`` (N, H, W) uint8 with ``labels`` (N, 3) or a frame with the component columns (same order).
    ``classes`` default: the ``max_classes`` most frequent in ``labels``. ``ink_bright``: images are
    preprocessed (ink bright on black) and are shown inverted, like the raw scans.
    """
    if component not in COMPONENTS:
        raise ValueError(f"component must be one of {COMPONENTS}, got {component!r}")
    j = COMPONENTS.index(component)
    lab = labels[list(COMPONENTS)].to_numpy() if isinstance(labels, pd.DataFrame) else np.asarray(labels)
    if len(lab) != len(images):
        raise ValueError(f"{len(images)} images for {len(lab)} labels")
    col = lab[:, j].astype(np.int64)
    if classes is None:
        values, counts = np.unique(col, return_counts=True)
        classes = values[np.argsort(-counts, kind="stable")][:max_classes]
    classes = [int(c) for c in classes]
    table = load_class_map().table(component)
    rng = np.random.default_rng(seed)
    plt = _pyplot()
    fig, axes = plt.subplots(len(classes), n_per_class + 1, squeeze=False,
                             figsize=(1.25 * (n_per_class + 1) * (images.shape[2] / images.shape[1]) ** 0.5 + 1,
                                      1.05 * len(classes) + 0.6))
    for row, cls in zip(axes, classes):
        text = table[cls] if 0 <= cls < len(table) else ""
        _show_text(row[0], text, font, fallback="none" if not text else str(cls))
        row[0].set_title(f"{SHORT_NAMES[component]} {cls} (n={int((col == cls).sum())})", fontsize=8)
        idx = np.flatnonzero(col == cls)
        idx = rng.choice(idx, size=min(n_per_class, len(idx)), replace=False) if len(idx) else idx
        for ax in row[1:]:
            ax.set_axis_off()
        for ax, i in zip(row[1:], np.sort(idx)):
            ax.imshow(images[i], cmap="gray_r" if ink_bright else "gray", vmin=0, vmax=255)
    fig.suptitle(f"{SHORT_NAMES[component]} examples" + (" (preprocessed, shown dark on light)" if ink_bright else ""))
    fig.tight_layout()
    return _finish(fig, path)


def plot_intensity(images: np.ndarray, ink_threshold: int = 128, path: str | Path | None = None):
    """Raw-image statistics: histogram of pixel values, the ink fraction per image, the mean image.

    ``images`` (N, H, W) uint8 as stored (dark ink on white); ink = pixels darker than ``ink_threshold``.
    """
    images = np.asarray(images)
    if images.ndim != 3 or len(images) == 0:
        raise ValueError(f"expected images (N, H, W) with N > 0, got shape {images.shape}")
    hist = np.zeros(256, dtype=np.int64)
    for s in range(0, len(images), 1024):  # bounded memory on large samples
        hist += np.bincount(images[s:s + 1024].ravel(), minlength=256)
    ink = (images.reshape(len(images), -1) < ink_threshold).mean(axis=1)
    mean_img = images.mean(axis=0)
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6), width_ratios=(1.2, 1, 1.4))
    axes[0].bar(np.arange(256), hist / hist.sum(), width=1.0, color="gray")
    axes[0].set_yscale("log")
    axes[0].axvline(ink_threshold, color="red", linewidth=1, label=f"ink threshold {ink_threshold}")
    axes[0].set(title=f"pixel values ({len(images)} images)", xlabel="value (0 = black ink, 255 = paper)",
                ylabel="fraction of pixels")
    axes[0].legend(fontsize="small")
    axes[1].hist(ink * 100, bins=40, color="tab:blue")
    axes[1].set(title=f"ink per image: median {np.median(ink) * 100:.1f}%", xlabel="% of pixels < threshold",
                ylabel="images")
    im = axes[2].imshow(mean_img, cmap="gray", vmin=min(mean_img.min(), 254), vmax=255)
    axes[2].set_title("mean image (where the ink lies)")
    axes[2].set_axis_off()
    fig.colorbar(im, ax=axes[2], fraction=0.03)
    for ax in axes[:2]:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _finish(fig, path)


def plot_crop_examples(raw: np.ndarray, cropped: np.ndarray, captions: Sequence[str] | None = None,
                       n: int = 6, path: str | Path | None = None):
    """Raw images (top) and their crop/resize (bottom, the model's input: ink bright on black)."""
    n = min(n, len(raw), len(cropped))
    if n == 0:
        raise ValueError("no images to show")
    plt = _pyplot()
    fig, axes = plt.subplots(2, n, figsize=(2.2 * n, 3.6), squeeze=False, height_ratios=(137 / 236, 1))
    for i in range(n):
        axes[0][i].imshow(raw[i], cmap="gray", vmin=0, vmax=255)
        axes[1][i].imshow(cropped[i], cmap="gray", vmin=0, vmax=255)
        if captions is not None:
            axes[0][i].set_title(str(captions[i]), fontsize=8)
        for ax in (axes[0][i], axes[1][i]):
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0][0].set_ylabel(f"raw {raw.shape[1]}x{raw.shape[2]}", fontsize=9)
    axes[1][0].set_ylabel(f"crop {cropped.shape[1]}x{cropped.shape[2]}", fontsize=9)
    fig.tight_layout()
    return _finish(fig, path)


def plot_labelled_images(images: np.ndarray, texts: Sequence[str] | None = None,
                         captions: Sequence[str] | None = None, colors: Sequence[str] | None = None,
                         ncols: int = 8, ink_bright: bool = False, title: str | None = None,
                         path: str | Path | None = None, font: str | Path | None = None):
    """A grid of images, each with Bengali ``texts`` shaped above it and a plain ``captions`` line below.

    ``colors`` (one per image, e.g. green/red for right/wrong) colour the text and caption.
    ``ink_bright``: preprocessed images (ink bright on black), shown inverted like the raw scans.
    """
    images = np.asarray(images)
    n = len(images)
    if n == 0:
        raise ValueError("no images to show")
    for name, seq in (("texts", texts), ("captions", captions), ("colors", colors)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} entries for {n} images")
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    aspect = images.shape[2] / images.shape[1]
    has_text = texts is not None
    # each extra caption line needs room below its image, or the next row's text covers it
    extra = max((str(c).count("\n") for c in captions), default=0) if captions is not None else 0
    plt = _pyplot()
    fig = plt.figure(figsize=(1.6 * ncols * aspect ** 0.5 + 0.3,
                              ((2.0 if has_text else 1.6) + 0.15 * extra) * nrows + 0.4))
    ratios = [0.45, 1] * nrows if has_text else [1] * nrows
    grid = fig.add_gridspec(len(ratios), ncols, height_ratios=ratios,
                            hspace=(0.25 if has_text else 0.3) + 0.2 * extra)
    for i in range(nrows * ncols):
        r, c = divmod(i, ncols)
        ax_img = fig.add_subplot(grid[2 * r + 1 if has_text else r, c])
        ax_img.set_xticks([])
        ax_img.set_yticks([])
        ax_txt = fig.add_subplot(grid[2 * r, c]) if has_text else None
        if i >= n:
            ax_img.set_axis_off()
            if ax_txt is not None:
                ax_txt.set_axis_off()
            continue
        color = colors[i] if colors is not None else "black"
        ax_img.imshow(images[i], cmap="gray_r" if ink_bright else "gray", vmin=0, vmax=255)
        for side in ax_img.spines.values():
            side.set_color(color)
            side.set_linewidth(2 if colors is not None else 0.8)
        if captions is not None:
            ax_img.set_xlabel(str(captions[i]), fontsize=7, color=color, labelpad=2)
        if ax_txt is not None:
            _show_text(ax_txt, str(texts[i]), font, fallback=str(captions[i]) if captions is not None else "",
                       color=color)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)
