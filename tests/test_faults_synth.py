"""Faults of ``synth`` and ``import-crops`` as a user meets them (issue 13 §2 §3 §4 §6 §7 §10 §11).

Each case runs the real command in a subprocess: exit status 2, exactly one line on stderr naming the file,
and nothing half-written. ``d`` is a tiny ``synth d --train-rows 64 --test-rows 8 --files 1``.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_faults import REPO, assert_one_line_error, run_cli

from bengali_kit.data import read_images

pytestmark = pytest.mark.slow  # each case starts the real command (~3 s of CPU)

TINY = ("--train-rows", "64", "--test-rows", "8", "--no-progress")


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.fixture(scope="module")
def crops(real_slice_npz) -> dict[str, np.ndarray]:
    with np.load(real_slice_npz) as npz:
        return {k: npz[k] for k in npz.files}


def _save(path: Path, arrays: dict[str, np.ndarray], **changes: np.ndarray) -> Path:
    np.savez(path, **{**arrays, **changes})
    return path


# ---------------------------------------------------------------- §2 overwrite replaces the whole set
def test_synth_overwrite_with_fewer_files_replaces_the_whole_set(tmp_path):
    d = tmp_path / "d"
    assert run_cli("synth", d, *TINY, "--files", "4").returncode == 0
    assert {"train_image_data_3.parquet", "test_image_data_3.parquet"} <= _files(d)
    (d / "notes.txt").write_text("mine")
    assert_one_line_error(run_cli("synth", d, *TINY, "--files", "1"), d, contains=["not empty"])
    proc = run_cli("synth", d, *TINY, "--files", "1", "--seed", "1", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert _files(d) == {"train.csv", "train_image_data_0.parquet", "test.csv", "test_image_data_0.parquet",
                         "class_map.csv", "sample_submission.csv", "test_labels.csv", "notes.txt",
                         ".bengali_kit.json"}
    assert (d / "notes.txt").read_text() == "mine"  # not a competition file: kept
    train = pd.read_csv(d / "train.csv")
    assert read_images(d / "train_image_data_0.parquet").ids.tolist() == train.image_id.tolist()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_synth_quiet_is_now_no_progress(tmp_path):
    assert_one_line_error(run_cli("synth", tmp_path / "d", "--quiet"), "--quiet")
    assert not (tmp_path / "d").exists()


# ---------------------------------------------------------------- §3 §4 §7 §10 import-crops inputs
def test_import_crops_refuses_zero_files(real_slice_npz, tmp_path):
    assert_one_line_error(run_cli("import-crops", real_slice_npz, tmp_path / "o", "--files", "0"), "--files")
    assert not (tmp_path / "o").exists()


def test_import_crops_refuses_non_integer_labels(crops, tmp_path):
    roots = crops["grapheme_root"].astype(np.float64)
    roots[3] = 52.7
    bad = _save(tmp_path / "float.npz", crops, grapheme_root=roots)
    line = assert_one_line_error(run_cli("import-crops", bad, tmp_path / "o", "--files", "1"), bad,
                                 contains=["grapheme_root", "integer", "52.7"])
    assert "52," not in line
    assert not (tmp_path / "o").exists()
    # whole numbers stored as floats are integers: imported as such
    whole = _save(tmp_path / "whole.npz", crops, grapheme_root=crops["grapheme_root"].astype(np.float32))
    assert run_cli("import-crops", whole, tmp_path / "w", "--files", "1").returncode == 0
    assert pd.read_csv(tmp_path / "w" / "train" / "train.csv").grapheme_root.dtype == np.int64


def _truncated(path: Path, arrays) -> Path:
    raw = _save(path, arrays).read_bytes()
    path.write_bytes(raw[:len(raw) // 2])
    return path


def _crc_damaged(path: Path, arrays) -> Path:
    _save(path, arrays)
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("images.npy")
    raw = bytearray(path.read_bytes())
    raw[info.header_offset + 30 + len(info.filename) + len(info.extra) + 1000] ^= 0xFF  # inside the member's data
    path.write_bytes(bytes(raw))
    return path


def _npy_renamed(path: Path, arrays) -> Path:
    with path.open("wb") as f:
        np.save(f, arrays["images"])
    return path


def _zero_width(path: Path, arrays) -> Path:
    return _save(path, arrays, images=np.zeros((len(arrays["images"]), 64, 0), np.uint8))


def _short_labels(path: Path, arrays) -> Path:
    return _save(path, arrays, vowel_diacritic=arrays["vowel_diacritic"][:-1])


def _text_labels(path: Path, arrays) -> Path:
    return _save(path, arrays, consonant_diacritic=arrays["consonant_diacritic"].astype(str))


def _label_out_of_range(path: Path, arrays) -> Path:
    roots = arrays["grapheme_root"].copy()
    roots[0] = 168
    return _save(path, arrays, grapheme_root=roots)


def _images_3d_float(path: Path, arrays) -> Path:
    return _save(path, arrays, images=arrays["images"].astype(np.float32))


@pytest.mark.parametrize("damage, words", [
    (_truncated, ["npz"]), (_crc_damaged, ["damaged", "crc"]), (_npy_renamed, ["npy"]),
    (_zero_width, ["width 0"]), (_short_labels, ["vowel_diacritic", "299"]),
    (_text_labels, ["consonant_diacritic", "integer"]), (_label_out_of_range, ["grapheme_root", "168"]),
    (_images_3d_float, ["uint8"]),
])
def test_import_crops_damaged_npz_one_line_naming_the_file(crops, tmp_path, damage, words):
    bad = damage(tmp_path / "bad.npz", crops)
    assert_one_line_error(run_cli("import-crops", bad, tmp_path / "o", "--files", "1"), bad, contains=words)
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- §6 unwritable output
def _require_root() -> None:
    if os.geteuid() != 0 or not shutil.which("chattr"):
        pytest.skip("needs root (chattr +i / mount -t tmpfs)")


def test_synth_into_an_immutable_folder(tmp_path):
    _require_root()
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["chattr", "+i", str(ro)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i unsupported on this file system")
    try:
        line = assert_one_line_error(run_cli("synth", ro / "s", *TINY, "--files", "1"), ro / "s",
                                     contains=["not writable"])
        assert "Errno" not in line
        assert not list(ro.iterdir())
    finally:
        subprocess.run(["chattr", "-i", str(ro)], check=True)


def test_synth_on_a_full_disk_writes_nothing(tmp_path):
    _require_root()
    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(full)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        assert_one_line_error(run_cli("synth", full / "d", *TINY, "--files", "1"), full / "d",
                              contains=["no space left"])
        assert not list(full.iterdir())  # neither csv files without parquets nor a temporary folder
    finally:
        subprocess.run(["umount", str(full)], check=True)


# ---------------------------------------------------------------- §11 SIGKILL during synth
def _kill_synth_while_writing(tmp_path: Path, target: Path, *extra: str) -> Path:
    """Start ``synth target`` big enough to take seconds, SIGKILL it once a parquet is written; the temp folder."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "bengali_kit", "synth", str(target), "--train-rows", "900",
                             "--test-rows", "8", "--files", "3", "--workers", "1", "--no-progress", *extra],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            tmp = [p for p in tmp_path.glob(f".{target.name}.*.tmp") if (p / "train_image_data_0.parquet").exists()]
            if tmp:
                break
            time.sleep(0.05)
        else:
            pytest.fail("synth finished or stalled before its first parquet was written")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return tmp[0]


def test_sigkill_during_synth_leaves_no_half_written_folder(tmp_path):
    target = tmp_path / "k"
    leftover = _kill_synth_while_writing(tmp_path, target)
    assert not target.exists()  # the folder appears whole at the end, or not at all
    assert_one_line_error(run_cli("preprocess", target, "--out", tmp_path / "c", "--size", "32"), target,
                          contains=["not found"])
    # the temporary folder of the killed run is refused, not read as (part of) a data set
    for cmd in (("preprocess", leftover, "--out", tmp_path / "c", "--size", "32"),
                ("train", "--data", leftover, "--out", tmp_path / "r", "--size", "32", "--epochs", "1",
                 "--max-steps", "1", "--no-progress")):
        assert_one_line_error(run_cli(*cmd), leftover.name, contains=["incomplete"])
    assert not (tmp_path / "c").exists() and not (tmp_path / "r").exists()


def test_sigkill_during_synth_overwrite_keeps_the_old_folder(tmp_path):
    target = tmp_path / "k"
    assert run_cli("synth", target, *TINY, "--files", "1").returncode == 0
    before = _folder_bytes(target)
    _kill_synth_while_writing(tmp_path, target, "--overwrite")
    assert _folder_bytes(target) == before


def test_import_crops_text_named_npz_never_suggests_an_unsafe_load(tmp_path):
    bad = tmp_path / "crops.npz"
    bad.write_text("image_id,grapheme_root\nTrain_0,15\n")
    line = assert_one_line_error(run_cli("import-crops", bad, tmp_path / "o"), bad, contains=["not an npz"])
    assert "pickle" not in line
    assert not (tmp_path / "o").exists()


def test_import_crops_says_when_the_unseen_fraction_cannot_be_reached(real_slice_npz, tmp_path):
    """0.999 of the triples cannot go while every class stays in training: the run says how many went."""
    done = run_cli("import-crops", real_slice_npz, tmp_path / "o", "--unseen-fraction", "0.999", "--files", "1")
    assert done.returncode == 0
    assert "asks for 60 held-out triples; 15 can go" in done.stdout
    assert len(pd.read_csv(tmp_path / "o" / "unseen" / "train.csv")) == 75
