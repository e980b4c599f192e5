"""The multi-output EfficientNet: one backbone pass, GeM pooling, a neck and three heads; build, save, load.

Design (why it differs from the seed):
- The backbone (efficientnet-pytorch, any of b0-b7, 1 input channel) runs ONCE per batch; the seed ran it
  once per head. Features are taken from the backbone's last conv (1280 channels for b0, ``backbone.out_channels``)
  instead of going through the 1000-way ImageNet classifier, whose ``_fc`` is not built at all:
  the ImageNet logits are a bottleneck with no meaning for graphemes.
- Pooling (GeM or average) -> flatten -> dropout -> neck ``Linear(C, neck_dim) -> BatchNorm1d -> SiLU``
  -> three ``Linear(neck_dim, n)`` heads (168, 11, 7), and optionally, for training only, a fourth over whole
     graphemes (``grapheme_classes``: the 1,292 real triples).
- Input: float (B, 1, S, S) in [0, 1], ink bright on black (the preprocessed uint8 cache / 255). The model
  normalises with fixed ``INPUT_MEAN``/``INPUT_STD`` buffers (non-persistent: not in the state dict), so
  training and inference cannot disagree on normalisation.
- efficientnet-pytorch's swish (a custom ``autograd.Function``) is replaced by ``nn.SiLU``: the same
  function, a native kernel that also saves only its input for backward, and it works with ``torch.jit.trace``,
  ``torch.compile``, AMP, ``channels_last`` and DDP with no special cases (``torch.jit.script`` fails inside
  efficientnet-pytorch's block arguments whatever the activation: use tracing to export). Swish modules hold no weights,
  so state dicts (and ImageNet weight files) are unaffected.
- "SAME" padding is static, computed for a 224-px input (even at every stride-2 stage for all variants);
  it equals TensorFlow's SAME padding for every image size that is a multiple of 32 — the sizes
  :func:`check_image_size` accepts.
- BatchNorm1d in the neck needs batches of at least 2 in training mode (use ``drop_last=True``).

Checkpoints are plain dicts ``{"model": state_dict, "model_config": dict, "kit_version": str, **extra}``
holding only tensors and Python builtins, so ``torch.load(..., weights_only=True)`` reads them.
"""
from __future__ import annotations

import errno
import io
import logging
import pickle
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import torch
from efficientnet_pytorch import EfficientNet
from torch import nn

from . import __version__
from .errors import DataError, first_sentence, one_line
from .files import atomic_path, os_problem
from .layers import GeM

log = logging.getLogger(__name__)

#: Valid backbone names.
MODEL_NAMES: tuple[str, ...] = tuple(f"efficientnet-b{i}" for i in range(8))
#: Normalisation of the [0, 1] ink-bright input: mean/std of real crops (reference real_sample_64, inverted).
INPUT_MEAN: float = 0.07
INPUT_STD: float = 0.20
#: Total stride of EfficientNet: image sides must be multiples of this.
STRIDE: int = 32
# Static SAME padding is computed for this size: even at every stride-2 stage (224 = 7 * 32).
_PADDING_SIZE = 224


@dataclass
class ModelConfig:
    """Everything needed to rebuild a :class:`BengaliNet` (stored in checkpoints as ``model_config``)."""

    name: str = "efficientnet-b0"
    pooling: str = "gem"  # "gem" | "avg"
    gem_p: float = 3.0
    gem_learnable: bool = True
    dropout: float = 0.2
    neck_dim: int = 512
    n_classes: tuple[int, int, int] = (168, 11, 7)
    grapheme_classes: int = 0  # > 0: an auxiliary head over whole graphemes, used in training only
    part_classes: int = 0  # > 0: an auxiliary multi-hot head over the letters of the root, training only

    def __post_init__(self) -> None:
        self.n_classes = tuple(int(n) for n in self.n_classes)  # type: ignore[assignment]
        if self.name not in MODEL_NAMES:
            raise ValueError(f"unknown model {self.name!r}; expected one of {', '.join(MODEL_NAMES)}")
        if self.pooling not in ("gem", "avg"):
            raise ValueError(f"pooling must be 'gem' or 'avg', got {self.pooling!r}")
        if len(self.n_classes) != 3 or min(self.n_classes) < 1:
            raise ValueError(f"n_classes must be three positive ints, got {self.n_classes}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.neck_dim < 1:
            raise ValueError(f"neck_dim must be >= 1, got {self.neck_dim}")
        if self.grapheme_classes < 0:
            raise ValueError(f"grapheme_classes must be >= 0, got {self.grapheme_classes}")
        if self.part_classes < 0:
            raise ValueError(f"part_classes must be >= 0, got {self.part_classes}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ModelConfig":
        """Build from a dict (e.g. a checkpoint's ``model_config``); unknown keys raise ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**dict(d))

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (lists, not tuples) safe for JSON and ``weights_only`` loading."""
        d = asdict(self)
        d["n_classes"] = list(self.n_classes)
        return d


class Logits(NamedTuple):
    """The three heads' logits, in ``COMPONENTS`` order."""

    grapheme_root: torch.Tensor
    vowel_diacritic: torch.Tensor
    consonant_diacritic: torch.Tensor


def model_input(images: torch.Tensor) -> torch.Tensor:
    """Preprocessed uint8 images (B, S, S) -> the model's float input (B, 1, S, S) in [0, 1].

    The one place that defines the input scale; training, pretraining and inference all call it.
    """
    return images.unsqueeze(1).float().div_(255.0)


def check_image_size(name: str, size: int) -> int:
    """Return ``size`` if model ``name`` can take (size, size) images, else raise ValueError.

    EfficientNet downsamples by 32 in five stride-2 stages: below 32 px b0's last stages get a smaller
    input than their 5x5 kernels and fail; for sides that are not multiples of 32 some stage gets an odd
    input and the static SAME padding drops its last row/column (e.g. 48 px gives a 1x1 map, not 2x2).
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODEL_NAMES)}")
    if isinstance(size, bool) or not isinstance(size, int):
        raise ValueError(f"image size must be an int, got {size!r}")
    if size < STRIDE or size % STRIDE:
        raise ValueError(f"image size {size} does not fit {name}: use a multiple of {STRIDE} "
                         f"(>= {STRIDE}), e.g. 64, 96, 128")
    return size


def _make_backbone(name: str) -> nn.Module:
    backbone = EfficientNet.from_name(name, in_channels=1, include_top=False, image_size=_PADDING_SIZE)
    for module in backbone.modules():
        if hasattr(module, "_swish"):
            module._swish = nn.SiLU()
    return backbone


def _as_config(cfg: ModelConfig | Mapping[str, Any] | None) -> ModelConfig:
    if cfg is None:
        return ModelConfig()
    if isinstance(cfg, ModelConfig):
        return cfg
    return ModelConfig.from_dict(cfg)


class BengaliNet(nn.Module):
    """EfficientNet backbone + pooling + neck + three heads; ``forward(x) -> Logits``."""

    def __init__(self, cfg: ModelConfig | Mapping[str, Any] | None = None):
        super().__init__()
        self.cfg = cfg = _as_config(cfg)
        self.backbone = _make_backbone(cfg.name)
        channels = self.backbone._bn1.num_features
        self.out_channels = channels
        self.pool = GeM(cfg.gem_p, learnable=cfg.gem_learnable) if cfg.pooling == "gem" else nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(cfg.dropout)
        self.neck = nn.Sequential(nn.Linear(channels, cfg.neck_dim), nn.BatchNorm1d(cfg.neck_dim), nn.SiLU())
        self.heads = nn.ModuleList(nn.Linear(cfg.neck_dim, n) for n in cfg.n_classes)
        # Outside ``heads``: predictions never use it, and a checkpoint without it still fits the three heads.
        self.grapheme_head = nn.Linear(cfg.neck_dim, cfg.grapheme_classes) if cfg.grapheme_classes else None
        self.part_head = nn.Linear(cfg.neck_dim, cfg.part_classes) if cfg.part_classes else None
        self.register_buffer("input_mean", torch.tensor(INPUT_MEAN), persistent=False)
        self.register_buffer("input_std", torch.tensor(INPUT_STD), persistent=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised input -> backbone (once) -> pooled, flattened features (B, C)."""
        x = (x - self.input_mean) / self.input_std
        return self.pool(self.backbone.extract_features(x)).flatten(1)

    def forward(self, x: torch.Tensor, with_grapheme: bool = False,
                with_aux: bool = False) -> Logits | tuple[Logits, Any]:
        """``x``: float (B, 1, S, S) in [0, 1], ink bright on black. Returns the three logit tensors; with
        ``with_grapheme`` also the grapheme head's logits (B, grapheme_classes) as ``(logits, graphemes)``;
        with ``with_aux`` a dict of every training-only head's logits (``grapheme``, ``parts``) as
        ``(logits, aux)``."""
        if not torch.jit.is_tracing() and (x.ndim != 4 or x.shape[1] != 1):
            raise ValueError(f"expected input of shape (B, 1, S, S), got {tuple(x.shape)}")
        z = self.neck(self.dropout(self.features(x)))
        logits = Logits(*(head(z) for head in self.heads))
        if with_aux:
            aux = {name: head(z) for name, head in (("grapheme", self.grapheme_head), ("parts", self.part_head))
                   if head is not None}
            return logits, aux
        if not with_grapheme:
            return logits
        if self.grapheme_head is None:
            raise ValueError("this model has no grapheme head (ModelConfig.grapheme_classes is 0)")
        return logits, self.grapheme_head(z)


def _load_problem(err: BaseException) -> str:
    """Why ``torch.load`` failed, in one line of our own words.

    Torch's messages run to several paragraphs and advise retrying with ``weights_only=False``; that
    would unpickle, i.e. run, whatever the file holds, so it is never passed on.
    """
    text = str(err)
    if isinstance(err, pickle.UnpicklingError) or "Weights only load failed" in text:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if found:
            return (f"holds a pickled Python object ({found.group(1)}), not only tensors and plain values: refused, "
                    "since unpickling it could run code (a bengali_kit checkpoint is a state dict)")
        found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\s*\n|Check the documentation|$)", text, re.S)
        detail = one_line(found.group(1), limit=120) if found else ""
        return f"not a PyTorch checkpoint (unreadable pickle data{': ' + detail if detail else ''})"
    if isinstance(err, EOFError):
        return "truncated: the file ends early"
    if isinstance(err, OSError) and err.errno in (errno.EACCES, errno.EPERM, errno.EIO):
        return f"cannot read: {os_problem(err)}"
    if isinstance(err, OSError):  # torch's legacy-format probe reports a cut zip as EINVAL
        return "truncated or corrupt (not a complete PyTorch checkpoint file)"
    return f"truncated or corrupt ({first_sentence(text) or type(err).__name__})"


def load_imagenet_weights(model: BengaliNet, path: str | Path) -> dict[str, list[str]]:
    """Initialise ``model.backbone`` from a local efficientnet-pytorch ImageNet ``.pth`` state dict.

    The 3-channel stem is summed over its input channels (a gray image seen as R = G = B gives the same
    response); ``_fc.*`` is skipped. Returns ``{"loaded": [...], "skipped": [...], "missing": [...]}``
    (backbone key names). Raises DataError for a missing/unreadable file or weights of another variant.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "ImageNet weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is a data problem
        raise DataError(path, f"cannot read weights: {_load_problem(err)}") from None
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise DataError(path, "not a state dict")
    own = model.backbone.state_dict()
    new, skipped = {}, []
    for key, value in state.items():
        if not isinstance(value, torch.Tensor) or key.startswith("_fc.") or key not in own:
            skipped.append(key)
            continue
        if key == "_conv_stem.weight" and value.ndim == 4 and value.shape[1] != own[key].shape[1]:
            value = value.sum(dim=1, keepdim=True)
        if value.shape != own[key].shape:
            raise DataError(path, f"{key} has shape {tuple(value.shape)}, {model.cfg.name} expects "
                                  f"{tuple(own[key].shape)} (weights of another EfficientNet variant?)")
        new[key] = value
    if not new:
        raise DataError(path, f"no weights matching {model.cfg.name}'s backbone")
    model.backbone.load_state_dict(new, strict=False)
    report = {"loaded": sorted(new), "skipped": sorted(skipped), "missing": sorted(set(own) - set(new))}
    log.info("ImageNet weights from %s: %d tensors loaded, %d skipped, %d missing",
             path, len(report["loaded"]), len(report["skipped"]), len(report["missing"]))
    return report


def build_model(cfg: ModelConfig | Mapping[str, Any] | None = None,
                imagenet_weights: str | Path | None = None) -> BengaliNet:
    """Build a :class:`BengaliNet` (offline: nothing is downloaded).

    ``imagenet_weights``: optional path of a local efficientnet-pytorch ImageNet ``.pth``; see
    :func:`load_imagenet_weights` (its report is kept as ``model.imagenet_report``).
    """
    model = BengaliNet(_as_config(cfg))
    if imagenet_weights is not None:
        model.imagenet_report = load_imagenet_weights(model, imagenet_weights)
    return model


def _unwrap(model: nn.Module) -> nn.Module:
    # DDP / DataParallel keep the model in .module, torch.compile in ._orig_mod: save the bare model's keys.
    while not isinstance(model, BengaliNet):
        inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            break
        model = inner
    return model


def save_checkpoint(path: str | Path, model: nn.Module, **extra: Any) -> Path:
    """Write ``{"model": state_dict, "model_config": dict, "kit_version": str, **extra}`` atomically.

    ``model`` may be wrapped in DDP or ``torch.compile``. ``extra`` values must be tensors or Python
    builtins (dicts, lists, numbers, strings) so that ``weights_only=True`` loading works. A full disk or
    an unwritable folder is a one-line DataError naming ``path``.
    """
    bare = _unwrap(model)
    if not isinstance(bare, BengaliNet):
        raise TypeError(f"save_checkpoint expects a BengaliNet, got {type(bare).__name__}")
    reserved = {"model", "model_config", "kit_version"} & set(extra)
    if reserved:
        raise ValueError(f"reserved checkpoint keys in extra: {', '.join(sorted(reserved))}")
    ckpt = {"model": bare.state_dict(), "model_config": bare.cfg.to_dict(), "kit_version": __version__, **extra}
    return save_torch(ckpt, path)


def save_torch(obj: Any, path: str | Path) -> Path:
    """``torch.save`` atomically, serialised in memory first: torch reports a full disk as an opaque
    RuntimeError ("unexpected pos ..."), a plain write reports it as ENOSPC, which becomes a DataError."""
    path = Path(path)
    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getbuffer())
    return path


def check_checkpoint_structure(ckpt: Any, where: str | Path = "<checkpoint>") -> dict[str, Any]:
    """Check a loaded checkpoint's structure; returns it. DataError naming ``where`` (one line) when it is
    not a kit checkpoint, its ``model`` is not a state dict of tensors, a weight is NaN/inf (a run that
    diverged) or its ``image_size`` does not fit the model."""
    if not isinstance(ckpt, Mapping) or "model" not in ckpt or "model_config" not in ckpt:
        raise DataError(where, "not a bengali_kit checkpoint (needs 'model' and 'model_config' keys)")
    state = ckpt["model"]
    if not isinstance(state, Mapping) or not state or \
            not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        kind = type(state).__name__ if not isinstance(state, Mapping) or not state else "dict with non-tensor values"
        raise DataError(where, f"'model' is a {kind}, not a state dict of tensors (a hand-edited checkpoint?)")
    if not isinstance(ckpt["model_config"], Mapping):
        raise DataError(where, f"'model_config' is a {type(ckpt['model_config']).__name__}, not a dict")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise DataError(where, f"has NaN/inf weights ({len(bad)} of {len(state)} tensors, e.g. {bad[0]}): "
                               "the run diverged; retrain with a lower --lr")
    size = ckpt.get("image_size")
    name = ckpt["model_config"].get("name", ModelConfig.name)
    if size is not None and name in MODEL_NAMES:
        try:
            check_image_size(name, size)
        except ValueError as err:
            raise DataError(where, str(err)) from None
    return dict(ckpt)


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` and check it (:func:`check_checkpoint_structure`).

    DataError (one line, naming the file) if missing, truncated, corrupt, holding pickled objects, or not a
    usable kit checkpoint. Tensors keep their dtype (a float16 state dict stays float16 here).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "is a folder, not a checkpoint file" if path.is_dir() else "checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - corrupt, truncated or pickled objects: all a data problem
        raise DataError(path, _load_problem(err)) from None
    return check_checkpoint_structure(ckpt, path)


def _fit_problem(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str:
    """How a state dict differs from the model's: counts and one example of each kind of mismatch."""
    own = model.state_dict()
    shapes = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    parts = []
    if shapes:
        k, theirs, ours = shapes[0]
        parts.append(f"{len(shapes)} tensor(s) of another shape, e.g. {k} {theirs} where the model has {ours}")
    if missing:
        parts.append(f"{len(missing)} missing, e.g. {missing[0]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
    return "; ".join(parts) or "they do not load"


def load_model(path_or_ckpt: str | Path | Mapping[str, Any], map_location: Any = "cpu") -> tuple[BengaliNet, dict]:
    """Rebuild the model from a checkpoint path or an already loaded checkpoint dict.

    Returns ``(model.eval(), ckpt)``; the model is float32 whatever the stored dtype (the shipped weights
    are float16). DataError when the checkpoint is unusable, the config invalid or the weights do not fit it.
    """
    if isinstance(path_or_ckpt, Mapping):
        where: str | Path = "<checkpoint>"
        ckpt = check_checkpoint_structure(path_or_ckpt, where)
    else:
        where = Path(path_or_ckpt)
        ckpt = load_checkpoint(where, map_location=map_location)
    try:
        cfg = ModelConfig.from_dict(ckpt["model_config"])
    except (TypeError, ValueError) as err:
        raise DataError(where, f"bad model_config: {err}") from None
    model = BengaliNet(cfg)
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    own = model.state_dict()
    if set(state) != set(own) or any(tuple(state[k].shape) != tuple(own[k].shape) for k in own):
        raise DataError(where, f"weights do not fit model_config ({cfg.name}, pooling={cfg.pooling}, "
                               f"neck_dim={cfg.neck_dim}): {_fit_problem(model, state)}")
    model.load_state_dict(state, strict=True)
    if map_location is not None and not isinstance(map_location, (dict,)) and not callable(map_location):
        model.to(map_location)
    return model.eval(), ckpt
