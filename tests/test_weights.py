"""The shipped weights (``weights/*.pt``): each listed in the model card with its sha256, loadable by every
command, as good on the held-out slice of real crops as the card says, and never trained on a slice crop."""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import shlex
from pathlib import Path

import pandas as pd
import pytest

from bengali_kit.cli import build_parser, main
from bengali_kit.model import load_checkpoint, load_model

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
#: The held-out slice (tests/data/README.md): 1,292 real crops no shipped checkpoint may train on.
HELDOUT = Path(__file__).resolve().parent / "data" / "real_heldout_64.npz"
# a model-card row: | `file.pt` | size | `sha256` | held-out slice weighted recall | ...
ROW = re.compile(r"^\|\s*`(?P<file>[\w.-]+\.pt)`\s*\|[^|]*\|\s*`(?P<sha>[0-9a-f]{64})`\s*\|\s*(?P<slice>[0-9.]+)\s*\|")


def _card_text() -> str:
    return (WEIGHTS / "README.md").read_text() if (WEIGHTS / "README.md").is_file() else ""


def _card() -> dict[str, dict]:
    return {m["file"]: {"sha": m["sha"], "slice": float(m["slice"]), "row": m.string}
            for m in map(ROW.match, _card_text().splitlines()) if m}


def test_every_shipped_file_is_in_the_model_card_and_matches_its_sha256():
    card, files = _card(), sorted(p.name for p in WEIGHTS.glob("*.pt"))
    assert sorted(card) == files, "weights/README.md must list exactly the files in weights/"
    assert len(files) <= 2
    for name in files:
        data = (WEIGHTS / name).read_bytes()
        assert len(data) <= 10 * 1024 * 1024, f"{name}: over 10 MB"
        assert hashlib.sha256(data).hexdigest() == card[name]["sha"], f"{name}: sha256 differs from the card"


# ---------------------------------------------------------------- no shipped model trained on the slice
# The card's training commands are the record of what each checkpoint read: a real one imports
# real_sample_64.npz alone (which shares no crop with the slice, tests/test_realdata.py) or leaves the slice
# out with --exclude. Anything else (e.g. real_more_64.npz without --exclude) may hold slice crops.
SLICE_LISTS = {"tests/data/real_heldout_64.npz", "tests/data/real_heldout_64_ids.txt"}


def _section(text: str, name: str) -> str:
    """The ``## `name` ...`` section of the card (up to the next ``## `` heading), or ''."""
    parts = re.split(r"(?m)^## ", text)
    return next((s for s in parts[1:] if s.startswith(f"`{name}`")), "")


def _commands(section: str) -> list[argparse.Namespace]:
    """The ``bengali-kit`` commands of a section's bash blocks, read by the kit's own parser."""
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    lines = "\n".join(b.replace("\\\n", " ") for b in blocks).splitlines()
    return [build_parser().parse_args(shlex.split(line)[1:]) for line in lines if line.startswith("bengali-kit ")]


def _reads_no_slice_crop(imported: argparse.Namespace) -> bool:
    """True when an ``import-crops`` command cannot import a crop of the held-out slice."""
    return ([Path(p).name for p in imported.npz] == ["real_sample_64.npz"]
            or bool(SLICE_LISTS & set(imported.exclude)))


def _slice_leaks(section: str) -> list[str]:
    """What in a checkpoint's section could have put a slice crop into its training (empty when nothing)."""
    commands = _commands(section)
    imports = {Path(c.out_dir): c for c in commands if c.command == "import-crops"}
    trains = [c for c in commands if c.command == "train"]
    problems = [] if trains else ["no `bengali-kit train` command"]
    for cmd in trains:
        # --data trains; --val-data only watches, but a run's best.pt is chosen on it: both must be clean.
        # Untyped train options are absent from the namespace (a preset fills them in later).
        for folder in filter(None, (getattr(cmd, "data_dir", None), getattr(cmd, "val_data_dir", None))):
            source = imports.get(Path(folder).parent)
            if source is None:
                problems.append(f"{folder}: made by no import-crops command of the section")
            elif not _reads_no_slice_crop(source):
                problems.append(f"{folder}: `import-crops {' '.join(source.npz)}` may import slice crops")
    return problems


def test_the_slice_check_reads_import_commands():
    """The check itself: real_more without --exclude (or the slice itself) fails it; the slice excluded passes."""
    def imported(*args: str) -> argparse.Namespace:
        return build_parser().parse_args(["import-crops", *args])

    assert _reads_no_slice_crop(imported("../shared/reference/real_sample_64.npz", "out", "--val-per-triple", "0"))
    assert not _reads_no_slice_crop(imported("a/real_sample_64.npz", "a/real_more_64.npz", "out"))
    assert not _reads_no_slice_crop(imported("--exclude", "other.txt", "a/real_more_64.npz", "out"))
    assert not _reads_no_slice_crop(imported("tests/data/real_heldout_64.npz", "out"))
    assert _reads_no_slice_crop(imported("a/real_sample_64.npz", "a/real_more_64.npz", "out", "--seed", "0",
                                         "--exclude", "tests/data/real_heldout_64.npz"))
    section = ("`x.pt`: a model\n\n```bash\nbengali-kit import-crops a/real_sample_64.npz a/real_more_64.npz c/all \\\n"
               "    --val-per-triple 0\nbengali-kit train --data c/all/train --out runs/x --no-progress\n```\n")
    assert len(_slice_leaks(section)) == 1
    assert _slice_leaks(section.replace("--val-per-triple 0", "--exclude tests/data/real_heldout_64.npz")) == []
    assert _slice_leaks(section.replace("c/all/train", "elsewhere/train")) == [
        "elsewhere/train: made by no import-crops command of the section"]
    assert _slice_leaks(section.replace("bengali-kit train", "echo")) == ["no `bengali-kit train` command"]


@pytest.mark.parametrize("name", sorted(_card()))
def test_no_shipped_checkpoint_trained_on_a_held_out_slice_crop(name):
    """Each checkpoint's section gives its training command, and every folder it reads comes from an
    ``import-crops`` that cannot hold a crop of ``tests/data/real_heldout_64.npz``."""
    section = _section(_card_text(), name)
    assert section, f"weights/README.md has no '## `{name}`' section with its commands"
    assert _slice_leaks(section) == [], f"{name}: {_slice_leaks(section)}"


# ---------------------------------------------------------------- scores on the held-out slice
@pytest.fixture(scope="module")
def heldout_folder(tmp_path_factory) -> Path:
    """The held-out slice as the card scores it: all 1,292 crops in import-crops' train/ (``--all`` scores them)."""
    out = tmp_path_factory.mktemp("heldout") / "crops"
    assert main(["import-crops", str(HELDOUT), str(out), "--val-per-triple", "0", "--files", "1"]) == 0
    return out / "train"


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory) -> Path:
    """60 slice crops (60 triples) in a competition folder whose test split is those crops: for ``predict``."""
    out = tmp_path_factory.mktemp("small") / "crops"
    assert main(["import-crops", str(HELDOUT), str(out), "--val-per-triple", "0", "--limit", "60",
                 "--files", "1"]) == 0
    return out / "train"


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(_card()))
def test_shipped_weights_load_and_score_what_the_card_says(name, heldout_folder, small_folder, tmp_path):
    model, ck = load_model(WEIGHTS / name)
    card = _card()[name]
    # the card's row names the input size the checkpoint carries (evaluate/predict/package read it from there)
    assert model.cfg.name == "efficientnet-b0" and f"{ck['image_size']} px" in card["row"]
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--data", str(heldout_folder), "--checkpoint", str(WEIGHTS / name), "--all",
                 "--no-progress", "--device", "cpu", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["n_images"] == 1292
    score = result["scores"]["weighted"]
    assert score >= card["slice"] - 0.005, f"{name}: {score:.4f} on the held-out slice, card says more"
    # predict: a submission for the small folder's test split (60 slice crops), every row filled
    sub = tmp_path / "submission.csv"
    assert main(["predict", "--data", str(small_folder), "--checkpoint", str(WEIGHTS / name), "--out", str(sub),
                 "--no-progress", "--device", "cpu"]) == 0
    rows = pd.read_csv(sub)
    assert len(rows) == 3 * 60 and rows["target"].notna().all()
    # and it starts a fine-tune (train --init reads float16 weights)
    from bengali_kit.finetune import load_init_weights
    from bengali_kit.model import ModelConfig, build_model

    assert load_init_weights(build_model(ModelConfig(**ck["model_config"])), WEIGHTS / name).mode == "all"


@pytest.mark.slow
def test_shipped_weights_go_into_a_kaggle_package(tmp_path):
    """``package --checkpoint weights/real-b0-96.pt --include-init weights/synth-b0-96.pt``: both bundled as
    float16, listed in the manifest, loadable from the package."""
    from bengali_kit.kaggle.search import MANIFEST

    models = [n for n in sorted(_card()) if not n.startswith("synth-")] or sorted(_card())
    out = tmp_path / "pkg"
    assert main(["package", *[a for n in models for a in ("--checkpoint", str(WEIGHTS / n))], "--out", str(out),
                 "--user", "someone", "--slug", "bengali-shipped", "--include-init",
                 str(WEIGHTS / "synth-b0-96.pt")]) == 0
    manifest = json.loads((out / MANIFEST).read_text())
    assert [c["file"] for c in manifest["checkpoints"]] == [f"checkpoints/{n}" for n in models]
    assert manifest["init_checkpoint"]["file"] == "init/synth-b0-96.pt"
    for rel in [c["file"] for c in manifest["checkpoints"]] + ["init/synth-b0-96.pt"]:
        model, ck = load_model(out / rel)
        assert ck["image_size"] == load_checkpoint(WEIGHTS / Path(rel).name)["image_size"]  # the size travels with it
