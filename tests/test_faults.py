"""Fault injection: bad inputs and faults as a user meets them -> exit status 2, one stderr line, the file named.

The helpers at the top are shared by the other fault suites (tests/test_faults_package.py,
tests/test_faults_synth.py): ``from test_faults import run_cli, assert_one_line_error``.
Every case runs the real command in a subprocess, so what is checked is what a user sees.
"""
from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from bengali_kit.model import ModelConfig

__all__ = ["run_cli", "assert_one_line_error", "stderr_lines"]

# Each case starts the real command (python + torch imports: ~3 s of CPU): the suite runs in CI, not in the
# quick loop (`pytest -m "not slow"`).
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str | Path, cwd: str | Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``python -m bengali_kit ARGS`` in a subprocess; returns the finished process (text stdout/stderr).

    One thread per library and no progress bars' terminal tricks: the suite stays quick on a loaded machine.
    """
    full_env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])),
                **(env or {})}
    return subprocess.run([sys.executable, "-m", "bengali_kit", *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def stderr_lines(proc: subprocess.CompletedProcess) -> list[str]:
    """The non-blank lines the command wrote to stderr."""
    return [line for line in proc.stderr.splitlines() if line.strip()]


def assert_one_line_error(proc: subprocess.CompletedProcess, *names: str | Path,
                          contains: Sequence[str] = ()) -> str:
    """Exit status 2, exactly one line on stderr, no traceback, naming each of ``names`` (files/options).

    ``contains``: further fragments the line must hold (case-insensitive). Returns the line.
    """
    lines = stderr_lines(proc)
    assert proc.returncode == 2, f"exit status {proc.returncode}, stderr:\n{proc.stderr[-3000:]}"
    assert len(lines) == 1, f"expected one stderr line, got {len(lines)}:\n{proc.stderr[-3000:]}"
    line = lines[0]
    assert "Traceback" not in line
    for name in names:
        assert str(name) in line, f"{str(name)!r} not named in: {line}"
    for fragment in contains:
        assert fragment.lower() in line.lower(), f"{fragment!r} not in: {line}"
    return line


# ----------------------------------------------------------------------------------------- cases (helper C)


@pytest.fixture(scope="module")
def data_dir(synth_dir) -> Path:
    """The shared small synthetic competition folder (60 test images, 400 labelled train images)."""
    return synth_dir


def _ckpt_variant(src: Path, dst: Path, edit) -> Path:
    """A hand-edited copy of a checkpoint: ``edit(ckpt_dict)`` changes it in place."""
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    edit(ckpt)
    torch.save(ckpt, dst)
    return dst


def _predict(data: Path, ckpt: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_cli("predict", "--data", data, "--checkpoint", ckpt, "--out", out, "--device", "cpu",
                   "--no-progress", *extra)


def _no_stray_files(folder: Path, allowed: set[str]) -> None:
    left = {p.name for p in folder.iterdir()} - allowed
    assert not left, f"left behind in {folder}: {sorted(left)}"


# ---- output paths (issue 13 §6, §10)
@contextlib.contextmanager
def _immutable(folder: Path):
    """``chattr +i``: a folder even root cannot write into (the test is skipped where chattr is unavailable)."""
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)],
                                                        capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here (needs root and a file system that supports it)")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def test_predict_into_a_read_only_folder(data_dir, tiny_checkpoint, tmp_path):
    with _immutable(tmp_path / "ro") as ro:
        proc = _predict(data_dir, tiny_checkpoint, ro / "s.csv")
        assert_one_line_error(proc, ro / "s.csv", contains=["cannot write into", "not permitted"])
        assert list(ro.iterdir()) == []
        # a new subfolder of it: the nearest existing folder is the one named
        proc = _predict(data_dir, tiny_checkpoint, ro / "sub" / "s.csv")
        assert_one_line_error(proc, ro / "sub" / "s.csv", contains=[f"cannot write into {ro}"])


def test_predict_to_a_path_under_a_file(data_dir, tiny_checkpoint, tmp_path):
    (tmp_path / "afile").write_text("mine\n")
    proc = _predict(data_dir, tiny_checkpoint, tmp_path / "afile" / "x.csv")
    line = assert_one_line_error(proc, tmp_path / "afile" / "x.csv",
                                 contains=[f"{tmp_path / 'afile'} is a file, not a folder"])
    assert "Errno" not in line
    assert (tmp_path / "afile").read_text() == "mine\n"


def test_predict_to_an_existing_file_or_a_folder(data_dir, tiny_checkpoint, tmp_path):
    (tmp_path / "s.csv").write_text("mine\n")
    assert_one_line_error(_predict(data_dir, tiny_checkpoint, tmp_path / "s.csv"), tmp_path / "s.csv",
                          contains=["already exists", "--overwrite"])
    assert (tmp_path / "s.csv").read_text() == "mine\n"
    assert_one_line_error(_predict(data_dir, tiny_checkpoint, tmp_path), tmp_path, contains=["is a folder"])


@contextlib.contextmanager
def _full_disk(folder: Path):
    """A 2 MB tmpfs filled to the last byte (skipped where mounting is not allowed)."""
    folder.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        with open(folder / "filler", "wb") as fh:
            with contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_predict_onto_a_full_disk(data_dir, tiny_checkpoint, tmp_path):
    with _full_disk(tmp_path / "full") as full:
        proc = _predict(data_dir, tiny_checkpoint, full / "s.csv")
        assert_one_line_error(proc, full / "s.csv", contains=["no space left on the device"])
        _no_stray_files(full, {"filler"})  # nothing half-written, no temporary file


# ---- options (issue 13 §8, §10)
@pytest.mark.parametrize("command", ["predict", "evaluate", "train"])
def test_a_device_torch_does_not_know(command, data_dir, tiny_checkpoint, tmp_path):
    args = {"predict": ["--checkpoint", tiny_checkpoint, "--out", tmp_path / "s.csv", "--no-progress"],
            "evaluate": ["--checkpoint", tiny_checkpoint, "--all", "--no-progress"],
            "train": ["--out", tmp_path / "run", "--size", "32", "--epochs", "1", "--max-steps", "1",
                      "--batch-size", "8", "--no-progress"]}[command]
    proc = run_cli(command, "--data", data_dir, *args, "--device", "tpu")
    assert_one_line_error(proc, "--device 'tpu'", contains=["not a device torch knows"])
    _no_stray_files(tmp_path, set())


@pytest.mark.parametrize("option, value", [("--batch-size", "0"), ("--batch-size", "-3"), ("--batch-size", "x")])
def test_bad_numbers_name_the_option(option, value, data_dir, tiny_checkpoint, tmp_path):
    proc = run_cli("predict", "--data", data_dir, "--checkpoint", tiny_checkpoint, "--out", tmp_path / "s.csv",
                   option, value)
    assert_one_line_error(proc, f"argument {option}: must be an integer >= 1, got '{value}'")


@pytest.mark.parametrize("command", ["synth", "import-crops", "train"])
def test_a_negative_seed_names_the_option(command, tmp_path, real_slice_npz, data_dir):
    args = {"synth": [tmp_path / "d"], "import-crops": [real_slice_npz, tmp_path / "d"],
            "train": ["--data", data_dir, "--out", tmp_path / "run"]}[command]
    proc = run_cli(command, *args, "--seed", "-1")
    assert_one_line_error(proc, "--seed", contains=[">= 0"])
    _no_stray_files(tmp_path, set())


# ---- checkpoints (issue 13 §1, §9, §10)
def _bad_checkpoints(src: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    """Hand-edited or damaged checkpoints and the words each error must hold."""
    def nan(ck):
        ck["model"]["heads.0.weight"][0, 0] = float("nan")

    return {
        "tensor": (_ckpt_variant(src, folder / "tensor.pt", lambda ck: ck.update(model=torch.zeros(3))),
                   "'model' is a Tensor, not a state dict of tensors"),
        "nan": (_ckpt_variant(src, folder / "nan.pt", nan), "has NaN/inf weights"),
        "size30": (_ckpt_variant(src, folder / "size30.pt", lambda ck: ck.update(image_size=30)),
                   "image size 30 does not fit efficientnet-b0"),
        "truncated": (_write(folder / "truncated.pt", src.read_bytes()[:5000]), "truncated or corrupt"),
        "pickled": (_pickled(folder / "pickled.pt"), "holds a pickled Python object"),
    }


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _pickled(path: Path) -> Path:
    torch.save({"model": ModelConfig(), "model_config": {}}, path)  # a dataclass instance: refused unpickled
    return path


@pytest.mark.parametrize("case", ["tensor", "nan", "size30", "truncated", "pickled"])
def test_predict_refuses_bad_checkpoints(case, data_dir, tiny_checkpoint, tmp_path):
    path, words = _bad_checkpoints(tiny_checkpoint, tmp_path)[case]
    proc = _predict(data_dir, path, tmp_path / "s.csv")
    line = assert_one_line_error(proc, path, contains=[words])
    assert "weights_only" not in line and "False" not in line  # never the advice to unpickle
    assert not (tmp_path / "s.csv").exists()


@pytest.mark.parametrize("case", ["tensor", "nan"])
def test_evaluate_and_train_init_refuse_bad_checkpoints(case, data_dir, tiny_checkpoint, tmp_path):
    path, words = _bad_checkpoints(tiny_checkpoint, tmp_path)[case]
    proc = run_cli("evaluate", "--data", data_dir, "--checkpoint", path, "--all", "--device", "cpu", "--no-progress")
    assert_one_line_error(proc, path, contains=[words])
    proc = run_cli("train", "--data", data_dir, "--out", tmp_path / "run", "--init", path, "--size", "32",
                   "--epochs", "1", "--max-steps", "1", "--batch-size", "8", "--no-progress",
                   "--cache-dir", tmp_path / "cache")
    assert_one_line_error(proc, path, contains=[words])
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()  # inputs checked first


# ---- data files (issue 13 §10)
def test_a_damaged_parquet_page(data_dir, tiny_checkpoint, tmp_path):
    d = tmp_path / "d"
    shutil.copytree(data_dir, d)
    path = d / "test_image_data_1.parquet"
    offset = pq.ParquetFile(path).metadata.row_group(0).column(9000).data_page_offset
    raw = bytearray(path.read_bytes())
    raw[offset:offset + 24] = b"\xff" * 24
    path.write_bytes(bytes(raw))
    proc = _predict(d, tiny_checkpoint, tmp_path / "s.csv")
    assert_one_line_error(proc, path, contains=["cannot decode parquet data, the file is damaged"])
    assert not (tmp_path / "s.csv").exists()


# ---- interruptions (issue 13: every file complete or absent)
def _start_predict(data: Path, ckpt: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))}
    # batch size 1 with TTA: ~60 forward passes, so the signal lands while images are being predicted.
    # SIGINT back to its default in the child: a suite started in the background (`cmd &`, nohup) inherits
    # SIGINT ignored, and Python then installs no KeyboardInterrupt handler, so predict would never see it.
    return subprocess.Popen([sys.executable, "-m", "bengali_kit", "predict", "--data", str(data), "--checkpoint",
                             str(ckpt), "--out", str(out), "--device", "cpu", "--batch-size", "1", "--tta"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for_progress(proc: subprocess.Popen, timeout: float = 600) -> bytes:
    """Read stderr until tqdm's bar shows a predicted image (the stream is running, the file not yet written)."""
    fd, seen, deadline = proc.stderr.fileno(), b"", time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if select.select([fd], [], [], 0.1)[0]:
            seen += os.read(fd, 65536)
            if re.search(rb"\| *[1-9]\d*/60 ", seen):
                return seen
    pytest.fail(f"predict never showed progress (exit {proc.poll()}):\n{seen[-2000:].decode(errors='replace')}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_an_interrupted_predict_leaves_no_file(sig, data_dir, tiny_checkpoint, tmp_path):
    out = tmp_path / "out" / "s.csv"
    proc = _start_predict(data_dir, tiny_checkpoint, out)
    _wait_for_progress(proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    if sig == signal.SIGINT:
        assert proc.returncode == 130, err.decode(errors="replace")[-2000:]
        assert err.decode().strip().splitlines()[-1] == "bengali-kit predict: interrupted"
    else:
        assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_a_finished_predict_writes_the_whole_file(data_dir, tiny_checkpoint, tmp_path):
    """The other side of the invariant: left alone, the same command writes all 180 rows and nothing else."""
    out = tmp_path / "out" / "s.csv"
    proc = _start_predict(data_dir, tiny_checkpoint, out)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    sub = pd.read_csv(out)
    assert len(sub) == 180 and list(sub.columns) == ["row_id", "target"]
    _no_stray_files(out.parent, {"s.csv"})
