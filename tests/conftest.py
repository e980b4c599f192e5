"""Shared fixtures: the real reference data beside the checkout, and a small synthetic competition folder."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

#: ``../shared/reference`` beside the checkout (here and in CI; not on a user's fresh clone).
SHARED_REFERENCE = Path(os.environ.get("BENGALI_KIT_REFERENCE",
                                       Path(__file__).resolve().parents[2] / "shared" / "reference"))
#: The small real files vendored with the tests (see tests/data/README.md).
TEST_DATA = Path(__file__).resolve().parent / "data"
REFERENCE_DIR = SHARED_REFERENCE if (SHARED_REFERENCE / "class_map.csv").is_file() else TEST_DATA


#: Fixtures that render a competition folder or build a model: every test that needs one (directly or through
#: another fixture) is marked slow, so `pytest -m "not slow"` (the quick loop) stays under a minute. CI runs all.
SLOW_FIXTURES = frozenset({"synth_dir", "tiny_checkpoint"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests that use a ``SLOW_FIXTURES`` fixture as slow (others carry ``@pytest.mark.slow``)."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """Real class map, test.csv, sample submission and grapheme counts: ``../shared/reference``, else tests/data."""
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def real_slice_npz() -> Path:
    """300 real crops (5 of each of 60 triples), vendored: the same files here, in CI and on a fresh clone."""
    return TEST_DATA / "real_slice_64.npz"


@pytest.fixture(scope="session")
def real_sample_npz() -> Path:
    """The whole real sample (6,460 crops); the test is skipped where ``../shared/reference`` is absent."""
    path = SHARED_REFERENCE / "real_sample_64.npz"
    if not path.is_file():
        pytest.skip(f"needs the full real sample {path} (absent on a fresh clone)")
    return path


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """A small synthetic competition folder: 400 train images in 2 parquets, 60 test images, seed 0."""
    from bengali_kit.synthetic import write_competition_folder

    out = tmp_path_factory.mktemp("synth") / "data"
    return write_competition_folder(out, train_rows=400, test_rows=60, seed=0, files=2, progress=False)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, synth_dir) -> Path:
    """An efficientnet-b0 checkpoint at 32 px whose predictions depend on the image (not trained).

    A freshly initialised EfficientNet gives the same output for every image (the signal fades through
    the blocks); recomputing the batch-norm statistics on the synthetic test images (BN calibration)
    keeps it alive, so predictions differ per image and a shuffled or misassigned row is visible.
    Written as training writes it: image_size, crop parameters, train_config, metric.
    """
    import numpy as np
    import torch

    from bengali_kit.model import ModelConfig, build_model, save_checkpoint
    from bengali_kit.preprocess import CropParams, iter_preprocessed

    torch.manual_seed(0)
    model = build_model(ModelConfig(neck_dim=32))
    images = np.concatenate([im for _, im in iter_preprocessed(synth_dir, "test", size=32, workers=1)])
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration pass
    model.train()
    with torch.no_grad():
        model(torch.from_numpy(images).unsqueeze(1).float() / 255)
    model.eval()
    path = tmp_path_factory.mktemp("tiny_ckpt") / "tiny_b0_32.pt"
    save_checkpoint(path, model, image_size=32, preprocess=CropParams().asdict(), metric=0.0, epoch=1,
                    train_config={"seed": 0, "val_fraction": 0.2, "n_folds": 0, "fold": 0})
    return path
