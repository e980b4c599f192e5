"""The wheels a package carries: bengali_kit itself and what Kaggle's image lacks (efficientnet-pytorch).

The kit's wheel is built from the source tree when this module runs from a checkout, and repacked from
the installed distribution otherwise (``pip install bengali_kit-*.whl`` then ``bengali-kit package``
works with no checkout). efficientnet-pytorch exists on PyPI only as an sdist, so the installed copy is
repacked too (the exact version tested here), or built with ``pip wheel`` as a last resort.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import importlib.metadata
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from ..errors import DataError
from ..files import atomic_path
from .junk import is_junk

#: The kit's own distribution, and those Kaggle's image lacks, bundled as wheels.
KIT_DISTRIBUTION = "bengali_kit"
EXTRA_DISTRIBUTIONS = ("efficientnet-pytorch",)
DEPS_MODES = ("auto", "installed", "pip")


def wheel_key(name: str) -> str:
    """A distribution or wheel file name normalised for comparison (``efficientnet_pytorch``)."""
    return re.sub(r"[-_.]+", "_", name.split("-")[0] if name.endswith(".whl") else name).lower()


def project_root() -> Path | None:
    """The source checkout this module runs from, or None when it runs from an installed wheel."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "bengali_kit").is_dir() else None


def clean_env() -> dict[str, str]:
    """The environment without pip settings, so builds and installs see only what we pass them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


def run_tool(cmd: Sequence[str], what: str, timeout: float = 300, env: dict | None = None,
             cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """Run a helper command; RuntimeError with the tail of its output when it fails or times out."""
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd,
                              check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what}: timed out after {timeout:.0f} s") from None
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-15:]
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n" + "\n".join(tail))
    return proc


def build_kit_wheel(out_dir: str | Path, root: str | Path | None = None) -> Path:
    """The ``bengali_kit`` wheel: built from a clean copy of the source tree, else repacked from the install."""
    root = Path(root) if root else project_root()
    if root is None:
        return wheel_from_installed(KIT_DISTRIBUTION, out_dir)
    if not (root / "pyproject.toml").is_file():
        raise DataError(root, "no pyproject.toml to build the bengali_kit wheel from")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bk-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md", "LICENSE", "setup.cfg"):
            if (root / name).is_file():
                shutil.copy2(root / name, src / name)
        # A copy without caches or litter: the wheel holds exactly the package's files.
        shutil.copytree(root / "bengali_kit", src / "bengali_kit",
                        ignore=lambda d, names: [n for n in names if is_junk(n)])
        build_out = Path(tmp) / "dist"
        run_tool([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                  "-q", str(src), "-w", str(build_out)], "building the bengali_kit wheel", env=clean_env())
        wheels = sorted(build_out.glob("bengali_kit-*.whl"))
        if len(wheels) != 1:
            raise RuntimeError(f"building the bengali_kit wheel gave {[w.name for w in wheels]}")
        dst = out_dir / wheels[0].name
        shutil.copy2(wheels[0], dst)
    return dst


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def _is_plain_install(dist: importlib.metadata.Distribution) -> bool:
    direct_url = dist.read_text("direct_url.json") or ""
    return "Root-Is-Purelib: true" in (dist.read_text("WHEEL") or "") and '"editable": true' not in direct_url


def wheel_from_installed(dist_name: str, out_dir: str | Path) -> Path:
    """Repack an installed pure-Python distribution as a wheel (offline; the exact version installed here).

    Refuses compiled or editable installs. Caches and litter are left out; console scripts are not copied
    (pip makes them again from ``entry_points.txt``).
    """
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise DataError(Path(dist_name), "distribution is not installed here; cannot repack it") from None
    if not _is_plain_install(dist):
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
        elif parts[0] == ".." or any(is_junk(p) for p in parts):
            continue
        else:
            arc = "/".join(parts)
        if arc.split("/")[-1] == "WHEEL" and arc.startswith(info_dir + "/"):
            data = (b"Wheel-Version: 1.0\nGenerator: bengali_kit.kaggle.wheels\nRoot-Is-Purelib: true\n"
                    b"Tag: py3-none-any\n")
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
    stamp = (2020, 1, 1, 0, 0, 0)  # fixed dates: the same install gives the same wheel bytes
    with atomic_path(dst) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for arc, data in entries:
            zf.writestr(zipfile.ZipInfo(arc, date_time=stamp), data, compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr(zipfile.ZipInfo(f"{info_dir}/RECORD", date_time=stamp), record.getvalue(),
                    compress_type=zipfile.ZIP_DEFLATED)
    return dst


def pip_wheel(requirement: str, out_dir: str | Path, timeout: float = 300) -> Path:
    """``pip wheel --no-deps <requirement>`` (builds from the sdist; needs the package index)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    before = set(out_dir.glob("*.whl"))
    run_tool([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", requirement, "-w", str(out_dir)],
             f"pip wheel {requirement}", timeout=timeout)
    new = sorted(set(out_dir.glob("*.whl")) - before) or sorted(out_dir.glob("*.whl"))
    key = wheel_key(re.split(r"[=<>!~ ]", requirement)[0])
    match = [w for w in new if wheel_key(w.name) == key]
    if not match:
        raise RuntimeError(f"pip wheel {requirement} produced no wheel")
    return match[-1]


def prebuilt_wheels(wheel_dir: str | Path | None) -> dict[str, Path]:
    """The wheels of ``--wheel-dir`` by distribution key; DataError when it is not a folder of valid wheels."""
    if wheel_dir is None:
        return {}
    wheel_dir = Path(wheel_dir)
    if not wheel_dir.is_dir():
        raise DataError(wheel_dir, "not a folder (--wheel-dir wants a folder of .whl files)"
                        if wheel_dir.exists() else "wheel folder not found")
    found = {}
    for w in sorted(wheel_dir.glob("*.whl")):
        if not zipfile.is_zipfile(w):
            raise DataError(w, "not a valid wheel (not a zip file)")
        found[wheel_key(w.name)] = w
    return found


def collect_wheels(dest: str | Path, prebuilt: dict[str, Path], deps: str = "auto") -> list[Path]:
    """Put the bengali_kit wheel and the extra dependency wheels into ``dest``; returns their paths."""
    if deps not in DEPS_MODES:
        raise ValueError(f"deps must be one of {', '.join(DEPS_MODES)}, got {deps!r}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    kit = wheel_key(KIT_DISTRIBUTION)
    out = [Path(shutil.copy2(prebuilt[kit], dest)) if kit in prebuilt else build_kit_wheel(dest)]
    for dist_name in EXTRA_DISTRIBUTIONS:
        key = wheel_key(dist_name)
        if key in prebuilt:
            out.append(Path(shutil.copy2(prebuilt[key], dest)))
            continue
        try:
            version: str | None = importlib.metadata.version(dist_name)
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
            raise DataError(Path(dist_name), "not installed here; cannot repack it (try --deps pip)")
        out.append(pip_wheel(f"{dist_name}=={version}" if version else dist_name, dest))
    return out
