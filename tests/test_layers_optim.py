"""GeM pooling and the LARS optimizer."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bengali_kit.layers import GeM
from bengali_kit.optim import LARS, lars_param_groups

torch.set_num_threads(1)


# ---------------------------------------------------------------- GeM
def test_gem_p1_is_average_pooling():
    x = torch.rand(2, 5, 4, 6, dtype=torch.float64) + 0.01
    out = GeM(p=1.0, learnable=False)(x)
    assert out.shape == (2, 5, 1, 1)
    torch.testing.assert_close(out, nn.AdaptiveAvgPool2d(1)(x))


def test_gem_large_p_approaches_max_pooling():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 4, 4, 4, generator=g, dtype=torch.float64) * 0.9 + 0.1
    mx = nn.AdaptiveMaxPool2d(1)(x)
    avg = nn.AdaptiveAvgPool2d(1)(x)
    prev = avg
    for p in (2.0, 8.0, 32.0, 300.0):
        out = GeM(p=p, learnable=False)(x)
        assert torch.all(out >= prev - 1e-12)  # power means grow with p
        assert torch.all(out <= mx + 1e-12)
        prev = out
    # with 16 cells, GeM_p >= max * (1/16) ** (1/p): within 1% of max at p = 300, far from the mean
    assert torch.all((mx - prev) / mx < 0.01)
    assert torch.all((mx - avg) / mx > 0.05)


def test_gem_gradient_reaches_p_and_learnable_flag():
    gem = GeM(p=3.0)
    assert isinstance(gem.p, nn.Parameter) and gem.p.item() == 3.0
    x = torch.rand(2, 3, 5, 5) - 0.2  # negatives are clamped to eps
    gem(x).sum().backward()
    assert gem.p.grad is not None and torch.isfinite(gem.p.grad).all() and gem.p.grad.abs().item() > 0
    fixed = GeM(p=3.0, learnable=False)
    assert not any(True for _ in fixed.parameters())
    assert "p" in fixed.state_dict()


def test_gem_stays_finite_when_a_learned_p_grows():
    """A LARS run at lr 3 pushed the learnable p past 7.5; then eps ** p underflowed float32, a channel that
    was <= eps everywhere pooled to 0 and its gradient (0 ** (1/p - 1)) was infinite: the run turned NaN."""
    x = torch.rand(4, 6, 2, 2) * 3
    x[:, :2] = -0.2  # swish outputs below zero in every cell of two channels: clamped to eps
    x.requires_grad_(True)
    for p in (3.0, 8.0, 20.0):
        gem = GeM(p=p)
        out = gem(x)
        out.sum().backward()
        assert torch.isfinite(out).all() and torch.isfinite(x.grad).all() and torch.isfinite(gem.p.grad).all()
        torch.testing.assert_close(out[:, :2], torch.full((4, 2, 1, 1), 1e-6))  # the mean of eps ** p, ** 1/p
        # the value is still the power mean (float64 reference of the direct formula)
        ref = x.detach().double().clamp(min=1e-6).pow(p).mean(dim=(-2, -1), keepdim=True).pow(1 / p)
        torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-9)
        x.grad = None


def test_gem_half_precision_does_not_overflow():
    x = torch.full((1, 2, 3, 3), 60.0, dtype=torch.float16)  # 60 ** 3 > float16 max
    out = GeM(p=3.0)(x)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), torch.full((1, 2, 1, 1), 60.0), rtol=1e-3, atol=0.1)


def test_gem_rejects_bad_p():
    with pytest.raises(ValueError):
        GeM(p=0.0)


# ---------------------------------------------------------------- LARS
def _one_param(values):
    return nn.Parameter(torch.tensor(values, dtype=torch.float64))


def test_lars_two_steps_match_hand_computation():
    lr, m, wd, eta, eps = 0.1, 0.9, 0.01, 0.02, 1e-8
    w = _one_param([3.0, 4.0])  # ||w|| = 5
    opt = LARS([w], lr=lr, momentum=m, weight_decay=wd, trust_coefficient=eta, eps=eps)

    g1 = [0.6, 0.8]  # ||g1|| = 1
    w.grad = torch.tensor(g1, dtype=torch.float64)
    opt.step()
    trust1 = eta * 5.0 / (1.0 + wd * 5.0 + eps)
    d1 = [trust1 * (g1[0] + wd * 3.0), trust1 * (g1[1] + wd * 4.0)]
    buf1 = d1  # first step: buffer = d
    w1 = [3.0 - lr * buf1[0], 4.0 - lr * buf1[1]]
    assert w.detach().tolist() == pytest.approx(w1, rel=1e-12)

    g2 = [-1.0, 2.0]
    w.grad = torch.tensor(g2, dtype=torch.float64)
    opt.step()
    wn, gn = math.hypot(*w1), math.hypot(*g2)
    trust2 = eta * wn / (gn + wd * wn + eps)
    d2 = [trust2 * (g2[i] + wd * w1[i]) for i in range(2)]
    buf2 = [m * buf1[i] + d2[i] for i in range(2)]
    w2 = [w1[i] - lr * buf2[i] for i in range(2)]
    assert w.detach().tolist() == pytest.approx(w2, rel=1e-12)


def test_lars_nesterov_step():
    lr, m, eta = 0.5, 0.9, 0.1
    w = _one_param([1.0, 0.0])
    opt = LARS([w], lr=lr, momentum=m, trust_coefficient=eta, nesterov=True)
    w.grad = torch.tensor([0.0, 2.0], dtype=torch.float64)
    opt.step()
    trust = eta * 1.0 / (2.0 + 1e-8)
    d = [0.0, trust * 2.0]
    step = [d[i] + m * d[i] for i in range(2)]  # buf = d on step 1; nesterov: d + m * buf
    assert w.detach().tolist() == pytest.approx([1.0 - lr * step[0], 0.0 - lr * step[1]], rel=1e-12)


def test_lars_momentum_zero_and_exclusion():
    w = _one_param([3.0, 4.0])
    b = _one_param([1.0, -1.0])
    opt = LARS([{"params": [w]}, {"params": [b], "lars_exclude": True, "weight_decay": 0.5}],
               lr=0.1, momentum=0.0, weight_decay=0.01, trust_coefficient=0.02)
    w.grad = torch.tensor([0.6, 0.8], dtype=torch.float64)
    b.grad = torch.tensor([2.0, 4.0], dtype=torch.float64)
    opt.step()  # the seed's LARS crashed here (no momentum buffer)
    trust = 0.02 * 5.0 / (1.0 + 0.01 * 5.0 + 1e-8)
    assert w.detach().tolist() == pytest.approx([3.0 - 0.1 * trust * (0.6 + 0.03), 4.0 - 0.1 * trust * (0.8 + 0.04)])
    # excluded: plain SGD, no trust ratio, no weight decay even if the group sets one
    assert b.detach().tolist() == pytest.approx([1.0 - 0.2, -1.0 - 0.4])
    assert len(opt.state) == 0


def test_lars_zero_norms_use_trust_one():
    w = _one_param([0.0, 0.0])
    z = _one_param([1.0, 2.0])
    opt = LARS([w, z], lr=0.1, momentum=0.0, weight_decay=0.1, trust_coefficient=0.001)
    w.grad = torch.tensor([1.0, -1.0], dtype=torch.float64)
    z.grad = torch.zeros(2, dtype=torch.float64)
    opt.step()
    assert w.detach().tolist() == pytest.approx([-0.1, 0.1])  # trust 1 (zero weight)
    assert z.detach().tolist() == pytest.approx([1.0 - 0.01 * 1.0, 2.0 - 0.01 * 2.0])  # trust 1, decay only
    assert torch.isfinite(w).all() and torch.isfinite(z).all()


def test_lars_rejects_bad_arguments():
    p = [_one_param([1.0])]
    with pytest.raises(ValueError):
        LARS(p, lr=0.1, momentum=0.0, nesterov=True)
    with pytest.raises(ValueError):
        LARS(p, lr=-1.0)


def test_lars_param_groups_split():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))
    model[0].bias.requires_grad_(False)
    groups = lars_param_groups(model, weight_decay=1e-4)
    adapted = {id(p) for p in groups[0]["params"]}
    excluded = {id(p) for p in groups[1]["params"]}
    assert groups[0]["lars_exclude"] is False and groups[0]["weight_decay"] == 1e-4
    assert groups[1]["lars_exclude"] is True and groups[1]["weight_decay"] == 0.0
    assert adapted == {id(model[0].weight), id(model[3].weight)}
    assert excluded == {id(model[1].weight), id(model[1].bias), id(model[3].bias)}  # frozen bias left out
    LARS(groups, lr=0.1)  # accepted as they are


@pytest.mark.parametrize("momentum,nesterov", [(0.9, False), (0.0, False), (0.9, True)])
def test_lars_trains_a_small_classifier(momentum, nesterov):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    y = ((x[:, 0] * x[:, 1] > 0).long() + 2 * (x[:, 2] > 0).long())  # 4 classes, not linearly separable
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 4))
    opt = LARS(lars_param_groups(model, 1e-4), lr=2.0 if momentum == 0 else 0.5, momentum=momentum,
               nesterov=nesterov, trust_coefficient=0.02)
    loss_fn = nn.CrossEntropyLoss()
    first = loss_fn(model(x), y).item()
    for _ in range(200):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
    last = loss_fn(model(x), y).item()
    assert last < 0.3 * first, (first, last)
