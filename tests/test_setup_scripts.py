"""scripts/setup.sh and scripts/test.sh: a machine already set up, or a developer's own, is left alone."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _stubs(folder: Path) -> dict[str, str]:
    """An environment whose apt-get and ``python -m pip``/``-m pytest`` only record that they were called."""
    folder.mkdir()
    log = folder / "calls.log"
    (folder / "apt-get").write_text(f'#!/bin/sh\necho "apt-get $*" >> {log}\nexit 1\n')
    (folder / "python").write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = -m ] && {{ [ "$2" = pip ] || [ "$2" = pytest ]; }}; then echo "python $*" >> {log}; exit 0; fi\n'
        f'exec {sys.executable} "$@"\n')
    for stub in ("apt-get", "python"):
        (folder / stub).chmod(0o755)
    return {**os.environ, "PATH": f"{folder}{os.pathsep}{os.environ['PATH']}", "PYTHON": str(folder / "python")}


def _calls(folder: Path) -> str:
    log = folder / "calls.log"
    return log.read_text() if log.exists() else ""


def test_setup_leaves_installed_fonts_alone(tmp_path):
    from bengali_kit.synthetic import find_bengali_fonts

    try:
        find_bengali_fonts()
    except RuntimeError:
        pytest.skip("no Bengali fonts here: setup.sh would rightly install them")
    env = _stubs(tmp_path / "bin")
    proc = subprocess.run(["bash", "scripts/setup.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Bengali fonts already installed: skipping apt-get" in proc.stdout
    assert "apt-get" not in _calls(tmp_path / "bin")


def test_skip_setup_runs_only_pytest(tmp_path):
    env = {**_stubs(tmp_path / "bin"), "BENGALI_KIT_SKIP_SETUP": "1"}
    proc = subprocess.run(["bash", "scripts/test.sh", "-m", "not slow"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "not running scripts/setup.sh" in proc.stdout and "== ready" not in proc.stdout
    assert _calls(tmp_path / "bin").splitlines() == [
        "python -m pytest -q -p no:cacheprovider --durations=15 -m not slow"]


def test_ci_always_sets_up():
    ci = (REPO / ".ci" / "run").read_text()
    assert "unset BENGALI_KIT_SKIP_SETUP" in ci and "bash scripts/test.sh" in ci
