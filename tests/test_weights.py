"""The shipped weights (``weights/*.pt``): each listed in the model card with its sha256, loadable by every
command, and as good on real crops as the card says."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from bengali_kit.cli import main
from bengali_kit.model import load_checkpoint, load_model

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
# a model-card row: | `file.pt` | size | `sha256` | slice weighted recall | ...
ROW = re.compile(r"^\|\s*`(?P<file>[\w.-]+\.pt)`\s*\|[^|]*\|\s*`(?P<sha>[0-9a-f]{64})`\s*\|\s*(?P<slice>[0-9.]+)\s*\|")


def _card() -> dict[str, dict]:
    text = (WEIGHTS / "README.md").read_text() if (WEIGHTS / "README.md").is_file() else ""
    return {m["file"]: {"sha": m["sha"], "slice": float(m["slice"]), "row": m.string}
            for m in map(ROW.match, text.splitlines()) if m}


def test_every_shipped_file_is_in_the_model_card_and_matches_its_sha256():
    card, files = _card(), sorted(p.name for p in WEIGHTS.glob("*.pt"))
    assert sorted(card) == files, "weights/README.md must list exactly the files in weights/"
    assert len(files) <= 2
    for name in files:
        data = (WEIGHTS / name).read_bytes()
        assert len(data) <= 10 * 1024 * 1024, f"{name}: over 10 MB"
        assert hashlib.sha256(data).hexdigest() == card[name]["sha"], f"{name}: sha256 differs from the card"


@pytest.fixture(scope="module")
def slice_folder(real_slice_npz, tmp_path_factory) -> Path:
    """240 of the vendored real crops (4 of each of 60 triples: import-crops' train/ of the slice)."""
    out = tmp_path_factory.mktemp("slice") / "crops"
    assert main(["import-crops", str(real_slice_npz), str(out), "--files", "1"]) == 0
    return out / "train"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(_card()))
def test_shipped_weights_load_and_score_what_the_card_says(name, slice_folder, tmp_path):
    model, ck = load_model(WEIGHTS / name)
    card = _card()[name]
    # the card's row names the input size the checkpoint carries (evaluate/predict/package read it from there)
    assert model.cfg.name == "efficientnet-b0" and f"{ck['image_size']} px" in card["row"]
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--data", str(slice_folder), "--checkpoint", str(WEIGHTS / name), "--all",
                 "--no-progress", "--device", "cpu", "--json", str(out)]) == 0
    score = json.loads(out.read_text())["scores"]["weighted"]
    assert score >= card["slice"] - 0.005, f"{name}: {score:.4f} on the slice, card says more"
    # predict: a submission for the folder's test split (its 60 validation crops), every row filled
    sub = tmp_path / "submission.csv"
    assert main(["predict", "--data", str(slice_folder), "--checkpoint", str(WEIGHTS / name), "--out", str(sub),
                 "--no-progress", "--device", "cpu"]) == 0
    rows = pd.read_csv(sub)
    assert len(rows) == 3 * 60 and rows["target"].notna().all()
    # and it starts a fine-tune (train --init reads float16 weights)
    from bengali_kit.finetune import load_init_weights
    from bengali_kit.model import ModelConfig, build_model

    assert load_init_weights(build_model(ModelConfig(**ck["model_config"])), WEIGHTS / name).mode == "all"


@pytest.mark.slow
def test_shipped_weights_go_into_a_kaggle_package(tmp_path):
    """``package --checkpoint weights/real-b0-64.pt --include-init weights/synth-b0-64.pt``: both bundled as
    float16, listed in the manifest, loadable from the package."""
    from bengali_kit.kaggle.search import MANIFEST

    models = [n for n in sorted(_card()) if not n.startswith("synth-")] or sorted(_card())
    out = tmp_path / "pkg"
    assert main(["package", *[a for n in models for a in ("--checkpoint", str(WEIGHTS / n))], "--out", str(out),
                 "--user", "someone", "--slug", "bengali-shipped", "--include-init",
                 str(WEIGHTS / "synth-b0-64.pt")]) == 0
    manifest = json.loads((out / MANIFEST).read_text())
    assert [c["file"] for c in manifest["checkpoints"]] == [f"checkpoints/{n}" for n in models]
    assert manifest["init_checkpoint"]["file"] == "init/synth-b0-64.pt"
    for rel in [c["file"] for c in manifest["checkpoints"]] + ["init/synth-b0-64.pt"]:
        model, ck = load_model(out / rel)
        assert ck["image_size"] == load_checkpoint(WEIGHTS / Path(rel).name)["image_size"]  # the size travels with it
