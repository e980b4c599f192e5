"""dataset-metadata.json's licence, kernel-metadata.json per accelerator, and the run-time estimate."""
from __future__ import annotations

import pytest

from bengali_kit.cli import build_parser
from bengali_kit.kaggle import ACCELERATORS, estimate_runtime, kernel_metadata
from bengali_kit.kaggle.estimate import HIDDEN_TEST_IMAGES, LIMIT_MINUTES
from bengali_kit.kaggle.metadata import KAGGLE_DATASET_LICENCES, dataset_metadata


def test_dataset_licence_is_the_competition_data_licence_by_default():
    meta = dataset_metadata("someone", "bengali-b0-model", "Bengali b0 model")
    assert meta["licenses"] == [{"name": "CC-BY-NC-SA-4.0"}] and "CC-BY-NC-SA-4.0" in KAGGLE_DATASET_LICENCES
    other = dataset_metadata("someone", "s-s", "a title", licence="CC-BY-NC-4.0")
    assert other["licenses"] == [{"name": "CC-BY-NC-4.0"}]
    with pytest.raises(ValueError, match="kaggle CLI accepts"):
        dataset_metadata("someone", "s-s", "a title", licence="CC-BY-NC-SA")  # Kaggle needs the version too


@pytest.mark.parametrize("accel, shape, gpu", [("t4", "NvidiaTeslaT4", True), ("t4x2", "NvidiaTeslaT4", True),
                                               ("p100", "NvidiaTeslaP100", True), ("cpu", None, False)])
def test_kernel_metadata_fields(accel, shape, gpu):
    meta = kernel_metadata("someone", "bengali-b0-model", accel)
    assert meta.get("machine_shape") == shape
    assert meta["enable_gpu"] is gpu and meta["enable_tpu"] is False and meta["enable_internet"] is False
    assert meta["id"] == "someone/bengali-b0-model-inference"
    assert meta["dataset_sources"] == ["someone/bengali-b0-model"] and meta["competition_sources"] == ["bengaliai-cv19"]
    assert meta["language"] == "python" and meta["kernel_type"] == "script" and meta["code_file"] == "kernel.py"


def test_default_is_t4_and_cli_choices_match():
    assert kernel_metadata("someone", "bengali-b0-model")["machine_shape"] == "NvidiaTeslaT4"
    package = build_parser()._subparsers._group_actions[0].choices["package"]
    action = next(a for a in package._actions if a.dest == "accelerator")
    assert set(action.choices) == set(ACCELERATORS) and action.default == "t4"
    with pytest.raises(ValueError, match="tpu"):
        kernel_metadata("someone", "bengali-b0-model", "tpu")


def test_estimate_on_a_t4_is_well_within_the_limit():
    est = estimate_runtime([("efficientnet-b0", 64)], "t4")
    lo, hi = est.minutes
    assert 1 < lo < hi < 30
    text = "\n".join(est.lines())
    assert f"{HIDDEN_TEST_IMAGES:,} hidden test images" in text and "within" in text
    assert "assumed" in text and "TFLOP/s" in text and "benchmarks/README.md" in text


def test_estimate_grows_with_models_size_and_tta():
    one = estimate_runtime([("efficientnet-b3", 128)], "t4").minutes
    three_tta = estimate_runtime([("efficientnet-b3", 128)] * 3, "t4", tta=True).minutes
    assert three_tta[0] > one[0] and three_tta[1] >= one[1]
    small = estimate_runtime([("efficientnet-b3", 64)], "cpu").minutes
    big = estimate_runtime([("efficientnet-b3", 128)], "cpu").minutes
    assert big[0] > 2 * small[0]


def test_p100_is_estimated_on_the_cpu_it_falls_back_to():
    p100 = estimate_runtime([("efficientnet-b3", 128)], "p100")
    t4 = estimate_runtime([("efficientnet-b3", 128)], "t4")
    assert "CPU" in p100.device and "P100" in p100.device
    assert p100.minutes[0] > 3 * t4.minutes[1]
    heavy = estimate_runtime([("efficientnet-b3", 128)] * 3, "p100", tta=True)
    assert heavy.minutes[0] > LIMIT_MINUTES and "exceeds" in heavy.lines()[0]
