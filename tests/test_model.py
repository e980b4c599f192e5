"""The multi-output EfficientNet: shapes, one backbone pass, offline build, ImageNet stem conversion, checkpoints."""
from __future__ import annotations

import socket

import pytest
import torch
from efficientnet_pytorch import EfficientNet

from bengali_kit.errors import DataError
from bengali_kit.model import (
    BengaliNet,
    Logits,
    ModelConfig,
    build_model,
    check_image_size,
    load_checkpoint,
    load_model,
    save_checkpoint,
)

torch.set_num_threads(1)


def _calibrate(model: BengaliNet, size: int = 64) -> BengaliNet:
    """Give BatchNorm real running statistics: a fresh model in eval mode shrinks features to ~1e-13
    (default init, running var 1), which would make output comparisons pass for any backbone weights."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batch
    model.train()
    with torch.no_grad():
        model(_batch(n=8, size=size, seed=99))
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    return model.eval()


@pytest.fixture(scope="module")
def b0() -> BengaliNet:
    torch.manual_seed(0)
    return _calibrate(build_model(ModelConfig()))


def _batch(n=2, size=64, seed=0):
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


def test_output_shapes_and_names(b0):
    with torch.no_grad():
        out = b0(_batch())
    assert isinstance(out, Logits)
    assert [tuple(t.shape) for t in out] == [(2, 168), (2, 11), (2, 7)]
    assert out.vowel_diacritic is out[1]
    assert all(torch.isfinite(t).all() for t in out)
    assert b0.out_channels == 1280 and b0.neck[0].in_features == 1280
    assert not hasattr(b0.backbone, "_fc")  # the ImageNet classifier is not built


def test_backbone_runs_once_per_forward(monkeypatch):
    model = build_model({"name": "efficientnet-b0", "neck_dim": 32})
    calls = []
    original = model.backbone.extract_features

    def counting(x):
        calls.append(tuple(x.shape))
        return original(x)

    monkeypatch.setattr(model.backbone, "extract_features", counting)
    model.train()
    out = model(_batch(n=3, size=32))
    sum(t.sum() for t in out).backward()
    assert calls == [(3, 1, 32, 32)]
    model.eval()
    with torch.no_grad():
        model(_batch(n=2, size=32))
    assert len(calls) == 2


def test_normalisation_is_inside_the_model_and_not_in_the_state_dict(b0):
    keys = b0.state_dict().keys()
    assert not any("input_mean" in k or "input_std" in k for k in keys)
    seen = []
    hook = b0.backbone._conv_stem.register_forward_pre_hook(lambda mod, args: seen.append(args[0].clone()))
    try:
        x = _batch()
        with torch.no_grad():
            b0(x)
    finally:
        hook.remove()
    torch.testing.assert_close(seen[0], (x - 0.07) / 0.20)  # the backbone sees the normalised image


def test_silu_backbone_matches_efficientnet_pytorch_swish(b0):
    ref = EfficientNet.from_name("efficientnet-b0", in_channels=1, include_top=False)
    ref.load_state_dict(b0.backbone.state_dict())
    ref.eval()
    x = (_batch() - 0.07) / 0.2
    with torch.no_grad():
        torch.testing.assert_close(b0.backbone.extract_features(x), ref.extract_features(x), rtol=1e-4, atol=1e-4)


def test_bad_input_shape_and_config():
    model = build_model(ModelConfig(neck_dim=8))
    with pytest.raises(ValueError, match="B, 1, S, S"):
        model(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError):
        ModelConfig(name="efficientnet-b9")
    with pytest.raises(ValueError):
        ModelConfig(pooling="max")
    with pytest.raises(ValueError):
        ModelConfig.from_dict({"name": "efficientnet-b0", "colour": 1})


def test_avg_pooling_and_fixed_gem():
    m = build_model(ModelConfig(pooling="avg", neck_dim=8))
    assert isinstance(m.pool, torch.nn.AdaptiveAvgPool2d)
    g = build_model(ModelConfig(gem_learnable=False, gem_p=4.0, neck_dim=8))
    assert "pool.p" in g.state_dict() and not any(n == "pool.p" for n, _ in g.named_parameters())


@pytest.mark.slow
@pytest.mark.parametrize("name,channels", [("efficientnet-b3", 1536), ("efficientnet-b7", 2560)])
def test_other_variants(name, channels):
    m = build_model(ModelConfig(name=name, neck_dim=16)).eval()
    assert m.out_channels == channels
    with torch.no_grad():
        assert m(_batch(n=1, size=32)).grapheme_root.shape == (1, 168)


def test_no_network_at_construction(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    model = build_model(ModelConfig(name="efficientnet-b1", neck_dim=8))
    path = save_checkpoint(tmp_path / "m.pt", model)
    load_model(path)


# ---------------------------------------------------------------- image sizes
@pytest.mark.parametrize("size", [32, 64, 96, 128, 224])
def test_check_image_size_accepts_multiples_of_32(size):
    assert check_image_size("efficientnet-b0", size) == size


@pytest.mark.parametrize("size", [0, 16, 31, 48, 100, 137, 64.0, True])
def test_check_image_size_rejects(size):
    with pytest.raises(ValueError):
        check_image_size("efficientnet-b0", size)


def test_why_sizes_must_be_multiples_of_32(b0):
    with torch.no_grad():
        with pytest.raises(RuntimeError):  # below 32 px b0's 5x5 kernels outgrow the feature map
            b0.backbone.extract_features(torch.zeros(1, 1, 16, 16))
        # 48 px: the odd 3x3 map at the last stride-2 stage loses its border -> 1x1 instead of ceil(48/32) = 2
        assert b0.backbone.extract_features(torch.zeros(1, 1, 48, 48)).shape[-2:] == (1, 1)
        assert b0.backbone.extract_features(torch.zeros(1, 1, 64, 64)).shape[-2:] == (2, 2)
        assert b0.backbone.extract_features(torch.zeros(1, 1, 96, 96)).shape[-2:] == (3, 3)
    with pytest.raises(ValueError):
        check_image_size("efficientnet-b9", 64)


# ---------------------------------------------------------------- ImageNet initialisation
def test_imagenet_weights_stem_summed_and_fc_skipped(tmp_path):
    torch.manual_seed(1)
    imagenet = EfficientNet.from_name("efficientnet-b0")  # 3 input channels, with _fc, like the real .pth
    path = tmp_path / "efficientnet-b0-imagenet.pth"
    torch.save(imagenet.state_dict(), path)
    model = build_model(ModelConfig(), imagenet_weights=path)
    src = imagenet.state_dict()
    stem = model.backbone._conv_stem.weight
    assert stem.shape == (32, 1, 3, 3)
    torch.testing.assert_close(stem, src["_conv_stem.weight"].sum(dim=1, keepdim=True))
    torch.testing.assert_close(model.backbone._blocks[3]._depthwise_conv.weight,
                               src["_blocks.3._depthwise_conv.weight"])
    torch.testing.assert_close(model.backbone._bn1.running_var, src["_bn1.running_var"])
    report = model.imagenet_report
    assert {"_fc.weight", "_fc.bias"} <= set(report["skipped"])
    assert report["missing"] == [] and len(report["loaded"]) == len(model.backbone.state_dict())


def test_imagenet_weights_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        build_model(ModelConfig(), imagenet_weights=tmp_path / "none.pth")
    other = tmp_path / "b1.pth"
    torch.save(EfficientNet.from_name("efficientnet-b1").state_dict(), other)
    with pytest.raises(DataError, match="another EfficientNet variant"):
        build_model(ModelConfig(), imagenet_weights=other)


# ---------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_identical_outputs(b0, tmp_path):
    extra = dict(image_size=64, preprocess={"size": 64, "pad": 16}, train_config={"lr": 0.1}, epoch=3,
                 metric=0.5, scores={"weighted": 0.5})
    path = save_checkpoint(tmp_path / "run" / "best.pt", b0, **extra)
    assert path.is_file() and not list(path.parent.glob(".*tmp"))
    raw = torch.load(path, map_location="cpu", weights_only=True)  # no pickled objects inside
    assert set(raw) == {"model", "model_config", "kit_version", *extra}
    assert raw["model_config"]["name"] == "efficientnet-b0" and raw["model_config"]["n_classes"] == [168, 11, 7]
    model, ckpt = load_model(path)
    assert not model.training and ckpt["image_size"] == 64 and ckpt["preprocess"] == {"size": 64, "pad": 16}
    x = _batch(seed=5)
    with torch.no_grad():
        for a, b in zip(b0(x), model(x)):
            assert torch.equal(a, b)
        # the comparison depends on the backbone: features vary across images and differ from a fresh model
        feats = model.features(x)
        assert (feats[0] - feats[1]).abs().max() > 1e-3
        assert not torch.allclose(b0(x)[0], _calibrate(build_model(ModelConfig()))(x)[0])
    model2, _ = load_model(load_checkpoint(path))  # from an already loaded dict
    with torch.no_grad():
        assert torch.equal(model2(x)[0], b0(x)[0])


def test_save_unwraps_wrappers(tmp_path):
    model = build_model(ModelConfig(neck_dim=8))

    class Wrapper(torch.nn.Module):  # stands in for DDP (.module)
        def __init__(self, m):
            super().__init__()
            self.module = m

    path = save_checkpoint(tmp_path / "w.pt", Wrapper(model))
    keys = load_checkpoint(path)["model"].keys()
    assert not any(k.startswith("module.") for k in keys)
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path / "x.pt", model, model_config={})


def test_load_into_another_architecture_is_a_data_error(tmp_path):
    model = build_model(ModelConfig(neck_dim=8))
    path = save_checkpoint(tmp_path / "b0.pt", model)
    ckpt = load_checkpoint(path)
    ckpt["model_config"]["name"] = "efficientnet-b1"
    with pytest.raises(DataError, match="do not fit"):
        load_model(ckpt)
    ckpt["model_config"].update(name="efficientnet-b0", neck_dim=16)
    with pytest.raises(DataError, match="do not fit"):
        load_model(ckpt)
    with pytest.raises(DataError, match=r"neck.0.weight \(8, 1280\) where the model has \(16, 1280\)"):
        load_model(ckpt)  # torch's own multi-line message is not passed on
    ckpt["model_config"]["pooling"] = "median"
    with pytest.raises(DataError, match="model_config"):
        load_model(ckpt)


def test_bad_checkpoint_files(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(DataError, match="corrupt.pt"):
        load_model(corrupt)
    plain = tmp_path / "plain.pt"
    torch.save({"state_dict": {}}, plain)
    with pytest.raises(DataError, match="model_config"):
        load_checkpoint(plain)
    pickled = tmp_path / "pickled.pt"
    torch.save({"model": build_model(ModelConfig(neck_dim=8)), "model_config": {}}, pickled)  # a pickled object
    with pytest.raises(DataError, match=r"pickled.pt: holds a pickled Python object \(bengali_kit.model.BengaliNet\)"):
        load_checkpoint(pickled)


def _one_line_without_torch_advice(err: DataError) -> str:
    msg = str(err)
    assert "\n" not in msg and len(msg) < 400 and "\x1b" not in msg
    assert "weights_only" not in msg and "False" not in msg  # never advise unpickling an untrusted file
    assert not msg.endswith(("(", ",")) and msg.count("(") == msg.count(")")  # not cut mid-sentence
    return msg


def test_torch_load_errors_are_one_line_of_our_own_words(tmp_path):
    model = build_model(ModelConfig(neck_dim=8))
    good = save_checkpoint(tmp_path / "good.pt", model, image_size=32)
    cases = {
        "truncated.pt": (good.read_bytes()[:4000],
                         "truncated or corrupt (PytorchStreamReader failed reading zip archive"),
        "zeros.pt": (b"\x00" * 100, "not a PyTorch checkpoint (unreadable pickle data"),
        "text.pt": (b"not a checkpoint at all", "not a PyTorch checkpoint"),
    }
    for name, (data, fragment) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DataError) as info:
            load_model(tmp_path / name)
        msg = _one_line_without_torch_advice(info.value)
        assert msg.startswith(f"{tmp_path / name}: ") and fragment in msg, msg

    torch.save({"model": DataError("x", "y"), "model_config": {}}, tmp_path / "obj.pt")  # any pickled object
    with pytest.raises(DataError) as info:
        load_checkpoint(tmp_path / "obj.pt")
    assert "holds a pickled Python object" in _one_line_without_torch_advice(info.value)
    with pytest.raises(DataError, match="is a folder"):
        load_checkpoint(tmp_path)


def _saved(tmp_path, name="c.pt", **extra):
    torch.manual_seed(0)
    return save_checkpoint(tmp_path / name, build_model(ModelConfig(neck_dim=8)), **extra)


@pytest.mark.parametrize("value, kind", [(torch.zeros(3), "Tensor"), ([1, 2], "list"), ({}, "dict"),
                                         ({"w": 1.0}, "dict with non-tensor values")])
def test_model_entry_must_be_a_state_dict_of_tensors(tmp_path, value, kind):
    path = _saved(tmp_path, image_size=32)
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"] = value
    torch.save(ckpt, path)
    for load in (load_checkpoint, load_model):
        with pytest.raises(DataError) as info:
            load(path)
        assert str(info.value) == (f"{path}: 'model' is a {kind}, not a state dict of tensors "
                                   "(a hand-edited checkpoint?)")


def test_non_finite_weights_are_refused(tmp_path):
    path = _saved(tmp_path, image_size=32)
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"]["heads.1.bias"][3] = float("nan")
    ckpt["model"]["neck.0.weight"][0, 0] = float("inf")
    torch.save(ckpt, path)
    with pytest.raises(DataError, match=r"c.pt: has NaN/inf weights \(2 of \d+ tensors, e.g. neck.0.weight\): "
                                        r"the run diverged; retrain with a lower --lr"):
        load_model(path)


@pytest.mark.parametrize("size", [30, 48, 0, "64", True])
def test_image_size_the_model_cannot_take_is_refused(tmp_path, size):
    path = _saved(tmp_path, image_size=size)
    with pytest.raises(DataError, match=r"c.pt: image size "):
        load_checkpoint(path)


def test_float16_state_dicts_load_as_float32(tmp_path):
    """The shipped weights are float16 (half the size); the model is rebuilt in float32, same outputs."""
    torch.manual_seed(0)
    model = _calibrate(build_model(ModelConfig(neck_dim=8)), size=32)
    path = save_checkpoint(tmp_path / "full.pt", model, image_size=32)
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"] = {k: v.half() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    torch.save(ckpt, tmp_path / "half.pt")
    assert load_checkpoint(tmp_path / "half.pt")["model"]["heads.0.weight"].dtype == torch.float16  # kept as stored
    half, _ = load_model(tmp_path / "half.pt")
    assert all(p.dtype == torch.float32 for p in half.parameters())
    x = _batch(size=32)
    with torch.no_grad():
        ref, out = model(x)[0], half(x)[0]
    assert not torch.equal(ref, out)  # rounded weights ...
    assert (out - ref).abs().max() < 0.1 * ref.abs().max()  # ... but the same model: a fresh one is far off
    assert (out - ref).abs().max() < 0.1 * (build_model(ModelConfig(neck_dim=8)).eval()(x)[0] - ref).abs().max()


def test_a_full_disk_when_saving_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    import errno
    from pathlib import Path

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(DataError) as info:
        _saved(tmp_path, "best.pt")
    assert str(info.value) == f"{tmp_path / 'best.pt'}: cannot write: no space left on the device"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_trace_and_channels_last(b0):
    x = _batch(size=32)
    with torch.no_grad():
        ref = b0(x)
        traced = torch.jit.trace(b0, x, strict=False)
        torch.testing.assert_close(traced(x)[0], ref[0])
        cl = b0.to(memory_format=torch.channels_last)
        try:
            out = cl(x.contiguous(memory_format=torch.channels_last))
        finally:
            b0.to(memory_format=torch.contiguous_format)
        torch.testing.assert_close(out[0], ref[0], rtol=1e-4, atol=1e-4)
