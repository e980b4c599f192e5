"""Building the folder uploaded to Kaggle as a dataset: slim checkpoints, wheels, the offline kernel.

Layout of a package folder (``kaggle datasets create -p <folder> -r zip``)::

    dataset-metadata.json          title, id <user>/<slug>, licence
    bengali_kit_package.json       manifest read by the kernel: checkpoints, wheels, kit version
    checkpoints/<name>.pt          state dict + model config + image size + crop params (no optimizer)
    wheels/*.whl                   bengali_kit and what Kaggle's image lacks (efficientnet-pytorch)
    kernel/kernel.py               the inference script (``kaggle kernels push -p <folder>/kernel``)
    kernel/kernel-metadata.json    internet off, GPU on, competition + this dataset attached

Nothing is uploaded here: the upload commands are printed for the user to run.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from .errors import DataError
from .files import atomic_path, atomic_write_text, prepare_output_dir

__all__ = [
    "COMPETITION", "MANIFEST_NAME", "PackageInfo", "VerifyReport", "build_package", "verify_package",
    "export_checkpoint", "build_kit_wheel", "wheel_from_installed", "pip_wheel", "find_junk",
    "validate_user", "validate_slug", "kernel_source", "KIT_KEEP_KEYS",
]

COMPETITION = "bengaliai-cv19"
MANIFEST_NAME = "bengali_kit_package.json"
KERNEL_DIRNAME = "kernel"
#: Checkpoint keys kept in the package: enough to rebuild the model and preprocess like training.
KIT_KEEP_KEYS = ("model", "model_config", "image_size", "preprocess", "metric")
#: Distributions Kaggle's image lacks, bundled as wheels next to bengali_kit's own.
EXTRA_DISTRIBUTIONS = ("efficientnet-pytorch",)

# Files that must never be uploaded: credentials, VCS data, caches, editor/OS litter.
_JUNK_NAMES = {
    "kaggle.json", ".kaggle", ".git", ".gitconfig", ".netrc", ".pypirc", ".npmrc", ".aws", ".ssh",
    "__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".DS_Store",
    "Thumbs.db", "id_rsa", "id_ed25519", "credentials", "credentials.json", ".venv", "venv",
}
_JUNK_SUFFIXES = (".pyc", ".pyo", ".tmp", ".swp", ".pem", ".key", ".log", "~")
_JUNK_PREFIXES = (".env",)

_SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
_USER_RE = re.compile(r"^[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?$")


# ----------------------------------------------------------------------------------------- validation
def validate_user(user: str) -> str:
    """Check a Kaggle user name (lowercase letters, digits, ``-``/``_`` inside); returns it."""
    if not isinstance(user, str) or not _USER_RE.match(user) or len(user) > 50:
        raise ValueError(f"Kaggle user {user!r} is not valid: use the lowercase user name shown in your "
                         "Kaggle profile URL (letters, digits, '-' or '_')")
    return user


def validate_slug(slug: str) -> str:
    """Check a dataset slug: 6–40 characters of lowercase letters, digits and inner hyphens.

    Kaggle accepts 6–50; 40 leaves room for the kernel's ``<slug>-inference``.
    """
    if not isinstance(slug, str) or not _SLUG_RE.match(slug) or "--" in slug:
        raise ValueError(f"slug {slug!r} is not valid: lowercase letters, digits and single hyphens, "
                         "not starting or ending with a hyphen (e.g. 'bengali-effnet-b0')")
    if not 6 <= len(slug) <= 40:
        raise ValueError(f"slug {slug!r} has {len(slug)} characters; Kaggle needs 6–50 and the kernel id "
                         "adds '-inference', so use 6–40")
    return slug


def _is_junk(name: str) -> bool:
    return (name in _JUNK_NAMES or name.endswith(_JUNK_SUFFIXES)
            or any(name.startswith(p) for p in _JUNK_PREFIXES))


def find_junk(folder: str | Path) -> list[str]:
    """Relative paths under ``folder`` (and inside its wheels) that must not be uploaded."""
    folder = Path(folder)
    bad: list[str] = []
    for root, dirs, files in os.walk(folder):
        rel_root = Path(root).relative_to(folder)
        for name in sorted(dirs + files):
            if _is_junk(name):
                bad.append(str(rel_root / name))
        dirs[:] = [d for d in dirs if not _is_junk(d)]
        for name in files:
            if name.endswith(".whl"):
                bad += _junk_in_wheel(Path(root) / name, rel_root / name)
    return bad


def _junk_in_wheel(path: Path, rel: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except zipfile.BadZipFile:
        return [f"{rel} (not a valid wheel)"]
    bad = []
    for member in names:
        parts = member.rstrip("/").split("/")
        if any(_is_junk(p) for p in parts):
            bad.append(f"{rel}!{member}")
    return bad


# ----------------------------------------------------------------------------------------- checkpoints
def export_checkpoint(src: str | Path, dst: str | Path) -> dict:
    """Write a slim copy of a training checkpoint: the keys in ``KIT_KEEP_KEYS`` only.

    The optimizer, scheduler, scaler and RNG state are dropped (they are useless for inference and can
    double the size). The slim file is loaded back as a model to prove it works; returns its summary.
    """
    import torch

    from . import model as model_mod

    src = Path(src)
    ckpt = model_mod.load_checkpoint(src)
    for key in ("model", "model_config", "image_size"):
        if key not in ckpt:
            raise DataError(src, f"checkpoint has no {key!r} entry (not a bengali_kit training checkpoint?)")
    slim = {k: ckpt[k] for k in KIT_KEEP_KEYS if k in ckpt}
    slim["model"] = {k: v.detach().cpu().contiguous() for k, v in ckpt["model"].items()}
    slim.setdefault("preprocess", {})
    with atomic_path(dst) as tmp:
        torch.save(slim, tmp)
    model_mod.load_model(dst)  # raises DataError if the slim copy does not rebuild
    cfg = slim["model_config"]
    return {"image_size": int(slim["image_size"]), "model": cfg.get("name", "?") if isinstance(cfg, dict) else "?",
            "metric": slim.get("metric"), "source": src.name}


# ----------------------------------------------------------------------------------------- wheels
def _project_root() -> Path | None:
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "bengali_kit").is_dir() else None


def _clean_env() -> dict:
    """The environment without pip settings, so builds and installs see only what we pass them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    return env


def _run(cmd: Sequence[str], what: str, timeout: float = 300, env: dict | None = None,
         cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what}: timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n" + "\n".join(tail))
    return proc


def build_kit_wheel(out_dir: str | Path, project_root: str | Path | None = None) -> Path:
    """Build the ``bengali_kit`` wheel from a clean copy of the source (no caches, no build/ in the tree)."""
    root = Path(project_root) if project_root else _project_root()
    if root is None or not (root / "pyproject.toml").is_file():
        raise DataError(root or Path(__file__).parent, "no bengali_kit source tree with pyproject.toml to build "
                        "the wheel from (pass --wheel-dir with a prebuilt bengali_kit wheel)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bk-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md", "LICENSE", "setup.cfg"):
            if (root / name).is_file():
                shutil.copy2(root / name, src / name)
        shutil.copytree(root / "bengali_kit", src / "bengali_kit",
                        ignore=lambda d, names: [n for n in names if _is_junk(n)])
        build_out = Path(tmp) / "dist"
        _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
              "-q", str(src), "-w", str(build_out)], "building the bengali_kit wheel", env=_clean_env())
        wheels = sorted(build_out.glob("bengali_kit-*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"building the bengali_kit wheel gave {[w.name for w in wheels]}")
        dst = out_dir / wheels[0].name
        shutil.copy2(wheels[0], dst)
    return dst


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def wheel_from_installed(dist_name: str, out_dir: str | Path) -> Path:
    """Repack an installed pure-Python distribution as a wheel (offline; the exact version tested here).

    Used for efficientnet-pytorch, which PyPI ships only as an sdist. Refuses compiled or editable installs.
    """
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise DataError(Path(dist_name), "distribution is not installed here; cannot repack it") from None
    wheel_meta = dist.read_text("WHEEL") or ""
    if "Root-Is-Purelib: true" not in wheel_meta or dist.read_text("direct_url.json") and \
            '"editable": true' in (dist.read_text("direct_url.json") or ""):
        raise DataError(Path(dist_name), "installed distribution is not a plain pure-Python install; "
                        "cannot repack it")
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"]).lower()
    version = dist.version
    info_dir = f"{name}-{version}.dist-info"
    skip = {"INSTALLER", "REQUESTED", "RECORD", "direct_url.json"}
    entries: list[tuple[str, bytes]] = []
    for f in dist.files or []:
        parts = Path(str(f)).parts
        if parts[0].endswith(".dist-info"):
            if parts[-1] in skip:
                continue
            arc = "/".join((info_dir, *parts[1:]))
        else:
            if parts[0] == ".." or any(_is_junk(p) for p in parts):
                continue
            arc = "/".join(parts)
        if arc.split("/")[-1] == "WHEEL":
            data = ("Wheel-Version: 1.0\nGenerator: bengali_kit.package\nRoot-Is-Purelib: true\n"
                    "Tag: py3-none-any\n").encode()
        else:
            data = Path(f.locate()).read_bytes()
        entries.append((arc, data))
    if not any(a.split("/")[0] != info_dir for a, _ in entries):
        raise DataError(Path(dist_name), "installed distribution lists no module files")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / f"{name}-{version}-py3-none-any.whl"
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for arc, data in entries:
        writer.writerow([arc, _record_hash(data), len(data)])
    writer.writerow([f"{info_dir}/RECORD", "", ""])
    with atomic_path(dst) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for arc, data in entries:
                zf.writestr(zipfile.ZipInfo(arc, date_time=(2020, 1, 1, 0, 0, 0)), data,
                            compress_type=zipfile.ZIP_DEFLATED)
            zf.writestr(zipfile.ZipInfo(f"{info_dir}/RECORD", date_time=(2020, 1, 1, 0, 0, 0)),
                        record.getvalue(), compress_type=zipfile.ZIP_DEFLATED)
    return dst


def pip_wheel(requirement: str, out_dir: str | Path, timeout: float = 300) -> Path:
    """``pip wheel --no-deps <requirement>`` (builds from the sdist; needs the package index)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    before = set(out_dir.glob("*.whl"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", requirement, "-w", str(out_dir)],
         f"pip wheel {requirement}", timeout=timeout)
    new = sorted(set(out_dir.glob("*.whl")) - before) or sorted(out_dir.glob("*.whl"))
    key = re.sub(r"[-_.]+", "_", re.split(r"[=<>!~ ]", requirement)[0]).lower()
    match = [w for w in new if w.name.lower().startswith(key + "-")]
    if not match:
        raise RuntimeError(f"pip wheel {requirement} produced no wheel")
    return match[-1]


def _wheel_key(path: Path) -> str:
    return re.sub(r"[-_.]+", "_", path.name.split("-")[0]).lower()


def _collect_wheels(dest: Path, wheel_dir: Path | None, deps: str) -> list[Path]:
    """Put the bengali_kit wheel and the extra dependency wheels into ``dest``."""
    prebuilt = {}
    if wheel_dir is not None:
        if not Path(wheel_dir).is_dir():
            raise DataError(wheel_dir, "wheel folder not found")
        for w in sorted(Path(wheel_dir).glob("*.whl")):
            prebuilt[_wheel_key(w)] = w
    out: list[Path] = []
    if "bengali_kit" in prebuilt:
        out.append(Path(shutil.copy2(prebuilt["bengali_kit"], dest)))
    else:
        out.append(build_kit_wheel(dest))
    for dist_name in EXTRA_DISTRIBUTIONS:
        key = re.sub(r"[-_.]+", "_", dist_name).lower()
        if key in prebuilt:
            out.append(Path(shutil.copy2(prebuilt[key], dest)))
            continue
        if deps not in ("auto", "installed", "pip"):
            raise ValueError(f"deps must be 'auto', 'installed' or 'pip', got {deps!r}")
        try:
            version = importlib.metadata.version(dist_name)
        except importlib.metadata.PackageNotFoundError:
            version = None
        if deps in ("auto", "installed") and version is not None:
            try:
                out.append(wheel_from_installed(dist_name, dest))
                continue
            except DataError:
                if deps == "installed":
                    raise
        if deps == "installed":
            raise DataError(Path(dist_name), "not installed here; cannot repack it (try deps='pip')")
        out.append(pip_wheel(f"{dist_name}=={version}" if version else dist_name, dest))
    return out


# ----------------------------------------------------------------------------------------- kernel
def kernel_source(slug: str) -> str:
    """The kernel script with ``slug`` as its default dataset folder name."""
    here = Path(__file__).resolve()
    candidates = [here.parent / "resources" / "kernel.py", here.parents[1] / "kaggle_dataset" / "kernel.py"]
    for path in candidates:
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            break
    else:
        raise DataError(candidates[-1], "kernel script not found")
    new, n = re.subn(r'^DATASET_SLUG = "[^"\n]*"', f'DATASET_SLUG = "{slug}"', text, count=1, flags=re.M)
    if n != 1:
        raise DataError(path, "kernel script has no DATASET_SLUG line to fill in")
    return new


# ----------------------------------------------------------------------------------------- build
@dataclass
class PackageInfo:
    """What :func:`build_package` wrote."""

    out_dir: Path
    dataset_id: str
    kernel_id: str
    files: list[tuple[str, int]] = field(default_factory=list)  # (relative path, bytes), sorted
    checkpoints: list[dict] = field(default_factory=list)
    wheels: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.files)

    def listing(self) -> str:
        """The folder's content list with sizes and the total."""
        width = max((len(p) for p, _ in self.files), default=10)
        lines = [f"  {p:<{width}}  {_human(s):>9}" for p, s in self.files]
        lines.append(f"  {'total (' + str(len(self.files)) + ' files)':<{width}}  {_human(self.total_bytes):>9}")
        return "\n".join(lines)

    def upload_commands(self) -> list[str]:
        """The commands that upload the dataset and push the kernel (not run here)."""
        d = str(self.out_dir)
        return [
            f"kaggle datasets create -p {d} -r zip                    # first upload",
            f"kaggle datasets version -p {d} -r zip -m \"new weights\"  # later uploads",
            f"kaggle kernels push -p {d}/{KERNEL_DIRNAME}",
        ]


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _list_files(folder: Path) -> list[tuple[str, int]]:
    return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*") if p.is_file())


def _checkpoint_names(paths: Sequence[Path]) -> list[str]:
    names, seen = [], set()
    for i, p in enumerate(paths):
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", p.stem) or "model"
        name = f"{stem}.pt" if len(paths) == 1 else f"{i}_{stem}.pt"
        while name in seen:
            name = f"{i}_{name}"
        seen.add(name)
        names.append(name)
    return names


def build_package(checkpoints: Sequence[str | Path] | str | Path, out_dir: str | Path, user: str, slug: str,
                  title: str | None = None, wheel_dir: str | Path | None = None, deps: str = "auto",
                  tta: bool = False, batch_size: int = 256, overwrite: bool = False) -> PackageInfo:
    """Build the Kaggle dataset folder (see the module docstring) and return what it holds.

    ``checkpoints``: one or several training checkpoints (their predictions are averaged by the kernel).
    ``wheel_dir``: prebuilt wheels to use instead of building (``bengali_kit-*.whl``,
    ``efficientnet_pytorch-*.whl``). ``deps``: how a missing dependency wheel is made: ``"installed"``
    repacks the installed copy, ``"pip"`` runs ``pip wheel`` (needs the index), ``"auto"`` tries both.
    ``tta``/``batch_size``: the kernel's defaults, stored in the manifest.
    Refuses (``DataError``) if the finished folder holds credentials or junk.
    """
    t0 = time.perf_counter()
    user, slug = validate_user(user), validate_slug(slug)
    title = title or f"{slug.replace('-', ' ')} model"
    if not 6 <= len(title) <= 50:
        raise ValueError(f"title {title!r} must have 6–50 characters (Kaggle's rule)")
    if isinstance(checkpoints, (str, Path)):
        checkpoints = [checkpoints]
    ckpt_paths = [Path(c) for c in checkpoints]
    if not ckpt_paths:
        raise ValueError("at least one checkpoint is needed")
    for c in ckpt_paths:
        if not c.is_file():
            raise DataError(c, "checkpoint not found")
    out = Path(out_dir)
    junk = find_junk(out) if out.is_dir() else []
    if junk:  # fail before the slow work; the finished folder is scanned again below
        raise DataError(out, "refusing to package credentials or junk: " + ", ".join(junk[:10]))
    if out.is_dir() and (out / MANIFEST_NAME).is_file() and overwrite:
        # Rebuilding a package: clear only what a package holds so no stale weights are uploaded.
        for name in ("checkpoints", "wheels", KERNEL_DIRNAME):
            shutil.rmtree(out / name, ignore_errors=True)
    out = prepare_output_dir(out, overwrite=overwrite)

    ckpt_dir = out / "checkpoints"
    ckpt_dir.mkdir(exist_ok=True)
    ckpt_info = []
    for src, name in zip(ckpt_paths, _checkpoint_names(ckpt_paths)):
        info = export_checkpoint(src, ckpt_dir / name)
        info["file"] = f"checkpoints/{name}"
        ckpt_info.append(info)

    wheel_out = out / "wheels"
    wheel_out.mkdir(exist_ok=True)
    wheels = _collect_wheels(wheel_out, Path(wheel_dir) if wheel_dir else None, deps)

    from . import __version__
    dataset_id, kernel_slug = f"{user}/{slug}", f"{slug}-inference"
    kernel_id = f"{user}/{kernel_slug}"
    manifest = {
        "format": 1, "kit_version": __version__, "dataset_id": dataset_id, "kernel_id": kernel_id,
        "competition": COMPETITION, "checkpoints": ckpt_info, "wheels": [f"wheels/{w.name}" for w in wheels],
        "tta": bool(tta), "batch_size": int(batch_size),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_text(out / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    atomic_write_text(out / "dataset-metadata.json", json.dumps(
        {"title": title, "id": dataset_id, "licenses": [{"name": "CC0-1.0"}]}, indent=2) + "\n")

    kdir = out / KERNEL_DIRNAME
    kdir.mkdir(exist_ok=True)
    atomic_write_text(kdir / "kernel.py", kernel_source(slug))
    atomic_write_text(kdir / "kernel-metadata.json", json.dumps({
        "id": kernel_id,
        "title": kernel_slug.replace("-", " "),  # Kaggle derives the slug from the title: keep them in step
        "code_file": "kernel.py",
        "language": "python",
        "kernel_type": "script",
        "is_private": True,
        "enable_gpu": True,
        "enable_tpu": False,
        "enable_internet": False,
        "dataset_sources": [dataset_id],
        "competition_sources": [COMPETITION],
        "kernel_sources": [],
        "model_sources": [],
    }, indent=2) + "\n")

    junk = find_junk(out)
    if junk:
        raise DataError(out, "refusing to package credentials or junk: " + ", ".join(junk[:10]))
    return PackageInfo(out_dir=out, dataset_id=dataset_id, kernel_id=kernel_id, files=_list_files(out),
                       checkpoints=ckpt_info, wheels=[w.name for w in wheels],
                       seconds=time.perf_counter() - t0)


# ----------------------------------------------------------------------------------------- verify
@dataclass
class VerifyReport:
    """Outcome of :func:`verify_package`: the kernel's run in a fresh venv with the network blocked."""

    ok: bool
    seconds: float
    rows: int
    kit_location: str
    network_isolation: str
    matches_library: bool | None = None
    answer_key_accuracy: dict | None = None
    kernel_log: str = ""
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"offline kernel check: {'PASSED' if self.ok else 'FAILED'} in {self.seconds:.1f} s",
                 f"  submission rows: {self.rows}", f"  bengali_kit imported from: {self.kit_location}",
                 f"  network: {self.network_isolation}"]
        if self.matches_library is not None:
            lines.append(f"  identical to in-process prediction: {'yes' if self.matches_library else 'NO'}")
        if self.answer_key_accuracy:
            acc = ", ".join(f"{k} {v:.3f}" for k, v in self.answer_key_accuracy.items())
            lines.append(f"  accuracy against the synthetic answer key: {acc}")
        lines += [f"  problem: {p}" for p in self.problems]
        return "\n".join(lines)


# Written into the fresh venv: blocks the network for every Python process there (pip included), and
# makes bengali_kit and efficientnet_pytorch importable only from the venv's own site-packages (the
# developer's editable install and the system copy stay hidden), as on Kaggle where only the wheels
# provide them.
_SITECUSTOMIZE = '''\
import importlib.machinery, os, socket, sys

def _blocked(self, *args, **kwargs):
    if self.family == getattr(socket, "AF_UNIX", None):
        return _orig_connect(self, *args, **kwargs)
    raise OSError("network access is disabled in the offline kernel check")

_orig_connect = socket.socket.connect
socket.socket.connect = _blocked
socket.socket.connect_ex = _blocked

_HERE = os.path.dirname(os.path.abspath(__file__))
_ONLY_HERE = {"bengali_kit", "efficientnet_pytorch"}


class _OnlyFromVenv:
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name not in _ONLY_HERE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, [_HERE])
        if spec is None:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return spec


sys.meta_path.insert(0, _OnlyFromVenv)
'''


def _site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python*/site-packages")) + sorted(venv.glob("Lib/site-packages"))
    if not found:
        raise RuntimeError(f"no site-packages in the venv {venv}")
    return found[0]


def _unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    try:
        return subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def verify_package(package_dir: str | Path, data_dir: str | Path | None = None,
                   work_dir: str | Path | None = None, timeout: float = 300,
                   compare_with_library: bool = True) -> VerifyReport:
    """Run the package's kernel as Kaggle would, offline, and check its ``submission.csv``.

    A fresh venv (``--system-site-packages``: torch, numpy, pandas, pyarrow, cv2 reused, as preinstalled on
    Kaggle) gets bengali_kit and efficientnet-pytorch only from the package's wheels (``--no-index``, no pip
    config). A fake ``/kaggle/input`` holds the competition data as ``bengaliai-cv19/`` (``data_dir``, or a
    small synthetic folder) and the package as ``<slug>/``. The kernel runs with the network blocked
    (``unshare -n`` where it works, and a socket guard in any case). The submission is checked for the
    row ids and order of test.csv and valid targets, compared with this process's own prediction, and
    scored against ``test_labels.csv`` where the data has that answer key.
    """
    import pandas as pd

    from .components import COMPONENTS, N_CLASSES
    from .data import read_sample_submission, read_test_csv

    t0 = time.perf_counter()
    package_dir = Path(package_dir)
    manifest_path = package_dir / MANIFEST_NAME
    if not manifest_path.is_file():
        raise DataError(package_dir, f"not a package folder (no {MANIFEST_NAME})")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    slug = manifest["dataset_id"].split("/", 1)[1]
    problems: list[str] = []

    tmp_ctx = tempfile.TemporaryDirectory(prefix="bk-verify-") if work_dir is None else None
    root = Path(tmp_ctx.name) if tmp_ctx else Path(work_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
        kin = root / "kaggle" / "input"
        comp = kin / COMPETITION
        if data_dir is None:
            from .synth import write_competition_folder

            data_dir = write_competition_folder(root / "synth", train_rows=8, test_rows=24, seed=3, files=2,
                                                progress=False)
        data_dir = Path(data_dir)
        comp.mkdir(parents=True, exist_ok=True)
        for f in sorted(data_dir.iterdir()):
            # The answer key stays outside: a real competition folder has none.
            if f.is_file() and f.name != "test_labels.csv" and not f.name.startswith("train_image_data_"):
                shutil.copy2(f, comp / f.name)
        shutil.copytree(package_dir, kin / slug, dirs_exist_ok=True)
        working = root / "kaggle" / "working"
        working.mkdir(parents=True, exist_ok=True)
        src = root / "kaggle" / "src"
        src.mkdir(parents=True, exist_ok=True)
        shutil.copy2(package_dir / KERNEL_DIRNAME / "kernel.py", src / "kernel.py")

        venv = root / "venv"
        _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
             "creating the venv", timeout=120)
        (_site_packages(venv) / "sitecustomize.py").write_text(_SITECUSTOMIZE, encoding="utf-8")
        py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")

        env = _clean_env()
        for k in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"):
            env.pop(k, None)
        env.update(PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1", BENGALI_KIT_INPUT_ROOT=str(kin),
                   BENGALI_KIT_OUTPUT_DIR=str(working), BENGALI_KIT_PROGRESS="0")
        cmd = [str(py), str(src / "kernel.py")]
        isolation = "socket.connect blocked in the venv"
        if _unshare_works():
            cmd = ["unshare", "-n", *cmd]
            isolation = "no network namespace (unshare -n) + socket.connect blocked in the venv"
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=working)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"the kernel did not finish within {timeout:.0f} s") from None
        log = proc.stdout + proc.stderr
        if proc.returncode != 0:
            problems.append(f"kernel exited with status {proc.returncode}")
        m = re.search(r"^bengali_kit (\S+) from (.+)$", log, flags=re.M)
        kit_location = m.group(2).strip() if m else "?"
        if not m or not Path(kit_location).resolve().is_relative_to(venv.resolve()):
            problems.append(f"bengali_kit was not imported from the venv's wheel install ({kit_location})")
        m2 = re.search(r"^efficientnet_pytorch (\S+) from (.+)$", log, flags=re.M)
        if not m2 or not Path(m2.group(2).strip()).resolve().is_relative_to(venv.resolve()):
            problems.append("efficientnet_pytorch was not imported from the venv's wheel install")

        sub_path = working / "submission.csv"
        rows, matches, acc = 0, None, None
        if not sub_path.is_file():
            problems.append("the kernel wrote no submission.csv")
        else:
            sub = pd.read_csv(sub_path, dtype={"row_id": str})
            rows = len(sub)
            test_df = read_test_csv(comp / "test.csv")
            if list(sub.columns) != ["row_id", "target"]:
                problems.append(f"submission columns are {list(sub.columns)}, expected ['row_id', 'target']")
            elif list(sub["row_id"]) != list(test_df["row_id"]):
                problems.append("submission row ids or their order differ from test.csv")
            else:
                if (comp / "sample_submission.csv").is_file():
                    sample = read_sample_submission(comp / "sample_submission.csv")
                    if list(sample["row_id"]) != list(sub["row_id"]):
                        problems.append("submission row order differs from sample_submission.csv")
                limits = test_df["component"].map(dict(zip(COMPONENTS, N_CLASSES))).to_numpy()
                tgt = sub["target"].to_numpy()
                if ((tgt < 0) | (tgt >= limits)).any():
                    problems.append("a target is out of its component's class range")
                if compare_with_library:
                    matches = _compare_with_library(sub, comp, package_dir, manifest)
                    if not matches:
                        problems.append("the kernel's predictions differ from the library's in-process ones")
                key = data_dir / "test_labels.csv"
                if key.is_file():
                    acc = _score_against_key(sub, test_df, key)
        return VerifyReport(ok=not problems, seconds=time.perf_counter() - t0, rows=rows,
                            kit_location=kit_location, network_isolation=isolation, matches_library=matches,
                            answer_key_accuracy=acc, kernel_log=log, problems=problems)
    finally:
        if tmp_ctx is not None:
            tmp_ctx.cleanup()


def _compare_with_library(sub, comp_dir: Path, package_dir: Path, manifest: dict) -> bool:
    from .infer import make_submission, predict
    from .data import read_test_csv

    ckpts = [package_dir / c["file"] for c in manifest["checkpoints"]]
    res = predict(comp_dir, ckpts, batch_size=int(manifest.get("batch_size", 256)), device="cpu",
                  tta=bool(manifest.get("tta", False)), progress=False)
    ref = make_submission(read_test_csv(comp_dir / "test.csv"), res.image_ids, res.labels)
    return list(ref["target"]) == list(sub["target"])


def _score_against_key(sub, test_df, key_path: Path) -> dict:
    import pandas as pd

    key = pd.read_csv(key_path, dtype={"image_id": str})
    truth = test_df.merge(key, on="image_id", how="left")
    t = [row[row_comp] for row_comp, row in zip(truth["component"], truth.to_dict("records"))]
    merged = pd.DataFrame({"component": test_df["component"].to_numpy(), "pred": sub["target"].to_numpy(),
                           "true": t})
    return {c: float((g["pred"] == g["true"]).mean()) for c, g in merged.groupby("component", sort=True)}

