"""Making a model fast on this machine: batch-norm folding, bfloat16 autocast where the CPU has it, compile.

Every lever here is off unless a caller turns it on (``benchmarks/bench_model.py`` measures each against
the float32 eager default before any becomes a default):

- ``fold_batch_norm``: an eval-only copy with every BatchNorm folded into the convolution or linear layer
  before it; exact in float32 up to rounding (one layer less per conv at inference).
- ``cpu_has_bf16`` / ``inference_autocast``: bfloat16 autocast only where the CPU computes bfloat16
  natively (AVX-512 BF16 or AMX); elsewhere oneDNN emulates it and it is slower than float32.
- ``maybe_compile``: ``torch.compile`` (inductor) with a one-line fallback to eager when compiling fails,
  which it does lazily, at the first call, not at ``torch.compile``.
- ``fold_static_padding``: efficientnet-pytorch's symmetric "SAME" zero padding moved into the convolution
  (a copy of every activation less per such conv); exact, for training and inference alike.
- ``set_threads``: intra-op and inter-op thread counts in one call (inter-op only before any parallel work).
"""
from __future__ import annotations

import copy
import logging
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

__all__ = ["fold_batch_norm", "fold_static_padding", "cpu_flags", "cpu_has_bf16", "inference_autocast", "maybe_compile",
           "CompiledOrEager", "set_threads"]

log = logging.getLogger(__name__)

#: (layer, batch norm) attribute pairs, in data-flow order, of efficientnet-pytorch's modules (by class name):
#: the batch norm consumes that layer's output directly (see ``MBConvBlock.forward``, ``extract_features``).
_FOLD_PAIRS: dict[str, tuple[tuple[str, str], ...]] = {
    "EfficientNet": (("_conv_stem", "_bn0"), ("_conv_head", "_bn1")),
    "MBConvBlock": (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2")),
}

#: /proc/cpuinfo flags that mean native bfloat16 matrix arithmetic (oneDNN uses them for bf16 convs).
BF16_FLAGS: frozenset[str] = frozenset({"avx512_bf16", "amx_bf16"})


# ---------------------------------------------------------------- batch-norm folding
def _fold_pair(parent: nn.Module, layer_name: str, bn_name: str) -> bool:
    """Fold ``parent.<bn_name>`` into ``parent.<layer_name>``; the batch norm becomes Identity."""
    layer, bn = getattr(parent, layer_name, None), getattr(parent, bn_name, None)
    if layer is None or not isinstance(bn, nn.modules.batchnorm._BatchNorm) or not bn.track_running_stats:
        return False
    if isinstance(layer, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
        setattr(parent, layer_name, fuse_conv_bn_eval(layer, bn))  # keeps the subclass (static SAME padding)
    elif isinstance(layer, nn.Linear) and isinstance(bn, nn.BatchNorm1d):
        setattr(parent, layer_name, fuse_linear_bn_eval(layer, bn))
    else:
        return False
    setattr(parent, bn_name, nn.Identity())
    return True


def _fold_sequential(seq: nn.Sequential) -> int:
    """Fold every (Conv2d, BatchNorm2d) or (Linear, BatchNorm1d) that follow each other in ``seq``."""
    names = list(seq._modules)
    return sum(_fold_pair(seq, a, b) for a, b in zip(names, names[1:]))


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` with its batch norms folded into the layers before them (inference only).

    Folds efficientnet-pytorch's conv/bn pairs and adjacent pairs inside any ``nn.Sequential`` (the neck).
    The original is untouched. Raises ValueError if a batch norm that would run is left unfolded, so a
    model of another shape fails loudly instead of running half-folded.
    """
    folded = copy.deepcopy(model).eval()
    for module in list(folded.modules()):
        for layer_name, bn_name in _FOLD_PAIRS.get(type(module).__name__, ()):
            _fold_pair(module, layer_name, bn_name)
        if isinstance(module, nn.Sequential):
            _fold_sequential(module)
    left = [name for name, m in folded.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ValueError(f"fold_batch_norm: {len(left)} batch norm(s) not folded, e.g. {left[0]}")
    return folded.requires_grad_(False)


def _symmetric_pad(module: nn.Module) -> int | None:
    """The side of a conv's separate ZeroPad2d when it pads all four sides alike (and the conv itself pads 0)."""
    pad = getattr(module, "static_padding", None)
    if not isinstance(module, nn.Conv2d) or not isinstance(pad, nn.ZeroPad2d) or tuple(module.padding) != (0, 0):
        return None
    sides = set(pad.padding)
    return sides.pop() if len(sides) == 1 else None


def fold_static_padding(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose convs pad inside ``conv2d`` where their static SAME padding is symmetric.

    efficientnet-pytorch pads with a separate ``F.pad`` (a full copy of the activation, slow in channels_last)
    before each conv; a symmetric one is the conv's own ``padding``, same result and gradients. The
    asymmetric ones (stride 2) stay. Works in training too: build the optimizer on the returned copy.
    """
    folded = copy.deepcopy(model)
    for module in folded.modules():
        side = _symmetric_pad(module)
        if side is not None:
            module.padding = (side, side)
            module.static_padding = nn.Identity()
    return folded


# ---------------------------------------------------------------- bfloat16
def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags from ``cpuinfo`` (Linux); empty where the file is missing or unreadable."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def cpu_has_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX), so bf16 autocast can gain.

    Asks torch first (``torch.cpu._is_avx512_bf16_supported`` / ``_is_amx_tile_supported``, where this
    torch has them), then the ``/proc/cpuinfo`` flags; ``flags`` overrides both (tests). False when unsure:
    without native support oneDNN emulates bfloat16 and autocast is slower than float32.
    """
    if flags is not None:
        return bool(BF16_FLAGS & flags)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check: Callable[[], bool] | None = getattr(torch.cpu, probe, None)
        if check is not None and check():
            return True
    return bool(BF16_FLAGS & cpu_flags())


def inference_autocast(device: torch.device | str, enabled: bool) -> AbstractContextManager:
    """The autocast context inference runs in: float16 on CUDA, bfloat16 on a CPU that has it, else none.

    ``enabled=False`` is always a no-op; on a CPU without native bfloat16 it is a no-op too (said at debug
    level), since emulated bfloat16 is slower than float32 there.
    """
    device = torch.device(device)
    if not enabled:
        return nullcontext()
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    if device.type == "cpu" and cpu_has_bf16():
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
    log.debug("bfloat16 autocast skipped: this CPU has no native bfloat16 (avx512_bf16/amx_bf16)")
    return nullcontext()


# ---------------------------------------------------------------- torch.compile
class CompiledOrEager(nn.Module):
    """Calls the compiled module; if its first call fails (compiling happens then), says so in one line
    and calls the eager module from then on. ``module`` is the eager original (its weights are shared)."""

    def __init__(self, module: nn.Module, compiled: Callable[..., Any]):
        super().__init__()
        self.module = module
        self._compiled: Callable[..., Any] | None = compiled
        self._proven = False

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self._compiled is None:
            return self.module(*args, **kwargs)
        if self._proven:
            return self._compiled(*args, **kwargs)
        try:
            out = self._compiled(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - any compiler failure falls back to eager, said in one line
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            log.warning("torch.compile failed (%s: %s); running eager", type(err).__name__, first[:200])
            self._compiled = None
            return self.module(*args, **kwargs)
        self._proven = True
        return out

    @property
    def compiled(self) -> bool:
        """Whether calls go to the compiled module (False after a fallback)."""
        return self._compiled is not None


def maybe_compile(model: nn.Module, enabled: bool, **compile_kwargs: Any) -> nn.Module:
    """``model`` compiled with ``torch.compile`` (inductor) behind an eager fallback, or ``model`` itself.

    Save and load weights through ``model``, never the wrapper (its state-dict keys carry a prefix).
    ``compile_kwargs`` go to ``torch.compile`` (e.g. ``mode="max-autotune-no-cudagraphs"``).
    """
    if not enabled:
        return model
    if not hasattr(torch, "compile"):
        log.warning("torch.compile is not in torch %s; running eager", torch.__version__)
        return model
    return CompiledOrEager(model, torch.compile(model, **compile_kwargs))


# ---------------------------------------------------------------- threads
def set_threads(intra: int | None = None, inter: int | None = None) -> tuple[int, int]:
    """Set torch's intra-op and inter-op thread counts (None: leave as is); returns the counts in effect.

    Inter-op threads can only be set before the first parallel work in a process: a later request is
    ignored with a one-line warning rather than an error, so a library call never fails on it.
    """
    if intra is not None:
        torch.set_num_threads(max(1, int(intra)))
    if inter is not None and inter != torch.get_num_interop_threads():
        try:
            torch.set_num_interop_threads(max(1, int(inter)))
        except RuntimeError as err:
            log.warning("inter-op threads stay %d: %s", torch.get_num_interop_threads(), str(err).splitlines()[0])
    return torch.get_num_threads(), torch.get_num_interop_threads()

