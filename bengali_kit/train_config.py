"""``TrainConfig``: every knob of a training run, usable from a notebook and from the command line.

Kept apart from ``train.py`` (and free of torch) so that building the CLI parser stays fast.
In a notebook: ``train(TrainConfig(data_dir=..., out_dir=..., epochs=3))``. On the command line each field
is an option (``--batch-size``; a few short spellings: ``--data``, ``--out``, ``--size``, ``--model``).
"""
from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .argtypes import non_negative_int, positive_int
from .presets import PRESETS, preset_values

__all__ = ["TrainConfig", "add_config_arguments", "config_from_args", "RUNTIME_FIELDS", "OPTION_GROUPS"]

# Fields that may change between an interrupted run and its resumption without changing the result
# (where things are, how fast they go, how chatty); every other field must match the checkpoint.
RUNTIME_FIELDS = frozenset({"data_dir", "out_dir", "cache_dir", "num_workers", "resume", "overwrite",
                            "log_every", "progress", "preprocess_workers", "val_data_dir", "init"})

# CLI spellings that differ from ``--field-name`` (the README's short forms).
_FLAGS = {"data_dir": "--data", "out_dir": "--out", "image_size": "--size", "val_data_dir": "--val-data"}

# The sections of ``train --help``, in order (as timm groups its train.py options): each field names its
# section in its metadata, so a new field cannot be left out of the help's structure.
OPTION_GROUPS: dict[str, str] = {
    "data": "what to train and validate on, and how it is split",
    "model": "the network and the weights it starts from",
    "optimisation": "optimizer, batch size and weight averaging",
    "loss": "weights of the heads' losses and label smoothing",
    "schedule": "how long to train, the learning-rate schedule, when to validate",
    "augmentation": "random affine transforms, cutmix and mixup of the training batches",
    "inference": "what the run's checkpoints carry for predict, evaluate and the Kaggle kernel",
    "run": "preset, output folder, seed, resuming, device, speed and logging",
}


def _f(default: Any, help_text: str, parse: Any = None, choices: tuple | None = None, *, group: str):
    """A ``TrainConfig`` field with its ``train`` option's help, parser, choices and ``--help`` section."""
    if group not in OPTION_GROUPS:
        raise ValueError(f"unknown option group {group!r}; known: {', '.join(OPTION_GROUPS)}")
    meta = {"help": help_text, "type": parse, "choices": choices, "group": group}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: tuple(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """A training run. Defaults are small and CPU-friendly (64 px, b0) and run on the synthetic data."""

    data_dir: str = _f("", "competition folder (train.csv + train_image_data_*.parquet)", group="data")
    out_dir: str = _f("runs/run", "run folder: config.json, last.pt, best.pt, history.csv, curves.png", group="run")
    cache_dir: str | None = _f(None, "folder of the preprocessed uint8 cache (default <out>/cache); share it "
                                     "between runs to preprocess once (each data folder gets its own subfolder, "
                                     "unless its cache is in the folder itself, as `preprocess --out` makes it)",
                               parse=str, group="data")
    image_size: int = _f(64, "side of the preprocessed square images in pixels", group="data")
    model: str = _f("efficientnet-b0", "EfficientNet variant, efficientnet-b0 .. efficientnet-b7", group="model")
    pooling: str = _f("gem", "global pooling of the backbone features", choices=("gem", "avg"), group="model")
    dropout: float = _f(0.2, "dropout before the neck", group="model")
    bn_momentum: float = _f(0.1, "momentum of every batch norm's running statistics (efficientnet-pytorch "
                                 "uses 0.01, too slow for short runs: eval-mode predictions stay constant)",
                        group="model")
    imagenet_weights: str | None = _f(None, "local efficientnet-pytorch ImageNet .pth to initialise from", parse=str,
                                      group="model")
    batch_size: int = _f(64, "images per step (per process under torchrun)", group="optimisation")
    epochs: int = _f(2, "number of epochs", group="schedule")
    max_steps: int | None = _f(None, "cap on training steps per epoch (tiny runs, smoke tests)", parse=int,
                               group="schedule")
    time_budget: float | None = _f(None, "stop after this many seconds of training (or --epochs, whichever comes "
                                         "first); the learning-rate schedule then follows the clock", parse=float,
                                 group="schedule")
    val_every: int = _f(1, "validate every N epochs (and after the last)", group="schedule")
    optimizer: str = _f("adamw", "optimizer", choices=("adamw", "lars"), group="optimisation")
    lr: float = _f(2e-3, "peak learning rate", group="optimisation")
    weight_decay: float = _f(1e-2, "weight decay (not applied to biases and norm weights)", group="optimisation")
    momentum: float = _f(0.9, "LARS momentum", group="optimisation")
    schedule: str = _f("onecycle", "learning-rate schedule per step: one-cycle (warm-up then cosine to ~0), "
                                   "cosine (linear warm-up then cosine), constant",
                       choices=("onecycle", "cosine", "constant"), group="schedule")
    warmup: float = _f(0.1, "warm-up length as a fraction of all steps", group="schedule")
    grad_clip: float = _f(0.0, "clip the gradient norm to this value (0: off)", group="optimisation")
    loss_weights: tuple = _f((2.0, 1.0, 1.0), "weights of the root, vowel and consonant losses", parse=float,
                             group="loss")
    grapheme_loss_weight: float = _f(0.0, "weight of an auxiliary loss over whole graphemes: a fourth head, used in "
                                     "training only, over the 1,292 real (root, vowel, consonant) triples (0: "
                                     "no such head)", group="loss")
    root_parts_loss_weight: float = _f(0.0, "weight of an auxiliary loss over the letters each root is written "
                                       "with: a multi-hot head, used in training only, whose letters recur across "
                                       "roots (0: no such head)", group="loss")
    label_smoothing: float = _f(0.0, "label smoothing of the cross-entropies", group="loss")
    affine_degrees: float = _f(8.0, "random rotation range in degrees (+-)", group="augmentation")
    affine_scale: tuple = _f((0.9, 1.1), "random scale range (min max)", parse=float, group="augmentation")
    affine_translate: float = _f(0.06, "random shift range as a fraction of the image side (+-)", group="augmentation")
    affine_shear: float = _f(8.0, "random shear range in degrees (+-)", group="augmentation")
    erase_p: float = _f(0.0, "probability that an image gets one random box blanked (RandomErasing, 2-25 %% of "
                             "its area)", group="augmentation")
    cutmix_p: float = _f(0.3, "probability that a batch gets cutmix", group="augmentation")
    mixup_p: float = _f(0.0, "probability that a batch gets mixup (cutmix_p + mixup_p <= 1)", group="augmentation")
    mix_alpha: float = _f(1.0, "Beta(alpha, alpha) parameter of cutmix/mixup", group="augmentation")
    prior_power: float = _f(0.0, "class-prior correction k the checkpoints carry: predictions are the argmax of "
                            "p / count**k per head, count being the training images of each class (recorded); "
                            "validation scores with it too (0: plain argmax)", group="inference")
    val_fraction: float = _f(0.2, "validation fraction, stratified by grapheme root (when n_folds is 0)", group="data")
    n_folds: int = _f(0, "k-fold split stratified by grapheme root (0: use val_fraction)", group="data")
    fold: int = _f(0, "which fold is the validation set when n_folds > 0", group="data")
    seed: int = _f(0, "random seed (split, initialisation, shuffling, augmentation)", parse=non_negative_int,
                   group="run")
    num_workers: int = _f(0, "DataLoader worker processes", group="run")
    preprocess_workers: int | None = _f(None, "processes for building the cache (default: all cores)",
                                        parse=positive_int, group="run")
    device: str = _f("auto", "auto, cpu, cuda or cuda:N (under torchrun: the local rank's GPU)", group="run")
    amp: bool = _f(True, "mixed precision (CUDA only; ignored on the CPU)", group="run")
    channels_last: bool = _f(True, "channels_last memory format (faster on CUDA and on the CPU: ~1.4x per step for b0)",
                             group="run")
    resume: bool = _f(False, "continue from <out>/last.pt", group="run")
    overwrite: bool = _f(False, "start again in a run folder that already has checkpoints", group="run")
    log_every: int = _f(10, "update the progress bar's running loss every N steps", group="run")
    progress: bool = _f(True, "show progress bars", group="run")
    # fine-tuning, other data sources and presets (bengali_kit.finetune / sources / presets)
    init: str | None = _f(None, "start from this checkpoint's weights: all of them when the architecture "
                                "matches, else the backbone (and neck/heads when they fit)", parse=str, group="model")
    head_warmup_epochs: int = _f(0, "first epochs where only pooling, neck and heads train (backbone frozen)",
                                 group="schedule")
    val_data_dir: str | None = _f(None, "validate on every labelled image of this folder and train on all "
                                        "of --data (e.g. import-crops' val/ and train/)", parse=str, group="data")
    synthetic_stream: bool = _f(False, "train on graphemes rendered on the fly (no --data needed; validates "
                                       "on --val-data, else on --data, else on rendered images)", group="data")
    steps_per_epoch: int = _f(500, "batches per epoch with --synthetic-stream", group="data")
    stream_alpha: float = _f(0.5, "rendered labels (--synthetic-stream, --synthetic-mix): real triples drawn "
                                  "as their real counts ** alpha (0: uniformly)", group="data")
    stream_novel_fraction: float = _f(0.2, "rendered labels: the share drawn from valid triples absent from the "
                                           "real data (0.74 with alpha 0: uniform over all valid triples)",
                                      group="data")
    synthetic_mix: float = _f(0.0, "share of each training epoch rendered on the fly beside the images of "
                                   "--data (labels drawn as --stream-alpha and --stream-novel-fraction say, from "
                                   "all valid triples): 0.2 makes one image in five a rendered grapheme", group="data")
    ema_decay: float = _f(0.0, "keep an EMA of the weights with this decay (e.g. 0.999); validated and "
                               "saved in place of the raw weights (0: off)", group="optimisation")
    preset: str | None = _f(None, "named settings: " + ", ".join(PRESETS) + " (options you type win over "
                                  "the preset's)", parse=str, choices=tuple(PRESETS), group="run")

    def __post_init__(self) -> None:
        self.loss_weights = tuple(float(v) for v in self.loss_weights)
        self.affine_scale = tuple(float(v) for v in self.affine_scale)

    def validate(self) -> "TrainConfig":
        """Raise ``ValueError`` (one line) for impossible settings; return self."""
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"bad training config: {msg}")

        need(bool(self.data_dir) or self.synthetic_stream, "data_dir is required (or --synthetic-stream)")
        for f in dataclasses.fields(self):  # a NaN weight would surface steps later as a diverged loss
            value = getattr(self, f.name)
            values = value if isinstance(value, tuple) else (value,)
            need(all(math.isfinite(v) for v in values if isinstance(v, float)),
                 f"--{f.name.replace('_', '-')} must be finite, got {value}")
        need(self.preprocess_workers is None or self.preprocess_workers >= 1,
             f"--preprocess-workers must be >= 1, got {self.preprocess_workers}")
        need(self.head_warmup_epochs >= 0, f"head_warmup_epochs must be >= 0, got {self.head_warmup_epochs}")
        need(self.steps_per_epoch >= 1, f"steps_per_epoch must be >= 1, got {self.steps_per_epoch}")
        need(self.stream_alpha >= 0, f"stream_alpha must be >= 0, got {self.stream_alpha}")
        need(0 <= self.stream_novel_fraction < 1,
             f"stream_novel_fraction must be in [0, 1), got {self.stream_novel_fraction}")
        need(0 <= self.erase_p <= 1, f"--erase-p must be in [0, 1], got {self.erase_p}")
        need(self.prior_power >= 0, f"--prior-power must be >= 0, got {self.prior_power}")
        need(not (self.prior_power and self.synthetic_stream),
             "--prior-power needs the training class counts, which rendered images (--synthetic-stream) do not give")
        need(0 <= self.synthetic_mix < 1, f"--synthetic-mix must be in [0, 1), got {self.synthetic_mix}")
        need(not (self.synthetic_mix and self.synthetic_stream),
             "--synthetic-mix adds rendered images to --data; --synthetic-stream already trains on them alone")
        need(0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1), got {self.ema_decay}")
        need(self.image_size > 0, f"image_size must be positive, got {self.image_size}")
        need(self.batch_size >= 2, f"batch_size must be >= 2 (batch norm), got {self.batch_size}")
        need(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        need(self.max_steps is None or self.max_steps >= 1, f"max_steps must be >= 1, got {self.max_steps}")
        need(0 < self.bn_momentum <= 1, f"bn_momentum must be in (0, 1], got {self.bn_momentum}")
        need(self.lr > 0, f"lr must be positive, got {self.lr}")
        need(0 <= self.warmup < 1, f"warmup must be in [0, 1), got {self.warmup}")
        need(len(self.loss_weights) == 3, f"loss_weights needs 3 values, got {self.loss_weights}")
        need(self.grapheme_loss_weight >= 0, f"grapheme_loss_weight must be >= 0, got {self.grapheme_loss_weight}")
        need(self.root_parts_loss_weight >= 0,
             f"--root-parts-loss-weight must be >= 0, got {self.root_parts_loss_weight}")
        need(len(self.affine_scale) == 2 and 0 < self.affine_scale[0] <= self.affine_scale[1],
             f"affine_scale must be 'min max' with 0 < min <= max, got {self.affine_scale}")
        need(0 <= self.cutmix_p <= 1 and 0 <= self.mixup_p <= 1 and self.cutmix_p + self.mixup_p <= 1,
             f"cutmix_p and mixup_p must be in [0, 1] with a sum <= 1, got {self.cutmix_p}, {self.mixup_p}")
        need(self.mix_alpha > 0, f"mix_alpha must be positive, got {self.mix_alpha}")
        if self.n_folds:
            need(self.n_folds >= 2, f"n_folds must be 0 or >= 2, got {self.n_folds}")
            need(0 <= self.fold < self.n_folds, f"fold must be in 0..{self.n_folds - 1}, got {self.fold}")
        else:
            need(0 < self.val_fraction < 1, f"val_fraction must be in (0, 1), got {self.val_fraction}")
        need(self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}")
        need(self.time_budget is None or self.time_budget > 0, f"time_budget must be positive, got {self.time_budget}")
        need(self.val_every >= 1, f"val_every must be >= 1, got {self.val_every}")
        need(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        need(self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}")
        return self

    @classmethod
    def from_preset(cls, name: str | None, **given: Any) -> "TrainConfig":
        """The preset's settings (``bengali_kit.presets``) with ``given`` fields on top: what you give wins."""
        return cls(**{**preset_values(name), **given, "preset": name})

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir)

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else Path(self.out_dir) / "cache"

    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Inverse of ``to_dict``; unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown training config field(s): {', '.join(unknown)}")
        return cls(**d)

    def differences(self, other: "TrainConfig", ignore=RUNTIME_FIELDS) -> list[str]:
        """``"field: mine != other"`` for each field that differs, except ``ignore``."""
        a, b = self.to_dict(), other.to_dict()
        return [f"{k}: {a[k]!r} != {b[k]!r}" for k in a if k not in ignore and a[k] != b[k]]


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one option per ``TrainConfig`` field, in the ``--help`` section its metadata names (``OPTION_GROUPS``).

    Defaults are ``argparse.SUPPRESS``: an option the user did not type is absent from the namespace, so
    ``config_from_args`` can tell "typed the default value" from "left it open" (a preset fills only the latter).
    """
    sections = {name: parser.add_argument_group(name, text) for name, text in OPTION_GROUPS.items()}
    for f in sorted(dataclasses.fields(TrainConfig), key=lambda f: list(OPTION_GROUPS).index(f.metadata["group"])):
        flag = _FLAGS.get(f.name, "--" + f.name.replace("_", "-"))
        flags = [flag] if flag == "--" + f.name.replace("_", "-") else [flag, "--" + f.name.replace("_", "-")]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
        text = f.metadata["help"] if default in (None, False, "") or "default" in f.metadata["help"] else \
            f"{f.metadata['help']} (default: {shown})"
        kw: dict[str, Any] = {"dest": f.name, "help": text, "default": argparse.SUPPRESS}
        if f.metadata.get("choices"):
            kw["choices"] = f.metadata["choices"]
        if isinstance(default, bool):
            kw["action"] = argparse.BooleanOptionalAction
        elif isinstance(default, tuple):
            kw.update(nargs=len(default), type=f.metadata["type"] or type(default[0]), metavar="V")
        else:
            kw["type"] = f.metadata["type"] or type(default)
        sections[f.metadata["group"]].add_argument(*flags, **kw)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The ``TrainConfig`` of a parsed command line: dataclass defaults, then the preset, then what was typed."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in names}
    return TrainConfig.from_preset(given.get("preset"), **given)
