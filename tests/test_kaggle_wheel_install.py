"""``bengali-kit package`` from an installed wheel in a fresh venv, in a folder with no checkout: the kit's
own wheel is then repacked from the installed distribution, and the kernel template comes from package data."""
from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest
import torch

from bengali_kit import __version__
from bengali_kit.kaggle import MANIFEST
from bengali_kit.kaggle.verify import make_isolated_venv, venv_env
from bengali_kit.kaggle.wheels import build_kit_wheel, wheel_from_installed
from bengali_kit.model import ModelConfig, build_model, save_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed_venv(tmp_path_factory) -> Path:
    """A venv where bengali_kit and efficientnet_pytorch come only from wheels installed into it."""
    root = tmp_path_factory.mktemp("wheel-install")
    dist = root / "dist"
    wheels = [build_kit_wheel(dist), wheel_from_installed("efficientnet-pytorch", dist)]
    py = make_isolated_venv(root / "venv")
    subprocess.run([str(py), "-m", "pip", "install", "--no-index", "--no-deps", "--ignore-installed", "-q",
                    *map(str, wheels)],
                   check=True, env=venv_env(), capture_output=True, text=True, timeout=300)
    return root / "venv"


def test_package_from_an_installed_wheel(installed_venv, tmp_path):
    work = tmp_path / "no-checkout"
    work.mkdir()
    probe = subprocess.run([str(installed_venv / "bin" / "python"), "-c",
                            "import bengali_kit.kaggle.wheels as w; print(w.project_root()); print(w.__file__)"],
                           env=venv_env(), cwd=work, capture_output=True, text=True, check=True)
    root_line, module_file = probe.stdout.splitlines()
    assert root_line == "None"  # no source tree: the wheel must come from the installed distribution
    assert Path(module_file).resolve().is_relative_to(installed_venv.resolve())

    torch.manual_seed(0)
    ckpt = save_checkpoint(work / "best.pt", build_model(ModelConfig(neck_dim=16)), image_size=32, preprocess={},
                           metric=0.1)
    proc = subprocess.run([str(installed_venv / "bin" / "bengali-kit"), "package", "--checkpoint", str(ckpt),
                           "--out", "pkg", "--user", "someone", "--slug", "bengali-wheel-test", "--deps", "installed",
                           "--verify"],
                          env=venv_env(), cwd=work, capture_output=True, text=True, timeout=1500, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "offline kernel check: PASSED" in proc.stdout and "kaggle competitions submit" in proc.stdout

    pkg = work / "pkg"
    manifest = json.loads((pkg / MANIFEST).read_text())
    kit_wheel = pkg / "wheels" / f"bengali_kit-{__version__}-py3-none-any.whl"
    assert f"wheels/{kit_wheel.name}" in manifest["wheels"]
    with zipfile.ZipFile(kit_wheel) as zf:
        names = set(zf.namelist())
        generator = zf.read(f"bengali_kit-{__version__}.dist-info/WHEEL").decode()
    assert "Generator: bengali_kit.kaggle.wheels" in generator  # repacked, not built from a source tree
    assert {"bengali_kit/kaggle/kernel_template.py", "bengali_kit/kaggle/search.py",
            "bengali_kit/resources/class_map.csv", f"bengali_kit-{__version__}.dist-info/entry_points.txt"} <= names
    assert not [n for n in names if n.endswith(".pyc") or "__pycache__" in n]
    kernel = (pkg / "kernel" / "kernel.py").read_text()
    assert 'DATASET_SLUG = "bengali-wheel-test"' in kernel and "def find_input(" in kernel
