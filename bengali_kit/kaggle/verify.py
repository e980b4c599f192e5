"""The offline check of a package (``package --verify``): its kernel run as Kaggle would, in a fresh venv.

A fresh venv (``--system-site-packages``: torch, numpy, pandas, pyarrow, cv2 reused, as preinstalled on
Kaggle) gets bengali_kit and efficientnet-pytorch only from the package's wheels (``--no-index``, no pip
config). A fake ``/kaggle/input`` holds the competition data as ``competitions/bengaliai-cv19/`` and the
package as ``datasets/<user>/<slug>/`` (Kaggle's newer layout; the kernel's search also takes the
classic one). The kernel runs with the network blocked (``unshare -n`` where it works, and a socket
guard in any case). Its submission is checked for the row ids and order of test.csv and valid targets,
compared with this process's own prediction, and scored against ``test_labels.csv`` where the data has
that answer key.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..components import COMPONENTS, N_CLASSES
from ..data import read_sample_submission, read_test_csv
from ..errors import DataError
from ..prediction import predict
from ..submission import make_submission
from ..synthetic import write_competition_folder
from .search import COMPETITION, MANIFEST
from .wheels import clean_env, run_tool

KERNEL_FILE = "kernel/kernel.py"


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
        """A few lines for the terminal."""
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
SITECUSTOMIZE = '''\
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


def site_packages(venv: Path) -> Path:
    """The venv's site-packages folder."""
    found = sorted(venv.glob("lib/python*/site-packages")) + sorted(venv.glob("Lib/site-packages"))
    if not found:
        raise RuntimeError(f"no site-packages in the venv {venv}")
    return found[0]


def make_isolated_venv(venv: Path) -> Path:
    """A fresh venv seeing the system's packages but not bengali_kit/efficientnet_pytorch; returns its python."""
    run_tool([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
             "creating the venv", timeout=120)
    (site_packages(venv) / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def venv_env(**extra: str) -> dict[str, str]:
    """An environment for the venv's processes: no pip config, no PYTHONPATH, no user site."""
    env = clean_env()
    for k in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"):
        env.pop(k, None)
    env.update(PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


def _unshare_works() -> bool:
    if not shutil.which("unshare"):
        return False
    try:
        return subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _fake_input(root: Path, package_dir: Path, manifest: dict, data_dir: Path) -> tuple[Path, Path]:
    """``root/kaggle/input`` in Kaggle's newer layout; returns (input root, competition folder)."""
    kin = root / "kaggle" / "input"
    comp = kin / "competitions" / COMPETITION
    comp.mkdir(parents=True, exist_ok=True)
    for f in sorted(data_dir.iterdir()):
        # The answer key stays outside: a real competition folder has none.
        if f.is_file() and f.name != "test_labels.csv" and not f.name.startswith("train_image_data_"):
            shutil.copy2(f, comp / f.name)
    owner, slug = manifest["dataset_id"].split("/", 1)
    shutil.copytree(package_dir, kin / "datasets" / owner / slug, dirs_exist_ok=True)
    return kin, comp


def verify_package(package_dir: str | Path, data_dir: str | Path | None = None,
                   work_dir: str | Path | None = None, timeout: float = 900,
                   compare_with_library: bool = True) -> VerifyReport:
    """Run the package's kernel as Kaggle would, offline, and check its ``submission.csv`` (module docstring)."""
    t0 = time.perf_counter()
    package_dir = Path(package_dir)
    manifest_path = package_dir / MANIFEST
    if not manifest_path.is_file():
        raise DataError(package_dir, f"not a package folder (no {MANIFEST})")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    problems: list[str] = []

    tmp_ctx = tempfile.TemporaryDirectory(prefix="bk-verify-") if work_dir is None else None
    root = Path(tmp_ctx.name) if tmp_ctx else Path(work_dir)
    try:
        root.mkdir(parents=True, exist_ok=True)
        if data_dir is None:
            data_dir = write_competition_folder(root / "synth", train_rows=8, test_rows=24, seed=3, files=2,
                                                progress=False)
        data_dir = Path(data_dir)
        kin, comp = _fake_input(root, package_dir, manifest, data_dir)
        working = root / "kaggle" / "working"
        working.mkdir(parents=True, exist_ok=True)
        src = root / "kaggle" / "src"
        src.mkdir(parents=True, exist_ok=True)
        shutil.copy2(package_dir / KERNEL_FILE, src / "kernel.py")

        venv = root / "venv"
        py = make_isolated_venv(venv)
        env = venv_env(BENGALI_KIT_INPUT_ROOT=str(kin), BENGALI_KIT_OUTPUT_DIR=str(working),
                       BENGALI_KIT_PROGRESS="0")
        cmd = [str(py), str(src / "kernel.py")]
        isolation = "socket.connect blocked in the venv"
        if _unshare_works():
            cmd = ["unshare", "-n", *cmd]
            isolation = "no network namespace (unshare -n) + socket.connect blocked in the venv"
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=working,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"the kernel did not finish within {timeout:.0f} s") from None
        log = proc.stdout + proc.stderr
        if proc.returncode != 0:
            problems.append(f"kernel exited with status {proc.returncode}")
        m = re.search(r"^bengali_kit (\S+) from (.+)$", log, flags=re.MULTILINE)
        kit_location = m.group(2).strip() if m else "?"
        if not m or not Path(kit_location).resolve().is_relative_to(venv.resolve()):
            problems.append(f"bengali_kit was not imported from the venv's wheel install ({kit_location})")
        m2 = re.search(r"^efficientnet_pytorch (\S+) from (.+)$", log, flags=re.MULTILINE)
        if not m2 or not Path(m2.group(2).strip()).resolve().is_relative_to(venv.resolve()):
            problems.append("efficientnet_pytorch was not imported from the venv's wheel install")

        rows, matches, acc = 0, None, None
        sub_path = working / "submission.csv"
        if not sub_path.is_file():
            problems.append("the kernel wrote no submission.csv")
        else:
            sub = pd.read_csv(sub_path, dtype={"row_id": str})
            rows = len(sub)
            problems += _check_submission(sub, comp)
            if not problems and compare_with_library:
                matches = _compare_with_library(sub, comp, package_dir, manifest)
                if not matches:
                    problems.append("the kernel's predictions differ from the library's in-process ones")
            key = data_dir / "test_labels.csv"
            if not problems and key.is_file():
                acc = _score_against_key(sub, read_test_csv(comp / "test.csv"), key)
        return VerifyReport(ok=not problems, seconds=time.perf_counter() - t0, rows=rows,
                            kit_location=kit_location, network_isolation=isolation, matches_library=matches,
                            answer_key_accuracy=acc, kernel_log=log, problems=problems)
    finally:
        if tmp_ctx is not None:
            tmp_ctx.cleanup()


def _check_submission(sub: pd.DataFrame, comp: Path) -> list[str]:
    test_df = read_test_csv(comp / "test.csv")
    if list(sub.columns) != ["row_id", "target"]:
        return [f"submission columns are {list(sub.columns)}, expected ['row_id', 'target']"]
    if list(sub["row_id"]) != list(test_df["row_id"]):
        return ["submission row ids or their order differ from test.csv"]
    problems = []
    if (comp / "sample_submission.csv").is_file():
        sample = read_sample_submission(comp / "sample_submission.csv")
        if list(sample["row_id"]) != list(sub["row_id"]):
            problems.append("submission row order differs from sample_submission.csv")
    limits = test_df["component"].map(dict(zip(COMPONENTS, N_CLASSES, strict=True))).to_numpy()
    tgt = sub["target"].to_numpy()
    if ((tgt < 0) | (tgt >= limits)).any():
        problems.append("a target is out of its component's class range")
    return problems


def _compare_with_library(sub: pd.DataFrame, comp_dir: Path, package_dir: Path, manifest: dict) -> bool:
    ckpts = [package_dir / c["file"] for c in manifest["checkpoints"]]
    res = predict(comp_dir, ckpts, batch_size=int(manifest.get("batch_size", 256)), device="cpu",
                  tta=bool(manifest.get("tta", False)), progress=False)
    ref = make_submission(read_test_csv(comp_dir / "test.csv"), res.image_ids, res.labels)
    return list(ref["target"]) == list(sub["target"])


def _score_against_key(sub: pd.DataFrame, test_df: pd.DataFrame, key_path: Path) -> dict:
    key = pd.read_csv(key_path, dtype={"image_id": str})
    truth = test_df.merge(key, on="image_id", how="left")
    t = [row[row_comp] for row_comp, row in zip(truth["component"], truth.to_dict("records"), strict=True)]
    merged = pd.DataFrame({"component": test_df["component"].to_numpy(), "pred": sub["target"].to_numpy(),
                           "true": t})
    return {c: float((g["pred"] == g["true"]).mean()) for c, g in merged.groupby("component", sort=True)}
