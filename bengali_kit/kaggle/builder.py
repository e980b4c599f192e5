"""Building the folder uploaded to Kaggle as a dataset (``bengali-kit package``).

Layout of a package folder (``kaggle datasets create -p <folder> -r zip``)::

    dataset-metadata.json          title, id <user>/<slug>, licence
    bengali_kit_package.json       manifest read by the kernel: checkpoints, wheels, kit version, all files
    checkpoints/<name>.pt          state dict + model config + image size + crop params (no optimizer)
    init/<name>.pt                 with --include-init: a starting point for a Kaggle training notebook
    wheels/*.whl                   bengali_kit and what Kaggle's image lacks (efficientnet-pytorch)
    kernel/kernel.py               the inference script (``kaggle kernels push -p <folder>/kernel``)
    kernel/kernel-metadata.json    internet off, the accelerator, competition + this dataset attached

Every input is checked before anything is written; the folder is built in a temporary folder beside the
target and renamed into place only when it is complete, so a failure leaves no partial folder and
``--overwrite`` leaves no file the new manifest does not list. Nothing is uploaded here.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import DataError
from ..files import atomic_write_text, os_problem, refuse_inputs, remove_stale_temps, temp_prefix
from .checkpoints import check_package_checkpoint, checkpoint_names, summary, write_checkpoint
from .estimate import RuntimeEstimate, estimate_runtime
from .flow import submission_steps, submission_text
from .junk import find_junk
from .kernel import kernel_source
from .metadata import DEFAULT_ACCELERATOR, accelerator, dataset_metadata, kernel_metadata, kernel_slug
from .names import validate_slug, validate_title, validate_user
from .search import COMPETITION, MANIFEST
from .wheels import DEPS_MODES, collect_wheels, prebuilt_wheels

KERNEL_DIRNAME = "kernel"
MANIFEST_FORMAT = 2


@dataclass
class PackageInfo:
    """What :func:`build_package` wrote."""

    out_dir: Path
    dataset_id: str
    kernel_id: str
    files: list[tuple[str, int]] = field(default_factory=list)  # (relative path, bytes), sorted
    checkpoints: list[dict] = field(default_factory=list)
    wheels: list[str] = field(default_factory=list)
    init_checkpoint: dict | None = None
    accelerator: str = DEFAULT_ACCELERATOR
    estimate: RuntimeEstimate | None = None
    seconds: float = 0.0

    @property
    def total_bytes(self) -> int:
        """Size of the whole folder."""
        return sum(size for _, size in self.files)

    def listing(self) -> str:
        """The folder's content list with sizes and the total."""
        width = max((len(p) for p, _ in self.files), default=10)
        lines = [f"  {p:<{width}}  {_human(s):>9}" for p, s in self.files]
        lines.append(f"  {'total (' + str(len(self.files)) + ' files)':<{width}}  {_human(self.total_bytes):>9}")
        return "\n".join(lines)

    def submission_steps(self) -> list[tuple[str, list[str]]]:
        """The upload, push and submit steps (not run here)."""
        return submission_steps(self.out_dir, self.dataset_id, self.kernel_id)

    def submission_text(self) -> str:
        """The steps as the text ``package`` prints."""
        return submission_text(self.out_dir, self.dataset_id, self.kernel_id)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def list_files(folder: Path) -> list[tuple[str, int]]:
    """(relative path, bytes) of every file under ``folder``, sorted."""
    return sorted((p.relative_to(folder).as_posix(), p.stat().st_size) for p in folder.rglob("*") if p.is_file())


def _check_target(out: Path, overwrite: bool) -> None:
    """Refuse an ``--out`` the build may not replace; nothing is touched."""
    if out.exists() and not out.is_dir():
        raise DataError(out, "exists and is not a folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    junk = find_junk(out)
    if junk:
        raise DataError(out, "refusing to package credentials or junk: " + ", ".join(junk[:10]))
    if not overwrite:
        raise DataError(out, "folder is not empty (pass --overwrite to replace the package in it)")
    if not (out / MANIFEST).is_file():
        raise DataError(out, f"is not a package folder (no {MANIFEST}); --overwrite replaces only a package: "
                             "choose a new or empty --out")
    listed = _manifest_files(out / MANIFEST)
    for rel, _ in list_files(out):  # a file the manifest does not list is the user's: never deleted
        if rel != MANIFEST and rel not in listed:
            raise DataError(out / rel, f"not listed in {out / MANIFEST}, so not the kit's; --overwrite replaces "
                                       "only a package's own files: move it out of --out first")


def _manifest_files(path: Path) -> set[str]:
    """The files a package manifest lists; DataError when it is not a valid manifest (then it is no package)."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise DataError(path, f"not a valid package manifest ({type(err).__name__}); --overwrite replaces only "
                              "a package: choose a new or empty --out") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not (isinstance(manifest, dict) and isinstance(manifest.get("format"), int) and isinstance(files, list)
            and files and all(isinstance(f, str) for f in files)):
        raise DataError(path, "not a valid package manifest (no format and list of files); --overwrite replaces "
                              "only a package: choose a new or empty --out")
    return set(files)


def _make_tmp_beside(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)  # what a killed earlier run left (SIGKILL; SIGTERM and Ctrl-C clean up)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(out), suffix=".tmp", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700 folders; give the usual permissions
    return tmp


def _swap_in(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` onto ``out``; an old ``out`` is removed only once the new one is there."""
    if not out.exists():
        os.rename(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=temp_prefix(out), suffix=".old", dir=out.parent))
    os.rmdir(old)
    os.rename(out, old)
    try:
        os.rename(tmp, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def build_package(checkpoints: Sequence[str | Path] | str | Path, out_dir: str | Path, user: str, slug: str,
                  title: str | None = None, wheel_dir: str | Path | None = None, deps: str = "auto",
                  tta: bool = False, batch_size: int = 256, overwrite: bool = False,
                  accel: str = DEFAULT_ACCELERATOR, include_init: str | Path | None = None) -> PackageInfo:
    """Build the Kaggle dataset folder (see the module docstring) and return what it holds.

    ``checkpoints``: one or several training checkpoints (the kernel averages their predictions).
    ``wheel_dir``: prebuilt wheels to use instead of building (``bengali_kit-*.whl``,
    ``efficientnet_pytorch-*.whl``). ``deps``: how a missing dependency wheel is made: ``"installed"``
    repacks the installed copy, ``"pip"`` runs ``pip wheel`` (needs the index), ``"auto"`` tries both.
    ``tta``/``batch_size``: the kernel's defaults, stored in the manifest. ``accel``: the kernel's
    ``machine_shape`` (t4, t4x2, p100 or cpu). ``include_init``: a checkpoint bundled under ``init/``
    as a starting point for training on Kaggle (``train --init``). Raises DataError/ValueError before
    writing anything when an input is bad.
    """
    t0 = time.perf_counter()
    # 1. Check every input; nothing is written yet.
    user, slug = validate_user(user), validate_slug(slug)
    title = validate_title(title, slug)
    acc = accelerator(accel)
    if deps not in DEPS_MODES:
        raise ValueError(f"deps must be one of {', '.join(DEPS_MODES)}, got {deps!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"--batch-size must be a positive integer, got {batch_size!r}")
    ckpt_paths = [Path(checkpoints)] if isinstance(checkpoints, (str, Path)) else [Path(c) for c in checkpoints]
    if not ckpt_paths:
        raise ValueError("at least one --checkpoint is needed")
    init_path = Path(include_init) if include_init is not None else None
    for path in [*ckpt_paths, *([init_path] if init_path else [])]:
        if not path.exists():
            raise DataError(path, "checkpoint not found")
    prebuilt = prebuilt_wheels(wheel_dir)
    out = Path(out_dir)
    refuse_inputs(out, [*ckpt_paths, *([init_path] if init_path else []), *([Path(wheel_dir)] if wheel_dir else [])],
                  "--out")
    _check_target(out, overwrite)
    # the slow checks last: each checkpoint is loaded and rebuilt as a model
    slims = [check_package_checkpoint(p) for p in ckpt_paths]
    init_slim = check_package_checkpoint(init_path) if init_path is not None else None

    # 2. Build beside the target, then swap it in.
    tmp = _make_tmp_beside(out.absolute())  # absolute: the parent of `--out .` is not `.`
    try:
        ckpt_info = []
        for slim, src, name in zip(slims, ckpt_paths, checkpoint_names(ckpt_paths), strict=True):
            write_checkpoint(slim, tmp / "checkpoints" / name)
            ckpt_info.append({**summary(slim, src), "file": f"checkpoints/{name}"})
        init_info = None
        if init_slim is not None and init_path is not None:
            name = checkpoint_names([init_path])[0]
            write_checkpoint(init_slim, tmp / "init" / name)
            init_info = {**summary(init_slim, init_path), "file": f"init/{name}"}
        wheels = collect_wheels(tmp / "wheels", prebuilt, deps)

        dataset_id, kernel_id = f"{user}/{slug}", f"{user}/{kernel_slug(slug)}"
        atomic_write_text(tmp / "dataset-metadata.json",
                          json.dumps(dataset_metadata(user, slug, title), indent=2) + "\n")
        atomic_write_text(tmp / KERNEL_DIRNAME / "kernel.py", kernel_source(slug))
        atomic_write_text(tmp / KERNEL_DIRNAME / "kernel-metadata.json",
                          json.dumps(kernel_metadata(user, slug, acc.name), indent=2) + "\n")
        manifest: dict[str, Any] = {
            "format": MANIFEST_FORMAT, "kit_version": __version__, "dataset_id": dataset_id, "kernel_id": kernel_id,
            "competition": COMPETITION, "accelerator": acc.name, "machine_shape": acc.machine_shape,
            "checkpoints": ckpt_info, "wheels": [f"wheels/{w.name}" for w in wheels],
            "tta": bool(tta), "batch_size": int(batch_size),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if init_info is not None:
            manifest["init_checkpoint"] = init_info
        manifest["files"] = [p for p, _ in list_files(tmp)]  # everything but the manifest itself
        atomic_write_text(tmp / MANIFEST, json.dumps(manifest, indent=2) + "\n")

        junk = find_junk(tmp)
        if junk:
            raise DataError(out, "refusing to package credentials or junk: " + ", ".join(junk[:10]))
        _swap_in(tmp, out.absolute())
    except OSError as err:  # a full disk, a folder made read-only meanwhile: one line, not a traceback
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(out, f"cannot write the package: {os_problem(err)}") from None
    except DataError as err:  # a file of the temporary folder is named as it would be in --out
        shutil.rmtree(tmp, ignore_errors=True)
        if err.path.is_relative_to(tmp):
            raise DataError(out / err.path.relative_to(tmp), err.problem) from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    models = [(c["model"], c["image_size"]) for c in ckpt_info]
    return PackageInfo(out_dir=out, dataset_id=dataset_id, kernel_id=kernel_id, files=list_files(out),
                       checkpoints=ckpt_info, wheels=[w.name for w in wheels], init_checkpoint=init_info,
                       accelerator=acc.name, estimate=estimate_runtime(models, acc.name, tta=tta),
                       seconds=time.perf_counter() - t0)
