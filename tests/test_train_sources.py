"""Training from other sources: --init with head warm-up, --val-data, --synthetic-stream, --preset."""
from __future__ import annotations

import json

import pytest
import torch

from bengali_kit.cli import build_parser
from bengali_kit.model import load_checkpoint
from bengali_kit.train import TrainConfig, train
from bengali_kit.train_config import config_from_args

TINY = dict(image_size=32, batch_size=8, epochs=1, max_steps=2, progress=False, cutmix_p=0.0, preprocess_workers=1)


@pytest.fixture(scope="module")
def real_folders(real_slice_npz, tmp_path_factory):
    from bengali_kit.realdata import import_crops

    out = tmp_path_factory.mktemp("real") / "crops"
    import_crops(real_slice_npz, out, limit=100, files=1)
    return out


def _with_and_without_head(real_folders, tmp_path, **head) -> tuple:
    """Two tiny runs on the same batches, with and without a training-only head (cutmix on, so mixed targets
    reach it); their run folders and how much more the first epoch's loss was with the head."""
    torch.set_num_threads(2)
    folders = dict(data_dir=str(real_folders / "train"), val_data_dir=str(real_folders / "val"),
                   cache_dir=str(tmp_path / "cache"))
    kw = {**TINY, "cutmix_p": 1.0}
    run = train(TrainConfig(**folders, out_dir=str(tmp_path / "with"), **head, **kw))
    plain = train(TrainConfig(**folders, out_dir=str(tmp_path / "without"), **kw))
    loss = [float((r / "history.csv").read_text().splitlines()[1].split(",")[2]) for r in (run, plain)]
    return run, plain, loss[0] - loss[1]


@pytest.mark.slow
def test_val_data_then_init_with_head_warmup(real_folders, tmp_path):
    torch.set_num_threads(2)
    cache = tmp_path / "cache"
    first = train(TrainConfig(data_dir=str(real_folders / "train"), val_data_dir=str(real_folders / "val"),
                              out_dir=str(tmp_path / "a"), cache_dir=str(cache), **TINY))
    ck = load_checkpoint(first / "best.pt")
    assert ck["n_val"] == 20  # every image of val/ (1 of each of the 20 triples), none of train/
    second = train(TrainConfig(data_dir=str(real_folders / "train"), val_data_dir=str(real_folders / "val"),
                               out_dir=str(tmp_path / "b"), cache_dir=str(cache), init=str(first / "best.pt"),
                               head_warmup_epochs=1, **TINY))
    ck2 = load_checkpoint(second / "last.pt")
    backbone = [k for k in ck["model"] if k.startswith("backbone.")]
    # the only epoch was a warm-up: backbone weights and batch-norm statistics untouched, heads trained
    assert all(torch.equal(ck["model"][k], ck2["model"][k]) for k in backbone)
    assert not torch.equal(ck["model"]["heads.0.weight"], ck2["model"]["heads.0.weight"])
    config = json.loads((second / "config.json").read_text())
    assert config["init_from"]["mode"] == "all" and config["init_from"]["path"].endswith("best.pt")
    assert ck2["init_from"]["mode"] == "all"


@pytest.mark.slow
def test_grapheme_head_trains_and_the_checkpoint_predicts(real_folders, tmp_path):
    """--grapheme-loss-weight: a fourth head over the real triples trains alongside; its checkpoint loads,
    predicts the three components, and starts a run without the head."""
    from bengali_kit.cli import main
    from bengali_kit.evaluation import evaluate

    run, plain, extra_loss = _with_and_without_head(real_folders, tmp_path, grapheme_loss_weight=0.5)
    ck = load_checkpoint(run / "last.pt")
    assert ck["model_config"]["grapheme_classes"] == 1292 and ck["model"]["grapheme_head.weight"].shape == (1292, 512)
    assert "grapheme_head.weight" not in load_checkpoint(plain / "last.pt")["model"]
    # the same batches and weights, plus 0.5 x a 1,292-way cross-entropy (about ln 1292 = 7.2 at the start)
    assert 2.5 < extra_loss < 4.5
    res = evaluate(real_folders / "val", run / "best.pt", all_images=True, progress=False)
    assert res.n_images == 20 and res.prediction.labels.shape == (20, 3)
    assert main(["train", "--data", str(real_folders / "train"), "--val-data", str(real_folders / "val"),
                 "--out", str(tmp_path / "h"), "--init", str(run / "best.pt"), "--size", "32", "--batch-size", "8",
                 "--epochs", "1", "--max-steps", "1", "--no-progress", "--preprocess-workers", "1"]) == 0
    assert "grapheme_head.weight" not in load_checkpoint(tmp_path / "h" / "best.pt")["model"]


@pytest.mark.slow
def test_synthetic_stream_needs_no_data_folder(tmp_path):
    torch.set_num_threads(2)
    run = train(TrainConfig(synthetic_stream=True, steps_per_epoch=2, out_dir=str(tmp_path / "s"),
                            **{**TINY, "max_steps": None}))
    ck = load_checkpoint(run / "best.pt")
    assert ck["n_val"] >= 16 and ck["train_config"]["synthetic_stream"] is True
    assert (run / "history.csv").is_file()


def test_preset_fills_what_the_command_line_leaves_open():
    p = build_parser()
    args = p.parse_args(["train", "--data", "d", "--preset", "kaggle", "--epochs", "3"])
    cfg = config_from_args(args)
    assert cfg.model == "efficientnet-b3" and cfg.image_size == 128 and cfg.ema_decay > 0
    assert cfg.epochs == 3  # given explicitly: the preset does not override it
    with pytest.raises(SystemExit):  # argparse refuses a name that is not a preset
        p.parse_args(["train", "--data", "d", "--preset", "nope"])
    with pytest.raises(ValueError, match="unknown preset 'nope'; choose one of cpu-pretrain"):
        TrainConfig.from_preset("nope")


def test_folders_sharing_a_cache_dir_keep_their_own_caches(real_folders, tmp_path):
    """One --cache-dir for several data folders: each has its own cache (no rebuild, no clash under a running
    job), and a cache that ``preprocess`` made in the folder itself is used as it is."""
    from bengali_kit.preprocess import build_cache, folder_cache_dir

    cache = tmp_path / "cache"
    train_dir, val_dir = real_folders / "train", real_folders / "val"
    a, b = folder_cache_dir(cache, train_dir, 32), folder_cache_dir(cache, val_dir, 32)
    assert a != b and a.parent == b.parent == cache and a.name.startswith("train-") and b.name.startswith("val-")
    assert folder_cache_dir(cache, train_dir, 32) == a  # stable
    first = build_cache(train_dir, "train", size=32, out_dir=a, workers=1, progress=False)
    build_cache(val_dir, "train", size=32, out_dir=b, workers=1, progress=False)
    again = build_cache(train_dir, "train", size=32, out_dir=folder_cache_dir(cache, train_dir, 32), workers=1,
                        progress=False)
    assert again.reused and first.images_path.read_bytes() == again.images_path.read_bytes()
    build_cache(val_dir, "train", size=32, out_dir=cache, workers=1, progress=False)  # `preprocess --out cache`
    assert folder_cache_dir(cache, val_dir, 32) == cache and folder_cache_dir(cache, train_dir, 32) == a
    # a run reads its folders' caches from there: nothing rebuilt
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*.npy")}
    run = train(TrainConfig(data_dir=str(train_dir), val_data_dir=str(val_dir), out_dir=str(tmp_path / "r"),
                            cache_dir=str(cache), **TINY))
    assert (run / "last.pt").is_file()
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*.npy")} == before


@pytest.mark.slow
def test_synthetic_mix_adds_rendered_graphemes_from_all_valid_triples(real_folders, tmp_path):
    """--synthetic-mix 0.2: a quarter as many rendered images as real ones join each epoch, drawn from the
    stream's labels (novel triples included), and they change with the epoch."""
    from bengali_kit.datasets import MixedDataset, build_sources, set_stream_epoch
    from bengali_kit.synthetic.labels import novel_triples

    cfg = TrainConfig(data_dir=str(real_folders / "train"), val_data_dir=str(real_folders / "val"),
                      cache_dir=str(tmp_path / "cache"), synthetic_mix=0.2, stream_alpha=0.0,
                      stream_novel_fraction=0.5, **TINY)
    src = build_sources(cfg)
    assert isinstance(src.train_set, MixedDataset) and not src.persistent_workers
    assert (src.train_set.n_real, src.train_set.n_rendered, src.n_train) == (80, 20, 100)
    image, labels = src.train_set[85]
    assert image.dtype == torch.uint8 and image.shape == (32, 32) and image.float().mean() > 0  # ink is bright
    real_image, _ = src.train_set[5]
    assert torch.equal(real_image, src.train_set.real[5][0])
    rendered = src.train_set.stream.labels_for(range(20))
    novel = {tuple(t) for t in novel_triples().tolist()}
    assert any(tuple(t) in novel for t in rendered.tolist())
    set_stream_epoch(src.train_set, 1)
    assert not torch.equal(src.train_set[85][0], image)
    with pytest.raises(ValueError, match="synthetic-mix"):
        TrainConfig(data_dir="x", synthetic_mix=1.0).validate()


def test_rendering_without_fonts_stops_in_one_line_before_the_cache(real_folders, tmp_path, monkeypatch, capsys):
    """The preset's rendered share on a machine without Bengali fonts: exit status 2 and one line naming the
    option, before any cache is built (the renderer itself only starts inside the loader's workers)."""
    from bengali_kit.cli import main
    from bengali_kit.synthetic import fonts

    monkeypatch.setattr(fonts, "FONT_DIRS", (str(tmp_path / "no-fonts"),))
    status = main(["train", "--preset", "cpu-real", "--data", str(real_folders / "train"), "--out",
                   str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1
    assert err.startswith("bengali-kit train: error: --synthetic-mix: rendering needs Bengali fonts: no Bengali fonts "
                          f"found in {tmp_path / 'no-fonts'}; install them with: apt-get install")
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run" / "last.pt").exists()
    assert main(["train", "--preset", "cpu-real", "--synthetic-mix", "0", "--data", str(real_folders / "train"),
                 "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"), "--no-progress",
                 "--image-size", "32", "--batch-size", "8", "--epochs", "1", "--max-steps", "1",
                 "--preprocess-workers", "1"]) == 0  # the real images alone need no font


def test_root_parts_are_the_letters_of_each_root():
    from bengali_kit.components import load_class_map, root_parts

    table, letters = root_parts()
    roots = load_class_map().roots
    assert table.shape == (168, len(letters)) and "\u09cd" not in letters
    ka, ssa = letters.index("ক"), letters.index("ষ")
    kssa = roots.index("ক্ষ")
    assert set(map(int, table[kssa].nonzero()[0])) == {ka, ssa}
    assert table[:, ka].sum() > 3  # the letter recurs across roots: what the head can share


@pytest.mark.slow
def test_root_parts_head_trains_and_the_checkpoint_predicts(real_folders, tmp_path):
    """--root-parts-loss-weight: a multi-hot head over the root's letters trains alongside; the same batches
    cost about weight x ln 2 more at the start (binary cross-entropy of untrained logits)."""
    from bengali_kit.evaluation import evaluate

    run, _, extra_loss = _with_and_without_head(real_folders, tmp_path, root_parts_loss_weight=1.0)
    ck = load_checkpoint(run / "last.pt")
    assert ck["model_config"]["part_classes"] == 49 and ck["model"]["part_head.weight"].shape == (49, 512)
    assert 0.4 < extra_loss < 1.0
    res = evaluate(real_folders / "val", run / "best.pt", all_images=True, progress=False)
    assert res.n_images == 20 and res.prediction.labels.shape == (20, 3)
