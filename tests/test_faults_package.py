"""Faults of ``bengali-kit package`` (issue 13 §5, §9): every input is checked before anything is written, so
each bad one gives exit status 2, one stderr line naming the file, and no partial or stale folder."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_faults import assert_one_line_error, run_cli

from bengali_kit.kaggle import MANIFEST
from bengali_kit.model import ModelConfig, build_model, save_checkpoint

# Each case starts the real command (python + torch imports): CI runs them, the quick loop does not.
pytestmark = pytest.mark.slow
NAMES = ["--user", "someone", "--slug", "bengali-fault-test"]


@pytest.fixture(scope="module")
def good_ckpt(tmp_path_factory) -> Path:
    """A small valid checkpoint."""
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("good") / "good.pt", build_model(ModelConfig(neck_dim=8)),
                           image_size=32, preprocess={}, metric=0.1)


def _hand_edited(good: Path, dst: Path, **changes) -> Path:
    ckpt = torch.load(good, weights_only=True)
    ckpt.update(changes)
    torch.save(ckpt, dst)
    return dst


def _package(ckpts: list[Path], out: Path, *extra: str):
    args = ["package"]
    for c in ckpts:
        args += ["--checkpoint", c]
    return run_cli(*args, "--out", out, *NAMES, *extra)


def _nothing_written(folder: Path, expected: set[str]) -> None:
    assert {p.name for p in folder.iterdir()} == expected, "a partial or temporary folder was left behind"


def test_bad_second_checkpoint_leaves_no_folder(good_ckpt, tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    proc = _package([good_ckpt, bad], tmp_path / "pk")
    assert_one_line_error(proc, bad)
    _nothing_written(tmp_path, {"bad.pt"})


def test_model_that_is_a_tensor(good_ckpt, tmp_path):
    edited = _hand_edited(good_ckpt, tmp_path / "tensor.pt", model=torch.zeros(3))
    proc = _package([good_ckpt, edited], tmp_path / "pk")
    assert_one_line_error(proc, edited, contains=["not a state dict"])
    _nothing_written(tmp_path, {"tensor.pt"})


def test_non_finite_weights(good_ckpt, tmp_path):
    state = torch.load(good_ckpt, weights_only=True)["model"]
    state["heads.0.weight"] = torch.full_like(state["heads.0.weight"], float("nan"))
    edited = _hand_edited(good_ckpt, tmp_path / "diverged.pt", model=state)
    proc = _package([edited], tmp_path / "pk")
    assert_one_line_error(proc, edited, contains=["NaN"])
    _nothing_written(tmp_path, {"diverged.pt"})


def test_missing_checkpoint_and_a_folder_given_as_one(good_ckpt, tmp_path):
    proc = _package([good_ckpt, tmp_path / "missing.pt"], tmp_path / "pk")
    assert_one_line_error(proc, tmp_path / "missing.pt")
    (tmp_path / "runs").mkdir()
    proc = _package([tmp_path / "runs"], tmp_path / "pk")
    assert_one_line_error(proc, tmp_path / "runs")
    _nothing_written(tmp_path, {"runs"})


def test_wheel_dir_that_is_a_file(good_ckpt, tmp_path):
    wheel_file = tmp_path / "wheels.txt"
    wheel_file.write_text("not a folder")
    proc = _package([good_ckpt], tmp_path / "pk", "--wheel-dir", wheel_file)
    assert_one_line_error(proc, wheel_file, contains=["not a folder"])
    _nothing_written(tmp_path, {"wheels.txt"})


def test_bad_include_init(good_ckpt, tmp_path):
    init = _hand_edited(good_ckpt, tmp_path / "init.pt", model={"heads.0.weight": "text"})
    proc = _package([good_ckpt], tmp_path / "pk", "--include-init", init)
    assert_one_line_error(proc, init)
    _nothing_written(tmp_path, {"init.pt"})


def test_out_that_is_a_file(good_ckpt, tmp_path):
    target = tmp_path / "pk"
    target.write_text("a file")
    proc = _package([good_ckpt], target)
    assert_one_line_error(proc, target, contains=["not a folder"])
    assert target.read_text() == "a file"


def test_bad_batch_size(good_ckpt, tmp_path):
    proc = _package([good_ckpt], tmp_path / "pk", "--batch-size", "0")
    assert_one_line_error(proc, "--batch-size")
    _nothing_written(tmp_path, set())


def test_failed_overwrite_keeps_the_old_package(good_ckpt, tmp_path):
    old = tmp_path / "pk"
    (old / "checkpoints").mkdir(parents=True)
    (old / "checkpoints" / "best.pt").write_bytes(b"old weights")
    (old / MANIFEST).write_text(json.dumps({"format": 2, "files": ["checkpoints/best.pt"]}))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00" * 10)
    proc = _package([good_ckpt, bad], old, "--overwrite")
    assert_one_line_error(proc, bad)
    assert sorted(p.relative_to(old).as_posix() for p in old.rglob("*") if p.is_file()) == \
        ["bengali_kit_package.json", "checkpoints/best.pt"]
    assert (old / "checkpoints" / "best.pt").read_bytes() == b"old weights"
    _nothing_written(tmp_path, {"pk", "bad.pt"})
