"""Fault injection for ``bengali-kit train``: each bad input or fault -> exit status 2, one line, the file or
option named, and no model written (helpers from tests/test_faults.py)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from test_faults import assert_one_line_error, run_cli

pytestmark = pytest.mark.slow  # each case starts the real command (~3 s of CPU)

T = ("--size", "32", "--epochs", "1", "--max-steps", "2", "--batch-size", "8", "--no-progress",
     "--preprocess-workers", "1")


@pytest.fixture(scope="module")
def d(synth_dir) -> Path:
    return synth_dir


def test_diverged_run_names_the_step_and_writes_no_model(d, tmp_path):
    # AdamW moves every weight by ~lr in the first step: 1e30 overflows float32 activations (inf, then NaN in
    # batch norm) at step 2. (1e6 used to do it only through GeM's direct power, now computed in log space.)
    proc = run_cli("train", "--data", d, "--out", tmp_path / "r", "--lr", "1e30", *T)
    assert_one_line_error(proc, "--lr", contains=["diverged", "step"])
    assert not (tmp_path / "r" / "best.pt").exists() and not (tmp_path / "r" / "last.pt").exists()


def test_unknown_device(d, tmp_path):
    proc = run_cli("train", "--data", d, "--out", tmp_path / "r", "--device", "tpu", *T)
    assert_one_line_error(proc, "tpu")
    assert not (tmp_path / "r" / "cache").exists()  # refused before any work


def test_missing_init_is_refused_before_the_cache_is_built(d, tmp_path):
    proc = run_cli("train", "--data", d, "--out", tmp_path / "r", "--init", tmp_path / "missing.pt", *T)
    assert_one_line_error(proc, "missing.pt", contains=["not found"])
    assert not (tmp_path / "r" / "cache").exists()


def test_header_only_train_csv_is_no_batch_size_problem(d, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(d, data)
    header = (d / "train.csv").read_text().splitlines()[0]
    (data / "train.csv").write_text(header + "\n")
    proc = run_cli("train", "--data", data, "--out", tmp_path / "r", *T)
    line = assert_one_line_error(proc, "train.csv", contains=["no labelled images"])
    assert "batch-size" not in line


def test_negative_seed_names_the_option(d, tmp_path):
    proc = run_cli("train", "--data", d, "--out", tmp_path / "r", "--seed", "-1", *T)
    assert_one_line_error(proc, contains=["seed"])


@pytest.fixture
def read_only(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["chattr", "+i", str(ro)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here (needs root and an ext4/xfs-like file system)")
    yield ro
    subprocess.run(["chattr", "-i", str(ro)], check=False)


def test_read_only_run_folder(d, read_only):
    proc = run_cli("train", "--data", d, "--out", read_only / "run", *T)
    assert_one_line_error(proc, read_only / "run", contains=["not writable"])
