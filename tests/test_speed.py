"""bengali_kit.speed: batch-norm folding, bfloat16 detection and autocast, compile with a fallback, threads."""
from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from bengali_kit import speed
from bengali_kit.model import ModelConfig, build_model
from bengali_kit.speed import (
    CompiledOrEager,
    cpu_flags,
    cpu_has_bf16,
    fold_batch_norm,
    fold_static_padding,
    inference_autocast,
    maybe_compile,
    set_threads,
)


def _random_bn_stats(model: nn.Module) -> nn.Module:
    """Non-trivial running statistics and affine weights, so that folding has something to get wrong."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model


def test_fold_batch_norm_matches_the_model_and_leaves_no_batch_norm():
    torch.manual_seed(0)
    model = _random_bn_stats(build_model(ModelConfig())).eval()
    folded = fold_batch_norm(model)
    x = torch.rand(3, 1, 64, 64)
    with torch.inference_mode():
        for a, b in zip(model(x), folded(x)):
            assert torch.allclose(a, b, atol=1e-4, rtol=0)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert not folded.training
    # the original keeps its batch norms (a copy was folded) and folded copies keep the static SAME padding
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 49
    assert type(folded.backbone._conv_stem) is type(model.backbone._conv_stem)


def test_fold_batch_norm_folds_linear_and_batch_norm_in_a_sequential():
    net = _random_bn_stats(nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.SiLU())).eval()
    x = torch.randn(6, 5)
    assert torch.allclose(net(x), fold_batch_norm(net)(x), atol=1e-5)


def test_fold_batch_norm_refuses_a_batch_norm_it_cannot_fold():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.BatchNorm2d(4))  # the BN does not follow the conv
    with pytest.raises(ValueError, match="not folded"):
        fold_batch_norm(net)


def test_fold_static_padding_is_exact_in_training_and_inference():
    torch.manual_seed(0)
    model = build_model(ModelConfig())
    folded = fold_static_padding(model)
    pads = [sum(isinstance(m, nn.ZeroPad2d) for m in net.modules()) for net in (model, folded)]
    assert pads[1] < pads[0]  # the symmetric ones went into the convs; the stride-2 (asymmetric) ones stay
    x = torch.rand(2, 1, 64, 64)
    model.eval(), folded.eval()
    with torch.no_grad():
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(model(x), folded(x)))
    model.train(), folded.train()
    model.dropout.p = folded.dropout.p = 0.0  # same forward in training mode (drop-connect off too)
    for net in (model, folded):
        net.backbone._global_params = net.backbone._global_params._replace(drop_connect_rate=0.0)
        sum(z.sum() for z in net(x)).backward()
    for (name, p), q in zip(model.named_parameters(), folded.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-5), name


def test_cpu_flags_reads_the_flags_line(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16 amx_tile\nbogomips\t: 1\n")
    assert cpu_flags(info) == {"fpu", "avx2", "avx512_bf16", "amx_tile"}
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_cpu_has_bf16_needs_a_native_bf16_flag():
    assert cpu_has_bf16(frozenset({"avx2", "avx512_bf16"}))
    assert cpu_has_bf16(frozenset({"amx_bf16"}))
    assert not cpu_has_bf16(frozenset({"avx2", "fma", "avx512f"}))
    assert isinstance(cpu_has_bf16(), bool)  # this machine, whatever it has


def test_inference_autocast_enables_bf16_only_where_the_cpu_has_it(monkeypatch):
    with inference_autocast("cpu", enabled=False):
        assert not torch.is_autocast_enabled("cpu")
    monkeypatch.setattr(speed, "cpu_has_bf16", lambda: True)
    with inference_autocast("cpu", enabled=True):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    monkeypatch.setattr(speed, "cpu_has_bf16", lambda: False)
    with inference_autocast(torch.device("cpu"), enabled=True):
        assert not torch.is_autocast_enabled("cpu")


def test_maybe_compile_off_returns_the_model_itself():
    model = nn.Linear(2, 2)
    assert maybe_compile(model, enabled=False) is model


def test_a_failing_compile_falls_back_to_eager_in_one_line(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("inductor: no C++ compiler\nlong traceback text")

    model = nn.Linear(3, 2)
    monkeypatch.setattr(torch, "compile", lambda m, **kw: broken)
    wrapped = maybe_compile(model, enabled=True)
    x = torch.randn(4, 3)
    with caplog.at_level(logging.WARNING, logger="bengali_kit.speed"):
        out = wrapped(x)
    assert torch.equal(out, model(x))
    assert isinstance(wrapped, CompiledOrEager) and not wrapped.compiled
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "no C++ compiler" in messages[0] and "\n" not in messages[0]
    assert torch.equal(wrapped(x), out)  # stays eager, without a second message
    assert len(caplog.records) == 1


@pytest.mark.slow
def test_maybe_compile_with_inductor_matches_eager():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.SiLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(8, 3)).eval()
    compiled = maybe_compile(net, enabled=True)
    x = torch.rand(4, 1, 16, 16)
    with torch.inference_mode():
        out, ref = compiled(x), net(x)
    assert compiled.compiled  # inductor really ran: no fallback on this machine
    assert torch.allclose(out, ref, atol=1e-5)


def test_set_threads_sets_intra_op_and_never_fails_on_inter_op():
    before = torch.get_num_threads()
    try:
        torch.ones(1000).sum()  # parallel work has run: inter-op threads can no longer change
        intra, inter = set_threads(1, torch.get_num_interop_threads() + 1)
        assert intra == 1 == torch.get_num_threads()
        assert inter == torch.get_num_interop_threads()
    finally:
        torch.set_num_threads(before)
