"""Training: a tiny run's outputs, determinism, resume equivalence, DDP (gloo, 2 processes), CLI, bad input.

Tiny settings throughout (32 px, b0, batch 16, 2 steps per epoch) on the session's synthetic folder.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import bengali_kit.train as train_mod
from bengali_kit.cli import main
from bengali_kit.components import COMPONENTS
from bengali_kit.datasets import CacheDataset, read_val_ids, split_indices
from bengali_kit.engine import HISTORY_COLUMNS, Schedule
from bengali_kit.errors import DataError
from bengali_kit.metrics import component_recalls
from bengali_kit.model import load_checkpoint, load_model
from bengali_kit.train import TrainConfig, train
from bengali_kit.train_config import OPTION_GROUPS, add_config_arguments, config_from_args

REPO = Path(__file__).resolve().parents[1]
TINY = dict(image_size=32, batch_size=16, epochs=2, max_steps=2, num_workers=0, progress=False,
            preprocess_workers=1)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # the CI box has 2 shared cores; one thread also keeps the CPU kernels' reductions in a fixed order
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def _cfg(data: Path, out: Path, cache: Path, **kw) -> TrainConfig:
    return TrainConfig(data_dir=str(data), out_dir=str(out), cache_dir=str(cache), **{**TINY, **kw})


@pytest.fixture(scope="module")
def run_a(synth_dir, cache_dir, tmp_path_factory) -> Path:
    return train(_cfg(synth_dir, tmp_path_factory.mktemp("run") / "a", cache_dir))


def _weights(path: Path) -> dict:
    return load_checkpoint(path)["model"]


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _validation_set(run: Path) -> tuple:
    """best.pt's model and checkpoint, and the run's validation images (float input) and labels, read anew."""
    from bengali_kit.data import read_train_csv
    from bengali_kit.preprocess import folder_cache_dir, load_cache

    model, ckpt = load_model(run / "best.pt")
    cfg = TrainConfig.from_dict(ckpt["train_config"])
    images, ids = load_cache(folder_cache_dir(cfg.cache_dir, cfg.data_dir, cfg.image_size), "train", cfg.image_size)
    df = read_train_csv(Path(cfg.data_dir) / "train.csv").set_index("image_id").loc[np.asarray(ids).astype(str)]
    labels = df[list(COMPONENTS)].to_numpy()
    _, val = split_indices(labels[:, 0], cfg.val_fraction, cfg.n_folds, cfg.fold, cfg.seed)
    val_ids = read_val_ids(run / "val_ids.csv")  # the run's own record of its validation images
    assert np.array_equal(np.sort(val_ids), np.sort(np.asarray(ids).astype(str)[val]))
    return model, ckpt, torch.from_numpy(np.asarray(images[val])).unsqueeze(1).float() / 255, labels[val]


def _rescore(run: Path) -> dict:
    """Score best.pt on the run's validation split, independently of the training loop."""
    model, _, x, labels = _validation_set(run)
    with torch.no_grad():
        pred = torch.stack([z.argmax(1) for z in model(x)], 1).numpy()
    return {"n_val": len(labels), **component_recalls(labels, pred)}


# ---------------------------------------------------------------- a run
def test_run_writes_checkpoints_history_curves_config(run_a, synth_dir):
    for name in ("best.pt", "last.pt", "history.csv", "curves.png", "config.json", "val_per_class.csv",
                 "val_ids.csv"):
        assert (run_a / name).is_file(), name
    hist = pd.read_csv(run_a / "history.csv")
    assert list(hist.columns) == list(HISTORY_COLUMNS) and hist["epoch"].tolist() == [1, 2]
    assert hist["val_weighted"].between(0, 1).all() and (hist["train_loss"] > 0).all()
    assert (run_a / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    cfg = TrainConfig.from_dict(json.loads((run_a / "config.json").read_text()))
    assert cfg.image_size == 32 and cfg.data_dir == str(synth_dir)

    best = load_checkpoint(run_a / "best.pt")
    assert best["image_size"] == 32 and isinstance(best["preprocess"], dict)
    assert best["train_config"] == cfg.to_dict() and best["model_config"]["name"] == "efficientnet-b0"
    assert best["metric"] == pytest.approx(hist["val_weighted"].max(), abs=1e-6)
    assert best["epoch"] == int(hist["epoch"][hist["val_weighted"].idxmax()])
    assert set(best["scores"]) == {*COMPONENTS, "weighted"}
    # the recorded score is the metric of the saved weights on the whole validation split
    again = _rescore(run_a)
    assert again["n_val"] == best["n_val"] > 0
    for k in (*COMPONENTS, "weighted"):
        assert best["scores"][k] == pytest.approx(again[k], abs=1e-9), k

    last = load_checkpoint(run_a / "last.pt")
    assert {"optimizer", "scaler", "rng", "epoch", "step", "history", "seconds"} <= set(last)
    assert last["epoch"] == 2 and last["step"] == 4 and len(last["history"]) == 2
    per_class = pd.read_csv(run_a / "val_per_class.csv")
    assert set(per_class["component"]) == set(COMPONENTS)


def test_same_seed_gives_identical_weights(run_a, synth_dir, cache_dir, tmp_path):
    # a DataLoader worker process (reading its own memmap) changes nothing either
    other = train(_cfg(synth_dir, tmp_path / "b", cache_dir, num_workers=1))
    _assert_same_weights(_weights(run_a / "last.pt"), _weights(other / "last.pt"))
    different = train(_cfg(synth_dir, tmp_path / "c", cache_dir, seed=1, epochs=1))
    assert not torch.equal(_weights(run_a / "last.pt")["heads.0.weight"],
                           _weights(different / "last.pt")["heads.0.weight"])


def test_channels_last_on_the_cpu_gives_the_same_step(run_a):
    """train runs the model in channels_last on the CPU too (faster there with oneDNN): one engine step in
    that format gives the contiguous format's loss and gradients, to float rounding."""
    import copy

    from bengali_kit.ema import ModelEMA
    from bengali_kit.engine import TrainState, train_step
    from bengali_kit.losses import MultiHeadLoss
    from bengali_kit.model import ModelConfig, build_model

    # the run's model was trained in channels_last (its saved conv weights keep that layout). The stem's
    # weight tells the formats apart: its channel stride is 1 in channels_last, 9 contiguous (the 1x1 and
    # depthwise weights pass `is_contiguous(memory_format=channels_last)` in both formats)
    assert _weights(run_a / "last.pt")["backbone._conv_stem.weight"].stride()[1] == 1
    torch.manual_seed(0)
    # without dropout and drop-connect: their masks are drawn in memory order, so another layout draws others
    base = build_model(ModelConfig(dropout=0.0))
    base.backbone._global_params = base.backbone._global_params._replace(drop_connect_rate=None)
    images = torch.randint(0, 256, (8, 64, 64), dtype=torch.uint8)
    labels = torch.stack([torch.randint(0, n, (8,)) for n in (168, 11, 7)], 1)
    losses, grads = [], []
    for cl in (False, True):
        model = copy.deepcopy(base)
        state = TrainState(model=model, net=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.0),
                           loss_fn=MultiHeadLoss(), augment=None, device=torch.device("cpu"), peak_lr=0.0,
                           ema=ModelEMA(model, 0.9), channels_last=cl)
        # TrainState puts the model and its EMA copy in the format (the optimizer keeps the same parameters)
        for m in (model, state.ema.module):
            assert m.backbone._conv_stem.weight.stride()[1] == (1 if cl else 9)
        assert state.optimizer.param_groups[0]["params"][0] is next(model.parameters())
        losses.append(float(train_step(state, images, labels)))
        grads.append({k: p.grad.clone() for k, p in model.named_parameters()})
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
    scale = max(float(g.norm()) for g in grads[0].values())  # tiny gradients are rounding noise
    for k, g in grads[0].items():  # relative to each gradient's norm (float32 against float64: ~1e-5)
        assert float((grads[1][k] - g).norm()) <= 1e-3 * float(g.norm()) + 1e-5 * scale, k


def test_resume_after_interruption_gives_identical_weights(run_a, synth_dir, cache_dir, tmp_path, monkeypatch):
    real_save = train_mod.save_last

    def save_then_die(*args, **kw):
        real_save(*args, **kw)
        raise KeyboardInterrupt  # killed right after epoch 1's checkpoint

    monkeypatch.setattr(train_mod, "save_last", save_then_die)
    cfg = _cfg(synth_dir, tmp_path / "r", cache_dir)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    assert load_checkpoint(tmp_path / "r" / "last.pt")["epoch"] == 1
    monkeypatch.setattr(train_mod, "save_last", real_save)

    with pytest.raises(DataError, match="--resume"):
        train(cfg)
    with pytest.raises(DataError, match="another config.*lr"):
        train(_cfg(synth_dir, tmp_path / "r", cache_dir, resume=True, lr=0.1))
    resumed = train(_cfg(synth_dir, tmp_path / "r", cache_dir, resume=True))
    _assert_same_weights(_weights(run_a / "last.pt"), _weights(resumed / "last.pt"))
    h_a, h_r = pd.read_csv(run_a / "history.csv"), pd.read_csv(resumed / "history.csv")
    pd.testing.assert_frame_equal(h_a.drop(columns="seconds"), h_r.drop(columns="seconds"))


# ---------------------------------------------------------------- several processes
def test_ddp_two_processes_gloo(synth_dir, cache_dir, tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "bengali_kit", "train", "--data", str(synth_dir), "--out", str(out), "--cache-dir", str(cache_dir),
           "--size", "32", "--batch-size", "8", "--epochs", "1", "--max-steps", "2", "--no-progress",
           "--device", "cpu", "--preprocess-workers", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("best.pt", "last.pt", "history.csv", "curves.png", "config.json"):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))
    best = load_checkpoint(out / "best.pt")
    last = load_checkpoint(out / "last.pt")
    assert last["epoch"] == 1 and last["step"] == 2 and last["train_config"]["batch_size"] == 8
    again = _rescore(out)  # predictions of both ranks were gathered: the score covers the whole split
    assert best["n_val"] == again["n_val"]
    for k in (*COMPONENTS, "weighted"):
        assert best["scores"][k] == pytest.approx(again[k], abs=1e-9), k


# ---------------------------------------------------------------- CLI and bad input
def test_cli_train_then_refuses_to_clobber(synth_dir, cache_dir, tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["train", "--data", str(synth_dir), "--out", str(out), "--cache-dir", str(cache_dir), "--size", "32",
            "--epochs", "1", "--batch-size", "16", "--max-steps", "1", "--no-progress", "--preprocess-workers", "1"]
    assert main(argv) == 0
    assert (out / "best.pt").is_file() and load_checkpoint(out / "best.pt")["train_config"]["max_steps"] == 1
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "last.pt" in err and "--resume" in err


def test_bad_inputs_give_clear_errors(synth_dir, cache_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="train.csv"):
        train(_cfg(empty, tmp_path / "o1", cache_dir))
    (empty / "train.csv").write_text((synth_dir / "train.csv").read_text())
    with pytest.raises(DataError, match="train_image_data"):
        train(_cfg(empty, tmp_path / "o2", cache_dir))
    with pytest.raises(ValueError, match="image size 48"):
        train(_cfg(synth_dir, tmp_path / "o3", cache_dir, image_size=48))
    with pytest.raises(DataError, match="nothing to resume"):
        train(_cfg(synth_dir, tmp_path / "o4", cache_dir, resume=True))
    with pytest.raises(ValueError, match="val_fraction"):
        train(_cfg(synth_dir, tmp_path / "o5", cache_dir, val_fraction=1.5))
    with pytest.raises(ValueError, match="batch size"):
        train(_cfg(synth_dir, tmp_path / "o6", cache_dir, batch_size=512))
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o3").exists()


# ---------------------------------------------------------------- pieces
def test_split_is_stratified_deterministic_and_keeps_singletons_in_train():
    rng = np.random.default_rng(0)
    roots = np.concatenate([np.repeat(np.arange(20), rng.integers(2, 30, 20)), [100, 101]])
    tr, va = split_indices(roots, val_fraction=0.2, seed=3)
    assert np.intersect1d(tr, va).size == 0 and len(tr) + len(va) == len(roots)
    assert abs(len(va) / len(roots) - 0.2) < 0.02
    assert {100, 101} <= set(roots[tr]) and not {100, 101} & set(roots[va])
    for r in range(20):
        n, nv = (roots == r).sum(), (roots[va] == r).sum()
        assert abs(nv - 0.2 * n) <= 1 and (roots[tr] == r).any()
    tr2, va2 = split_indices(roots, val_fraction=0.2, seed=3)
    assert np.array_equal(va, va2) and not np.array_equal(va, split_indices(roots, 0.2, seed=4)[1])
    folds = [split_indices(roots, n_folds=5, fold=k, seed=0)[1] for k in range(5)]
    assert np.array_equal(np.sort(np.concatenate(folds)), np.arange(len(roots)))
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    for r in range(20):
        sizes = [(roots[f] == r).sum() for f in folds]
        assert max(sizes) - min(sizes) <= 1


def test_cache_dataset_reads_lazily_and_pickles_without_the_array(tmp_path):
    import pickle

    arr = np.arange(5 * 4 * 4, dtype=np.uint8).reshape(5, 4, 4)
    np.save(tmp_path / "c.npy", arr)
    ds = CacheDataset(tmp_path / "c.npy", rows=[4, 1], labels=[[1, 2, 3], [4, 5, 6]])
    img, lab = ds[0]
    assert img.dtype == torch.uint8 and torch.equal(img, torch.from_numpy(arr[4])) and lab.tolist() == [1, 2, 3]
    assert isinstance(ds._images, np.memmap)
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._images is None and len(pickle.dumps(ds)) < arr.nbytes + 500
    assert torch.equal(clone[1][0], torch.from_numpy(arr[1]))


def test_config_round_trips_through_dict_and_argparse():
    cfg = TrainConfig(data_dir="d", out_dir="o", loss_weights=(1, 1, 1), affine_scale=[0.8, 1.2], max_steps=3)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_dict({**cfg.to_dict(), "colour": 1})
    p = argparse.ArgumentParser()
    add_config_arguments(p)
    args = p.parse_args(["--data", "d", "--out", "o", "--loss-weights", "1", "1", "1", "--affine-scale", "0.8",
                         "1.2", "--max-steps", "3"])
    assert config_from_args(args) == cfg
    assert config_from_args(p.parse_args(["--data", "d", "--no-amp"])).amp is False
    with pytest.raises(ValueError, match="cutmix_p"):
        TrainConfig(data_dir="d", cutmix_p=0.8, mixup_p=0.5).validate()
    assert TrainConfig(data_dir="d").differences(TrainConfig(data_dir="e", num_workers=4)) == []
    assert TrainConfig(data_dir="d").differences(TrainConfig(data_dir="d", lr=1.0)) == ["lr: 0.002 != 1.0"]


def test_train_help_groups_every_option_in_one_section(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--help"])
    assert exc.value.code == 0
    sections: dict[str, list[str]] = {}
    for line in capsys.readouterr().out.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            sections[line[:-1]] = []
        elif line.startswith("  -") and sections:
            sections[list(sections)[-1]] += [s.split()[0] for s in line.strip().split(", ")]
    assert list(sections)[1:] == list(OPTION_GROUPS)  # the first, argparse's own, holds only --help
    fields = dataclasses.fields(TrainConfig)
    assert {f.metadata["group"] for f in fields} == set(OPTION_GROUPS)  # no empty section
    for f in fields:
        flag = "--" + f.name.replace("_", "-")
        assert [name for name, flags in sections.items() if flag in flags] == [f.metadata["group"]], flag


def test_plots_write_pngs(run_a, tmp_path):
    import matplotlib.pyplot as plt

    from bengali_kit.plots import plot_history, plot_per_class_recall, plot_worst_classes

    per_class = pd.read_csv(run_a / "val_per_class.csv")
    for fig, name in ((plot_history(run_a / "history.csv", tmp_path / "h.png"), "h.png"),
                      (plot_per_class_recall(per_class, tmp_path / "p.png"), "p.png"),
                      (plot_worst_classes(per_class, n=5, component="grapheme_root", path=tmp_path / "w.png"),
                       "w.png")):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
        plt.close(fig)
    fig = plot_worst_classes(per_class, n=5)
    assert len(fig.axes[0].patches) == 5
    plt.close(fig)
    with pytest.raises(ValueError, match="lacks column"):
        plot_history(pd.DataFrame({"epoch": [1]}))


def test_history_plot_with_val_every_skips_unvalidated_epochs(run_a):
    """``--val-every 2``: epochs without validation have empty val columns; the curves draw the others."""
    import matplotlib.pyplot as plt

    from bengali_kit.plots import plot_history

    h = pd.concat([pd.read_csv(run_a / "history.csv")] * 2, ignore_index=True).head(3)
    h["epoch"] = [1, 2, 3]
    h.loc[0, [c for c in h.columns if c.startswith("val_")]] = np.nan
    h.loc[2, "val_weighted"] = h.loc[1, "val_weighted"] + 0.1
    fig = plot_history(h)
    rec = fig.axes[1]
    assert rec.lines[0].get_xdata().tolist() == [2, 3]  # the weighted-recall line skips epoch 1
    assert "at epoch 3" in rec.get_title()
    plt.close(fig)
    h.loc[:, "val_weighted"] = np.nan  # no validation yet (first epoch of --val-every 5): no best marked
    assert plot_history(h).axes[1].get_title() == "validation macro recall"
    plt.close("all")


def test_val_every_validates_every_nth_epoch_and_the_last(synth_dir, cache_dir, tmp_path, capsys):
    run = train(_cfg(synth_dir, tmp_path / "r", cache_dir, epochs=3, max_steps=1, val_every=2))
    h = pd.read_csv(run / "history.csv")
    assert h["val_weighted"].isna().tolist() == [True, False, False]  # epoch 2, and 3 as the last
    assert (run / "curves.png").is_file() and load_checkpoint(run / "best.pt")["epoch"] in (2, 3)
    out = capsys.readouterr().out
    assert "epoch 1/3: train loss " in out and "epoch 2/3: val recall " in out
    assert "(root " in out and ", vowel " in out and ", consonant " in out and "(grapheme " not in out


def test_prior_power_is_carried_and_validation_scores_with_it(synth_dir, cache_dir, tmp_path):
    """``--prior-power K``: both checkpoints carry K, and the validation figure is best.pt's corrected argmax."""
    from bengali_kit.priors import log_prior, prior_corrected_labels

    run = train(_cfg(synth_dir, tmp_path / "k", cache_dir, epochs=1, prior_power=2.0))
    model, ckpt, x, labels = _validation_set(run)
    assert ckpt["inference"] == {"prior_power": 2.0} == load_checkpoint(run / "last.pt")["inference"]
    with torch.no_grad():
        probs = [z.softmax(1).double().numpy() for z in model(x)]
    corrected = prior_corrected_labels(probs, log_prior(ckpt["class_counts"]), 2.0)
    plain = np.stack([p.argmax(1) for p in probs], 1)
    assert (corrected != plain).any()  # k 2 moves some predictions: the check below can tell the two apart
    assert ckpt["scores"] == pytest.approx(component_recalls(labels, corrected), abs=1e-12)
    with pytest.raises(ValueError, match="--prior-power needs the training class counts"):
        TrainConfig(synthetic_stream=True, prior_power=0.5).validate()


# ---------------------------------------------------------------- schedule, time budget, divergence
def test_schedule_follows_steps_or_the_clock_whichever_is_further():
    s = Schedule("onecycle", total_steps=100, warmup=0.1)
    assert s.factor(0.0) == pytest.approx(1 / 25) and s.factor(0.1) == pytest.approx(1.0)
    assert s.factor(1.0) == pytest.approx(1e-4) and s.factor(0.55) == pytest.approx(0.5, abs=1e-3)
    assert s.progress(50, 1e6) == 0.5 and not s.done(99, 0.0) and s.done(100, 0.0)
    timed = Schedule("cosine", total_steps=100, warmup=0.0, budget_s=60.0)
    assert timed.progress(10, 30.0) == 0.5 and timed.progress(80, 30.0) == 0.8 and timed.done(1, 60.0)
    assert Schedule("constant", 10, 0.5).factor(0.3) == 1.0
    with pytest.raises(ValueError, match="schedule"):
        Schedule("linear", 10, 0.1)


def test_time_budget_stops_the_run_and_anneals_the_lr(synth_dir, cache_dir, tmp_path):
    # a budget far below one epoch's time: the run stops after its first step or so, validates and saves,
    # with the lr annealed to the end of its schedule (progress follows the clock)
    run = train(_cfg(synth_dir, tmp_path / "t", cache_dir, epochs=50, max_steps=None, time_budget=1e-3,
                     schedule="cosine", warmup=0.0))
    last = load_checkpoint(run / "last.pt")
    hist = pd.read_csv(run / "history.csv")
    assert last["epoch"] == 1 and 1 <= last["step"] < 10 and len(hist) == 1
    assert hist["lr"].iloc[0] < 1e-6 and 0 <= hist["val_weighted"].iloc[0] <= 1
    assert last["seconds"] >= 1e-3 and (run / "best.pt").is_file()


def test_a_diverging_run_stops_with_a_clear_error_and_writes_no_model(synth_dir, cache_dir, tmp_path, capsys):
    out = tmp_path / "nan"
    argv = ["train", "--data", str(synth_dir), "--out", str(out), "--cache-dir", str(cache_dir), "--size", "32",
            "--epochs", "1", "--batch-size", "8", "--max-steps", "4", "--lr", "1e6", "--no-progress",
            "--preprocess-workers", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "diverged" in err and "--lr" in err and "step" in err
    assert not (out / "best.pt").exists() and not (out / "last.pt").exists()


# ---------------------------------------------------------------- presets: what the user typed wins
@pytest.mark.parametrize("typed, field, value", [
    (["--epochs", "2"], "epochs", 2),  # 2 is the dataclass default: typed, it still beats kaggle's 40
    (["--val-fraction", "0.2"], "val_fraction", 0.2),  # likewise against kaggle's 0.05
    (["--no-amp"], "amp", False),
])
def test_typed_options_win_over_the_preset_even_when_equal_to_the_default(typed, field, value):
    p = argparse.ArgumentParser()
    add_config_arguments(p)
    cfg = config_from_args(p.parse_args(["--data", "d", "--preset", "kaggle", *typed]))
    assert getattr(cfg, field) == value
    assert cfg.model == "efficientnet-b3" and cfg.image_size == 128  # what was not typed comes from the preset
    untyped = config_from_args(p.parse_args(["--data", "d", "--preset", "kaggle"]))
    assert (untyped.epochs, untyped.val_fraction) == (40, 0.05)
    plain = config_from_args(p.parse_args(["--data", "d"]))
    assert plain == TrainConfig(data_dir="d") and plain.epochs == 2


@pytest.mark.parametrize("preset", ["cpu-real", "kaggle", "kaggle-pretrain"])
def test_rendering_presets_draw_every_valid_triple_about_equally(preset):
    from bengali_kit.synthetic.labels import LabelSampler

    cfg = TrainConfig.from_preset(preset, data_dir="d")
    sampler = LabelSampler(cfg.stream_alpha, cfg.stream_novel_fraction)
    per_real = (1 - sampler.novel_fraction) * sampler.real_p  # each real triple's chance per draw
    per_novel = sampler.novel_fraction / len(sampler.novel)  # each novel triple's
    assert len(sampler.real) == 1292 and len(sampler.novel) > 2 * len(sampler.real)
    # uniform over all valid triples: no real triple favoured, novel ones within 2 % of real ones
    assert np.ptp(per_real) < 1e-12 and abs(per_novel / per_real[0] - 1) < 0.02


def test_val_ids_round_trip(tmp_path):
    from bengali_kit.datasets import write_val_ids

    ids = np.array(["Train_3", "Train_10", "x"])
    path = write_val_ids(tmp_path, ids)
    assert path.name == "val_ids.csv" and path.read_text().splitlines()[0] == "image_id"
    assert np.array_equal(read_val_ids(path), ids)
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="bad.csv.*image_id"):
        read_val_ids(tmp_path / "bad.csv")
    with pytest.raises(DataError, match="not found"):
        read_val_ids(tmp_path / "missing.csv")
