"""Which torch device to run on.

``"auto"`` takes the GPU only when this torch build carries kernels for it. A GPU can be visible
(``torch.cuda.is_available()`` is True) while the build has no code for its architecture: Kaggle's
current torch on a P100 (sm_60) then fails at the first CUDA operation with "no kernel image is
available". So the GPU's compute capability is checked against ``torch.cuda.get_arch_list()`` and a tiny
operation is run; when either fails, ``"auto"`` falls back to the CPU with one warning line on stderr.
"""
from __future__ import annotations

import sys

import torch

__all__ = ["resolve_device", "cuda_problem", "arch_supported", "DEVICE_CHOICES"]

#: What ``--device`` accepts, in words (for help texts and errors).
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


def arch_supported(capability: tuple[int, int], arch_list: list[str]) -> bool:
    """True when a build compiled for ``arch_list`` (``sm_XY``/``compute_XY``) runs on ``capability``.

    A cubin for ``sm_XY`` runs on GPUs of the same major version and an equal or higher minor one
    (sm_80 code runs on an sm_86 card); PTX (``compute_XY``) is compiled on the fly for any GPU at least XY.
    """
    major, minor = capability
    for arch in arch_list:
        kind, _, digits = arch.partition("_")
        if not digits.isdigit() or len(digits) < 2:
            continue
        a_major, a_minor = int(digits[:-1]), int(digits[-1])
        if kind == "sm" and a_major == major and a_minor <= minor:
            return True
        if kind == "compute" and (a_major, a_minor) <= (major, minor):
            return True
    return False


def _smoke_test(index: int) -> None:
    """One tiny CUDA kernel: raises when the build cannot run on this GPU."""
    x = torch.ones(8, device=f"cuda:{index}")
    float((x * 2).sum())


def cuda_problem(index: int = 0) -> str | None:
    """Why CUDA device ``index`` cannot run this torch build's kernels, or None when it can."""
    if not torch.cuda.is_available():
        return "CUDA is not available here"
    count = torch.cuda.device_count()
    if index >= count:
        return f"there is no GPU cuda:{index} ({count} GPU(s) visible)"
    major, minor = torch.cuda.get_device_capability(index)
    archs = list(torch.cuda.get_arch_list())
    if archs and not arch_supported((major, minor), archs):
        name = torch.cuda.get_device_name(index)
        return (f"this torch build ({torch.__version__}) has no kernels for the {name} (sm_{major}{minor}; "
                f"built for {' '.join(archs)})")
    try:
        _smoke_test(index)
    except RuntimeError as err:
        first = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
        return f"a test operation on cuda:{index} failed ({first[:160]})"
    return None


def resolve_device(name: str | torch.device | None = "auto", local_rank: int | None = None, *,
                   option: str = "--device") -> torch.device:
    """Turn ``--device`` into a ``torch.device``: ``"auto"`` -> a usable GPU, else the CPU (with a warning
    when a GPU is visible but unusable); ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"`` -> that device.

    ``local_rank``: under DDP (torchrun), the process's GPU index, which replaces N. A CUDA result is made
    the current device. ValueError naming ``option`` for a device string torch does not know, or a device
    that is absent or cannot run this build (asked for explicitly, it is never swapped for the CPU).
    """
    if isinstance(name, torch.device):
        name = str(name)
    if name is None or name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        index = local_rank or 0
        problem = cuda_problem(index)
        if problem is not None:
            print(f"warning: {problem}; running on the CPU", file=sys.stderr, flush=True)
            return torch.device("cpu")
        return _use_cuda(index)
    if not isinstance(name, str):
        raise ValueError(f"{option} must be a device name ({DEVICE_CHOICES}), got {name!r}")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"{option} {name!r}: not a device torch knows; use {DEVICE_CHOICES}") from None
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        index = local_rank if local_rank is not None else (dev.index or 0)
        problem = cuda_problem(index)
        if problem is not None:
            raise ValueError(f"{option} {name!r}: {problem}; use --device cpu (or auto)")
        return _use_cuda(index)
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{option} {name!r}: MPS (Apple GPU) is not available here; use --device cpu")
        return dev
    raise ValueError(f"{option} {name!r}: bengali-kit runs on {DEVICE_CHOICES}, not on {dev.type!r} devices")


def _use_cuda(index: int) -> torch.device:
    dev = torch.device("cuda", index)
    torch.cuda.set_device(dev)
    return dev
