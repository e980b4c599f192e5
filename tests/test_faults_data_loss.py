"""Issue 27: nothing a user owns is ever destroyed, one writer per run folder or cache, no leftovers.

Each case runs the real command in a subprocess (helpers from tests/test_faults.py), checks its exit status
and its one stderr line, then the disk: inputs byte for byte, foreign files kept, no temporary file left.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from test_faults import REPO, assert_one_line_error, run_cli, stderr_lines

from bengali_kit.competition_folder import FOLDER_MANIFEST
from bengali_kit.files import temp_prefix
from bengali_kit.kaggle import MANIFEST
from bengali_kit.model import ModelConfig, build_model, save_checkpoint

pytestmark = pytest.mark.slow  # each case starts the real command (~3 s of CPU)

T = ("--size", "32", "--epochs", "1", "--max-steps", "2", "--batch-size", "8", "--no-progress",
     "--preprocess-workers", "1")
NAMES = ("--user", "someone", "--slug", "bengali-fault-test")


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _hidden(folder: Path) -> list[str]:
    """Names starting with a dot in ``folder``: temporary files, lock files."""
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def _env() -> dict[str, str]:
    return {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")]))}


def _start(*args: str | Path) -> subprocess.Popen:
    """Start ``bengali-kit ARGS`` without waiting."""
    return subprocess.Popen([sys.executable, "-m", "bengali_kit", *map(str, args)], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(check, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Poll ``check()`` until it holds; fail when ``proc`` ends first."""
    deadline = time.monotonic() + timeout
    while not check():
        assert proc.poll() is None, f"the command ended first: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _dead_pid() -> int:
    """The pid of a process that has ended."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


@pytest.fixture(scope="module")
def d(synth_dir) -> Path:
    return synth_dir


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A small valid checkpoint (untrained)."""
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "model.pt", build_model(ModelConfig(neck_dim=8)),
                           image_size=32, preprocess={}, metric=0.1)


@pytest.fixture(scope="module")
def run_dir(d, tmp_path_factory) -> Path:
    """A finished tiny run (config.json, last.pt, best.pt, history.csv, ...)."""
    out = tmp_path_factory.mktemp("runs") / "r"
    proc = run_cli("train", "--data", d, "--out", out, *T)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


# ---------------------------------------------------------------- rule 1: an output never replaces an input
@pytest.mark.parametrize("overwrite", [(), ("--overwrite",)])
def test_evaluate_json_never_replaces_the_checkpoint(ckpt, d, tmp_path, overwrite):
    mine = shutil.copy(ckpt, tmp_path / "model.pt")
    before = Path(mine).read_bytes()
    proc = run_cli("evaluate", "--data", d, "--checkpoint", mine, "--all", "--json", mine, *overwrite)
    assert_one_line_error(proc, mine, contains=["input"])
    assert Path(mine).read_bytes() == before


def test_evaluate_json_refuses_an_existing_file_without_overwrite(ckpt, d, tmp_path):
    scores = tmp_path / "scores.json"
    scores.write_text("mine")
    proc = run_cli("evaluate", "--data", d, "--checkpoint", ckpt, "--all", "--json", scores)
    assert_one_line_error(proc, scores, contains=["--overwrite"])
    assert scores.read_text() == "mine"


@pytest.mark.parametrize("name", ["test.csv", "train.csv", "test_image_data_0.parquet"])
def test_predict_overwrite_never_replaces_its_data(ckpt, d, tmp_path, name):
    data = shutil.copytree(d, tmp_path / "data")
    before = _snapshot(data)
    proc = run_cli("predict", "--data", data, "--checkpoint", ckpt, "--out", data / name, "--overwrite")
    assert_one_line_error(proc, data / name, contains=["input"])
    assert _snapshot(data) == before


def test_predict_overwrite_never_replaces_its_checkpoint(ckpt, d, tmp_path):
    mine = Path(shutil.copy(ckpt, tmp_path / "model.pt"))
    before = mine.read_bytes()
    proc = run_cli("predict", "--data", d, "--checkpoint", mine, "--out", mine, "--overwrite")
    assert_one_line_error(proc, mine, contains=["input"])
    assert mine.read_bytes() == before


def test_export_overwrite_never_replaces_its_checkpoint(ckpt, tmp_path):
    mine = Path(shutil.copy(ckpt, tmp_path / "model.pt"))
    before = mine.read_bytes()
    assert_one_line_error(run_cli("export", mine, mine, "--overwrite"), mine, contains=["input"])
    assert mine.read_bytes() == before


def test_export_onto_a_folder_does_not_say_file_exists(ckpt, tmp_path):
    line = assert_one_line_error(run_cli("export", ckpt, tmp_path), tmp_path, contains=["folder"])
    assert "file exists" not in line


def test_package_overwrite_refuses_a_folder_holding_its_checkpoint(ckpt, tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "checkpoints").mkdir(parents=True)
    mine = Path(shutil.copy(ckpt, pkg / "checkpoints" / "model.pt"))
    (pkg / MANIFEST).write_text(json.dumps({"format": 2, "files": ["checkpoints/model.pt"]}))
    before = _snapshot(pkg)
    proc = run_cli("package", "--checkpoint", mine, "--out", pkg, *NAMES, "--overwrite")
    assert_one_line_error(proc, pkg, contains=["input"])
    assert _snapshot(pkg) == before


def test_train_overwrite_refuses_the_data_folder_as_out(d, tmp_path):
    data = shutil.copytree(d, tmp_path / "data")
    before = _snapshot(data)
    proc = run_cli("train", "--data", data, "--out", data, "--overwrite", *T)
    assert_one_line_error(proc, data, contains=["input"])
    assert _snapshot(data) == before and not _hidden(tmp_path)


# ---------------------------------------------------------------- rule 2: --overwrite replaces only the kit's
def test_package_overwrite_refuses_an_empty_manifest(ckpt, tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / MANIFEST).write_text("{}")
    (pkg / "thesis.tex").write_text("mine")
    before = _snapshot(pkg)
    proc = run_cli("package", "--checkpoint", ckpt, "--out", pkg, *NAMES, "--overwrite")
    assert_one_line_error(proc, pkg / MANIFEST, contains=["not a valid package manifest"])
    assert _snapshot(pkg) == before and not _hidden(tmp_path)


def test_package_overwrite_refuses_a_file_the_manifest_does_not_list(ckpt, tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "kernel").mkdir(parents=True)
    (pkg / "kernel" / "kernel.py").write_text("print(1)\n")
    (pkg / "kernel" / "notes.md").write_text("mine")
    (pkg / MANIFEST).write_text(json.dumps({"format": 2, "files": ["kernel/kernel.py"]}))
    before = _snapshot(pkg)
    proc = run_cli("package", "--checkpoint", ckpt, "--out", pkg, *NAMES, "--overwrite")
    assert_one_line_error(proc, pkg / "kernel" / "notes.md", contains=["not listed"])
    assert _snapshot(pkg) == before


def test_import_crops_overwrite_keeps_a_users_file_inside_train(real_slice_npz, tmp_path):
    out = tmp_path / "o"
    assert run_cli("import-crops", real_slice_npz, out, "--limit", "40", "--files", "1").returncode == 0
    (out / "train" / "notes.txt").write_text("mine")
    proc = run_cli("import-crops", real_slice_npz, out, "--limit", "40", "--files", "1", "--seed", "1",
                   "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert (out / "train" / "notes.txt").read_text() == "mine"
    assert (out / "train" / "train.csv").is_file() and not _hidden(tmp_path)


SYNTH = ("--train-rows", "16", "--test-rows", "4", "--no-progress")


@pytest.mark.parametrize("command", ["synth", "import-crops"])
def test_overwrite_refuses_competition_files_the_kit_did_not_write(command, d, real_slice_npz, tmp_path):
    """The real competition folder has the same file names as the kit's: without a manifest, none is replaced."""
    real = tmp_path / "real"
    shutil.copytree(d, real)
    (real / FOLDER_MANIFEST).unlink()
    before = _snapshot(real)
    args = ("synth", real, *SYNTH) if command == "synth" else ("import-crops", real_slice_npz, real, "--limit", "40")
    assert_one_line_error(run_cli(*args, "--overwrite"), real, contains=["did not write", "another folder"])
    assert _snapshot(real) == before and not _hidden(tmp_path)


def test_overwrite_refuses_a_users_file_with_a_name_the_kit_writes(tmp_path):
    out = tmp_path / "s"
    assert run_cli("synth", out, *SYNTH, "--files", "1").returncode == 0
    (out / "test_image_data_1.parquet").write_text("mine, named like a competition file")
    before = _snapshot(out)
    proc = run_cli("synth", out, *SYNTH, "--files", "2", "--overwrite")
    assert_one_line_error(proc, out / "test_image_data_1.parquet", contains=["not a file the kit wrote"])
    assert _snapshot(out) == before and not _hidden(tmp_path)


def test_import_crops_overwrite_drops_the_kits_old_folder_and_keeps_the_users(real_slice_npz, tmp_path):
    out = tmp_path / "o"
    assert run_cli("import-crops", real_slice_npz, out, "--limit", "60", "--files", "1",
                   "--unseen-fraction", "0.3").returncode == 0
    (out / "val" / "notes.txt").write_text("mine")
    proc = run_cli("import-crops", real_slice_npz, out, "--limit", "60", "--files", "1", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert not (out / "unseen").exists()  # the kit's, listed in its manifest: no stale split survives
    assert (out / "val" / "notes.txt").read_text() == "mine"
    assert "val/notes.txt" not in json.loads((out / FOLDER_MANIFEST).read_text())["files"]


def test_train_overwrite_refuses_a_folder_that_is_no_run(d, tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "last.pt").write_text("someone else's")
    (out / "config.json").write_text("{}")
    before = _snapshot(out)
    proc = run_cli("train", "--data", d, "--out", out, "--overwrite", *T)
    assert_one_line_error(proc, out, contains=["not a run folder"])
    assert _snapshot(out) == before


# ---------------------------------------------------------------- rule 3: one writer per run folder / cache
def test_second_train_into_the_same_run_folder_is_refused_at_once(d, tmp_path):
    out = tmp_path / "r"
    # an epoch of 100,000 rendered batches: the first run cannot reach its first checkpoint during the test
    first = _start("train", "--synthetic-stream", "--steps-per-epoch", "100000", "--out", out, "--size", "32",
                   "--epochs", "1", "--batch-size", "8", "--no-progress")
    try:
        _wait_for(lambda: (out / "config.json").exists(), first)
        second = run_cli("train", "--data", d, "--out", out, *T)
        assert_one_line_error(second, out, str(first.pid), contains=["in use by process"])
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    # SIGTERM before the first checkpoint: cleaned up as Ctrl-C, the new run folder and its lock are gone
    assert first.returncode == 143, err[-2000:]
    assert stderr_lines(subprocess.CompletedProcess([], 143, "", err))[-1].endswith("terminated (SIGTERM)")
    assert not out.exists() and not _hidden(tmp_path)


def test_preprocess_refuses_a_live_lock_and_takes_over_a_dead_one(d, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    lock = cache / ".train_32.npy.lock"
    import socket
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))  # this test: alive
    proc = run_cli("preprocess", d, "--out", cache, "--size", "32", "--split", "train", "--no-progress")
    assert_one_line_error(proc, cache / "train_32.npy", str(os.getpid()), contains=["in use"])
    assert not (cache / "train_32.npy").exists() and lock.exists()
    lock.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))  # a killed writer's
    proc = run_cli("preprocess", d, "--out", cache, "--size", "32", "--split", "train", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert (cache / "train_32.npy").is_file() and not lock.exists()


# ---------------------------------------------------------------- rule 4: a failed run changes nothing
def test_failed_new_run_leaves_no_run_folder(d, tmp_path):
    out = tmp_path / "r"
    proc = run_cli("train", "--data", d, "--out", out, "--lr", "1e30", *T)
    assert_one_line_error(proc, "--lr", contains=["diverged"])
    assert not out.exists() and not _hidden(tmp_path)


def test_failed_overwrite_leaves_the_old_run_whole(run_dir, d, tmp_path):
    out = Path(shutil.copytree(run_dir, tmp_path / "r"))
    (out / "notes.txt").write_text("mine")
    before = _snapshot(out)
    proc = run_cli("train", "--data", d, "--out", out, "--overwrite", "--lr", "1e30", *T)
    assert_one_line_error(proc, "--lr", contains=["diverged"])
    assert _snapshot(out) == before and not _hidden(tmp_path)
    # a good --overwrite replaces the run's files and keeps the others
    proc = run_cli("train", "--data", d, "--out", out, "--overwrite", "--seed", "3", *T)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((out / "config.json").read_text())["seed"] == 3
    assert (out / "notes.txt").read_text() == "mine" and (out / "cache").is_dir()
    assert (out / "last.pt").read_bytes() != before["last.pt"] and not _hidden(tmp_path)


def test_resume_with_bad_data_keeps_config_json(run_dir, d, tmp_path):
    out = Path(shutil.copytree(run_dir, tmp_path / "r"))
    shutil.rmtree(out / "cache")  # the data is read again
    data = Path(shutil.copytree(d, tmp_path / "data"))
    part = data / "train_image_data_1.parquet"
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])  # damaged: found only when it is read
    before = _snapshot(out)
    proc = run_cli("train", "--data", data, "--out", out, "--resume", "--epochs", "2", "--size", "32",
                   "--max-steps", "2", "--batch-size", "8", "--no-progress", "--preprocess-workers", "1")
    assert proc.returncode == 2 and len(stderr_lines(proc)) == 1, proc.stderr[-2000:]
    assert _snapshot(out) == before and not _hidden(tmp_path)


# ---------------------------------------------------------------- silent garbage, resources, leftovers
def test_package_refuses_heads_predict_would_refuse(tmp_path):
    bad = save_checkpoint(tmp_path / "roots150.pt", build_model(ModelConfig(neck_dim=8, n_classes=(150, 11, 7))),
                          image_size=32, preprocess={})
    proc = run_cli("package", "--checkpoint", bad, "--out", tmp_path / "pkg", *NAMES)
    assert_one_line_error(proc, bad, contains=["150"])
    assert not (tmp_path / "pkg").exists() and not _hidden(tmp_path)


def _limit_file_size(n: int):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (n, n))


def test_package_on_a_full_disk_is_one_line(ckpt, tmp_path):
    # RLIMIT_FSIZE: a write past 200 kB fails with EFBIG (Python ignores SIGXFSZ), as a full disk would
    proc = subprocess.run([sys.executable, "-m", "bengali_kit", "package", "--checkpoint", str(ckpt), "--out",
                           str(tmp_path / "pkg"), *NAMES], env=_env(), capture_output=True, text=True,
                          preexec_fn=_limit_file_size(200_000))
    assert_one_line_error(proc, tmp_path / "pkg", contains=["cannot write"])
    assert not (tmp_path / "pkg").exists() and not _hidden(tmp_path)


def _empty_split(src: Path, dst: Path, split: str) -> Path:
    data = Path(shutil.copytree(src, dst))
    for part in data.glob(f"{split}_image_data_*.parquet"):
        table = pq.read_table(part)
        pq.write_table(table.slice(0, 0), part)
    return data


def test_preprocess_of_zero_rows_is_an_error(d, tmp_path):
    data = _empty_split(d, tmp_path / "data", "train")
    proc = run_cli("preprocess", data, "--out", tmp_path / "cache", "--size", "32", "--split", "train")
    assert_one_line_error(proc, data, contains=["no images"])
    assert not (tmp_path / "cache").exists()


def test_preprocess_checks_the_test_split_before_writing_train(d, tmp_path):
    data = Path(shutil.copytree(d, tmp_path / "data"))
    (data / "test_image_data_0.parquet").write_bytes(b"not a parquet")
    proc = run_cli("preprocess", data, "--out", tmp_path / "cache", "--size", "32", "--no-progress")
    assert_one_line_error(proc, data / "test_image_data_0.parquet")
    assert not (tmp_path / "cache").exists()


def test_preprocess_on_a_full_disk_leaves_no_folder(d, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bengali_kit", "preprocess", str(d), "--out", str(tmp_path / "c"),
                           "--size", "32", "--split", "train", "--no-progress"], env=_env(), capture_output=True,
                          text=True, preexec_fn=_limit_file_size(100_000))
    assert_one_line_error(proc, tmp_path / "c", contains=["cannot write"])
    assert not (tmp_path / "c").exists() and not _hidden(tmp_path)


def test_sigterm_during_preprocess_leaves_no_temp_file_and_stale_ones_go(d, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    stale = cache / (temp_prefix(cache / "train_32.npy").replace(str(os.getpid()), str(_dead_pid())) + "abc_1234.tmp")
    stale.write_bytes(b"x" * 1000)  # what a SIGKILLed run left
    proc = _start("preprocess", d, "--out", cache, "--size", "32", "--split", "train", "--no-progress",
                  "--batch-size", "1", "--workers", "1")
    _wait_for(lambda: any(p.suffix == ".tmp" and p != stale for p in cache.iterdir()), proc)
    assert not stale.exists()  # removed at the start of the next write of the same file
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    assert not [p.name for p in cache.iterdir() if p.suffix == ".tmp" or p.name.endswith(".lock")]


def test_num_workers_beyond_the_machine_is_refused(d, tmp_path):
    proc = run_cli("train", "--data", d, "--out", tmp_path / "r", "--num-workers", "10000", *T)
    assert_one_line_error(proc, "--num-workers", contains=["10000"])
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- wording
def test_nan_loss_weight_names_the_option_not_lr(d, tmp_path):
    proc = run_cli("train", "--data", d, "--out", tmp_path / "r", "--loss-weights", "nan", "1", "1", *T)
    line = assert_one_line_error(proc, "--loss-weights", contains=["finite"])
    assert "--lr" not in line and not (tmp_path / "r").exists()


def test_preprocess_workers_zero_names_the_option(d, tmp_path):
    at = T.index("--preprocess-workers")
    args = [*T[:at], *T[at + 2:]]
    proc = run_cli("train", "--data", d, "--out", tmp_path / "r", *args, "--preprocess-workers", "0")
    assert_one_line_error(proc, "--preprocess-workers")
    assert_one_line_error(run_cli("preprocess", d, "--out", tmp_path / "c", "--workers", "0"), "--workers")


def test_duplicate_image_id_is_printed_plainly(d, tmp_path):
    data = Path(shutil.copytree(d, tmp_path / "data"))
    part = data / "test_image_data_0.parquet"
    table = pq.read_table(part)
    ids = table.column("image_id").to_pylist()
    ids[1] = ids[0]
    pq.write_table(table.set_column(0, "image_id", __import__("pyarrow").array(ids)), part)
    proc = run_cli("preprocess", data, "--out", tmp_path / "c", "--size", "32", "--split", "test", "--no-progress")
    line = assert_one_line_error(proc, contains=[ids[0]])
    assert "np.str_" not in line
