"""Kaggle: the package folder uploaded as a dataset, its offline kernel, and the way to a submission.

One concern per module:

- ``names``: Kaggle's rules for the user, the dataset slug and the title
- ``junk``: what must never be uploaded (credentials, caches), also inside wheels
- ``checkpoints``: checking checkpoints up front and writing them slim
- ``wheels``: the kit's wheel (from the source tree or the installed distribution) and efficientnet-pytorch's
- ``metadata``: ``dataset-metadata.json`` and ``kernel-metadata.json``, with the accelerator (``machine_shape``)
- ``search``: finding the competition data and the package under ``/kaggle/input`` (shared by the kernel
  and the notebooks; standard library only)
- ``kernel_template`` (package data) and ``kernel``: the kernel script and its rendering
- ``builder``: ``build_package``, the folder built beside the target and swapped in
- ``verify``: ``verify_package``, the kernel run offline in a fresh venv
- ``estimate``: the kernel's run time on the hidden test set
- ``flow``: the commands from the folder to a scored submission
"""
from .builder import PackageInfo, build_package
from .estimate import RuntimeEstimate, estimate_runtime
from .junk import find_junk
from .kernel import kernel_source
from .metadata import ACCELERATORS, DEFAULT_ACCELERATOR, kernel_metadata
from .names import validate_slug, validate_user
from .search import COMPETITION, MANIFEST, InputSearchError, find_competition, find_input, find_package
from .verify import VerifyReport, verify_package

__all__ = [
    "ACCELERATORS", "COMPETITION", "DEFAULT_ACCELERATOR", "MANIFEST", "InputSearchError", "PackageInfo",
    "RuntimeEstimate", "VerifyReport", "build_package", "estimate_runtime", "find_competition", "find_input",
    "find_junk", "find_package", "kernel_metadata", "kernel_source", "validate_slug", "validate_user",
    "verify_package",
]
