"""Synthetic pretraining (``bengali_kit.pretrain``): a tiny run writes a loadable checkpoint and resumes."""
import pandas as pd
import torch

from bengali_kit.model import load_model
from bengali_kit.pretrain import PretrainConfig, optimizer_step, pretrain
from bengali_kit.synth_stream import StreamConfig


def test_tiny_pretraining_writes_a_checkpoint_watched_on_real_crops_and_resumes(tmp_path, reference_dir):
    torch.set_num_threads(1)
    cfg = PretrainConfig(out_dir=str(tmp_path / "pre"), stream=StreamConfig(size=32, seed=0), steps=2, batch_size=8,
                         eval_every=2, num_workers=0, eval_npz=str(reference_dir / "real_sample_64.npz"),
                         eval_limit=40, progress=False)
    run = pretrain(cfg)
    history = pd.read_csv(run / "history.csv")
    assert history["step"].tolist() == [2]
    assert 0.0 <= history["real_weighted"].iloc[0] <= 1.0
    model, ckpt = load_model(run / "last.pt")
    assert ckpt["image_size"] == 32 and ckpt["step"] == 2
    assert model(torch.rand(2, 1, 32, 32)).grapheme_root.shape == (2, 168)

    # resuming continues from step 2 to the new total instead of starting again
    cfg.steps, cfg.resume, cfg.eval_every = 3, True, 1
    pretrain(cfg)
    assert pd.read_csv(run / "history.csv")["step"].tolist() == [2, 3]  # a fresh start would log 1, 2, 3


def test_optimizer_step_sets_lr_and_lowers_the_loss():
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    loss_fn = torch.nn.CrossEntropyLoss()
    first = optimizer_step(net, opt, loss_fn, 0.5, x, y)
    assert opt.param_groups[0]["lr"] == 0.5
    for _ in range(20):
        last = optimizer_step(net, opt, loss_fn, 0.5, x, y)
    assert float(last) < 0.7 * float(first)
