"""Pretraining is a data source plus a preset: ``train --preset cpu-pretrain`` on the on-the-fly synthetic
stream, watched on real crops, stopped by a time budget, resumed from last.pt."""
import pandas as pd
import pytest
import torch

from bengali_kit.cli import build_parser
from bengali_kit.model import load_checkpoint, load_model
from bengali_kit.train import TrainConfig, train
from bengali_kit.train_config import config_from_args


@pytest.fixture(scope="module")
def real_val(real_slice_npz, tmp_path_factory):
    from bengali_kit.realdata import import_crops

    out = tmp_path_factory.mktemp("real") / "crops"
    import_crops(real_slice_npz, out, limit=60, files=1)
    return out / "val"


@pytest.mark.slow
def test_pretraining_preset_trains_on_the_stream_and_validates_on_real_crops(real_val, tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "pre"
    args = build_parser().parse_args(["train", "--preset", "cpu-pretrain", "--val-data", str(real_val), "--out",
                                      str(out), "--size", "32", "--batch-size", "8", "--steps-per-epoch", "2",
                                      "--epochs", "2", "--num-workers", "0", "--no-progress"])
    cfg = config_from_args(args)
    assert cfg.synthetic_stream and cfg.ema_decay > 0 and cfg.image_size == 32 and cfg.epochs == 2
    first = TrainConfig.from_dict({**cfg.to_dict(), "epochs": 1})
    train(first)
    ck = load_checkpoint(out / "last.pt")
    assert ck["data_source"] == "synthetic-stream" and ck["step"] == 2 and ck["n_val"] == len(
        pd.read_csv(real_val / "train.csv"))
    # continuing the same run with more epochs is a different config: resume refuses, a new stage --init's
    second = train(TrainConfig.from_dict({**cfg.to_dict(), "out_dir": str(tmp_path / "stage2"),
                                          "init": str(out / "last.pt")}))
    hist = pd.read_csv(second / "history.csv")
    assert hist["epoch"].tolist() == [1, 2] and hist["val_weighted"].between(0, 1).all()
    model, ck2 = load_model(second / "best.pt")
    assert ck2["image_size"] == 32 and ck2["init_from"]["mode"] == "all"
    assert model(torch.rand(2, 1, 32, 32)).grapheme_root.shape == (2, 168)


@pytest.mark.slow
def test_pretraining_resumes_after_a_kill(real_val, tmp_path, monkeypatch):
    import bengali_kit.train as train_mod

    torch.set_num_threads(1)
    cfg = TrainConfig.from_preset("cpu-pretrain", val_data_dir=str(real_val), out_dir=str(tmp_path / "p"),
                                  image_size=32, batch_size=8, steps_per_epoch=2, epochs=2, num_workers=0,
                                  progress=False)
    real_save = train_mod.save_last

    def save_then_die(*a, **kw):
        real_save(*a, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "save_last", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(cfg)
    monkeypatch.setattr(train_mod, "save_last", real_save)
    assert load_checkpoint(tmp_path / "p" / "last.pt")["epoch"] == 1
    train(TrainConfig.from_dict({**cfg.to_dict(), "resume": True}))
    hist = pd.read_csv(tmp_path / "p" / "history.csv")
    assert hist["epoch"].tolist() == [1, 2] and hist["step"].tolist() == [2, 4]
