"""The two metadata files the kaggle CLI reads: ``dataset-metadata.json`` and ``kernel/kernel-metadata.json``.

``machine_shape`` picks the accelerator the kernel runs on; without it Kaggle gives the P100. The values
are the kaggle CLI's (``kaggle kernels push --accelerator`` takes the same; docs/kernels.md and
docs/kernels_metadata.md of Kaggle/kaggle-cli): ``NvidiaTeslaT4`` is the "GPU T4 x2" of the notebook
editor (Kaggle hands out no single T4), ``NvidiaTeslaP100`` the P100. Kaggle's current image has a
torch build without kernels for the P100 (compute capability 6.0), so there the kernel falls back to the
CPU (``bengali_kit.device.resolve_device``): T4 is the default.
"""
from __future__ import annotations

from dataclasses import dataclass

from .names import KERNEL_SUFFIX
from .search import COMPETITION


@dataclass(frozen=True)
class Accelerator:
    """One ``package --accelerator`` choice."""

    name: str
    machine_shape: str | None  # None: no GPU asked for
    description: str
    gpus: int
    kernel_device: str  # what the kernel ends up running on: "cuda" or "cpu"


ACCELERATORS: dict[str, Accelerator] = {
    "t4": Accelerator("t4", "NvidiaTeslaT4", "GPU T4 x2 (Kaggle gives T4s only in pairs; the kernel uses one)",
                      2, "cuda"),
    "t4x2": Accelerator("t4x2", "NvidiaTeslaT4", "GPU T4 x2 (the kernel predicts on one of the two)", 2, "cuda"),
    "p100": Accelerator("p100", "NvidiaTeslaP100", "GPU P100 (Kaggle's current torch has no kernels for it: "
                        "the kernel falls back to the CPU)", 1, "cpu"),
    "cpu": Accelerator("cpu", None, "no GPU (CPU only)", 0, "cpu"),
}
DEFAULT_ACCELERATOR = "t4"


def accelerator(name: str) -> Accelerator:
    """The :class:`Accelerator` called ``name``; ValueError naming the choices otherwise."""
    try:
        return ACCELERATORS[name]
    except KeyError:
        raise ValueError(f"--accelerator {name!r} is not one of {', '.join(ACCELERATORS)}") from None


def kernel_slug(slug: str) -> str:
    """The kernel's slug for dataset ``slug``."""
    return f"{slug}{KERNEL_SUFFIX}"


# The licence names ``kaggle datasets create`` accepts in dataset-metadata.json ("licenses": exactly one entry,
# only its "name" is read): the "Licenses" section of docs/datasets_metadata.md in Kaggle/kaggle-api.
KAGGLE_DATASET_LICENCES = frozenset({
    "CC0-1.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "CC-BY-NC-SA-4.0", "GPL-2.0", "ODbL-1.0", "DbCL-1.0",
    "copyright-authors", "other", "unknown", "CC-BY-4.0", "CC-BY-NC-4.0", "PDDL", "CC-BY-3.0", "CC-BY-3.0-IGO",
    "US-Government-Works", "CC-BY-NC-SA-3.0-IGO", "CDLA-Permissive-1.0", "CDLA-Sharing-1.0", "CC-BY-ND-4.0",
    "CC-BY-NC-ND-4.0", "ODC-BY-1.0", "LGPL-3.0", "AGPL-3.0", "FDL-1.3", "EU-ODP-Legal-Notice", "apache-2.0",
    "GPL-3.0",
})
# The package holds weights trained on the competition's data, which Bengali.AI released under CC BY-NC-SA 4.0
# (README, weights/README.md): the weights fall under the same licence, so the dataset cannot be CC0.
DEFAULT_DATASET_LICENCE = "CC-BY-NC-SA-4.0"


def dataset_metadata(user: str, slug: str, title: str, licence: str = DEFAULT_DATASET_LICENCE) -> dict:
    """``dataset-metadata.json``: the dataset's id, title and licence (private until the user shares it)."""
    if licence not in KAGGLE_DATASET_LICENCES:
        raise ValueError(f"licence {licence!r} is not one the kaggle CLI accepts: "
                         f"{', '.join(sorted(KAGGLE_DATASET_LICENCES))}")
    return {"title": title, "id": f"{user}/{slug}", "licenses": [{"name": licence}]}


def kernel_metadata(user: str, slug: str, accel: str = DEFAULT_ACCELERATOR) -> dict:
    """``kernel-metadata.json``: a private script kernel, internet off, the competition and the package attached."""
    acc = accelerator(accel)
    meta = {
        "id": f"{user}/{kernel_slug(slug)}",
        # Kaggle derives the kernel's slug from its title: keep them in step.
        "title": kernel_slug(slug).replace("-", " "),
        "code_file": "kernel.py",
        "language": "python",
        "kernel_type": "script",
        "is_private": True,
        "enable_gpu": acc.machine_shape is not None,
        "enable_tpu": False,
        "enable_internet": False,  # a code competition's rerun has no internet
        "dataset_sources": [f"{user}/{slug}"],
        "competition_sources": [COMPETITION],
        "kernel_sources": [],
        "model_sources": [],
    }
    if acc.machine_shape:
        meta["machine_shape"] = acc.machine_shape
    return meta
