"""Shared fixtures: the real reference data beside the checkout, and a small synthetic competition folder."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REFERENCE_DIR = Path(os.environ.get("BENGALI_KIT_REFERENCE", Path(__file__).resolve().parents[2] / "shared" / "reference"))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``../shared/reference`` (real class map, test.csv, sample submission, counts, real crops)."""
    if not (REFERENCE_DIR / "class_map.csv").is_file():
        pytest.fail(f"reference data not found at {REFERENCE_DIR} (set BENGALI_KIT_REFERENCE)")
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """A small synthetic competition folder: 400 train images in 2 parquets, 60 test images, seed 0."""
    from bengali_kit.synth import write_competition_folder

    out = tmp_path_factory.mktemp("synth") / "data"
    return write_competition_folder(out, train_rows=400, test_rows=60, seed=0, files=2, progress=False)
