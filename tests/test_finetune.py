"""--init: copying weights from another run's checkpoint, and head-only warm-up."""
from __future__ import annotations

import pytest
import torch

from bengali_kit.errors import DataError
from bengali_kit.finetune import load_init_weights, set_head_only
from bengali_kit.model import ModelConfig, build_model, save_checkpoint


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model(ModelConfig(pooling="gem"))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)  # distinguishable from any fresh initialisation
    path = tmp_path_factory.mktemp("ck") / "src.pt"
    save_checkpoint(path, model, image_size=64)
    return path, model.state_dict()


def _same(a, b, prefix):
    return all(torch.equal(a[k], b[k]) for k in a if k.startswith(prefix))


def test_same_architecture_loads_everything(source):
    path, src = source
    model = build_model(ModelConfig(pooling="gem"))
    rep = load_init_weights(model, path)
    assert rep.mode == "all" and not rep.skipped
    assert _same(model.state_dict(), src, "")
    assert "all weights" in rep.summary()


def test_other_pooling_keeps_backbone_and_heads(source):
    path, src = source
    model = build_model(ModelConfig(pooling="avg"))
    rep = load_init_weights(model, path)
    assert rep.mode == "backbone+heads"
    assert _same(model.state_dict(), src, "backbone.") and _same(model.state_dict(), src, "heads.")


def test_a_new_grapheme_head_starts_fresh_and_the_rest_loads(source, tmp_path):
    path, src = source
    model = build_model(ModelConfig(pooling="gem", grapheme_classes=1292))
    fresh = model.grapheme_head.weight.clone()
    rep = load_init_weights(model, path)
    assert rep.mode == "backbone+heads" and rep.skipped == ["grapheme_head.weight", "grapheme_head.bias"]
    assert _same(src, model.state_dict(), "")  # every tensor the source has
    assert torch.equal(model.grapheme_head.weight, fresh) and "kept fresh: grapheme_head" in rep.summary()
    # and back: a model without the head takes everything from a checkpoint that has one
    save_checkpoint(tmp_path / "with_head.pt", model, image_size=64)
    plain = build_model(ModelConfig(pooling="gem"))
    assert load_init_weights(plain, tmp_path / "with_head.pt").skipped == []
    assert _same(plain.state_dict(), src, "")


def test_other_heads_load_the_backbone_only(source):
    path, src = source
    model = build_model(ModelConfig(neck_dim=256))
    fresh_head = model.heads[0].weight.clone()
    rep = load_init_weights(model, path)
    assert rep.mode == "backbone" and any(k.startswith("neck.") for k in rep.skipped)
    assert _same(model.state_dict(), src, "backbone.")
    assert torch.equal(model.heads[0].weight, fresh_head)
    assert "backbone only" in rep.summary()


def test_other_backbone_is_refused(source):
    path, _ = source
    with pytest.raises(DataError, match="does not fit"):
        load_init_weights(build_model(ModelConfig(name="efficientnet-b1")), path)


def test_head_only_trains_only_the_heads():
    torch.manual_seed(0)
    model = build_model(ModelConfig())
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters()], lr=0.1)
    x = torch.rand(4, 1, 32, 32)
    set_head_only(model, True)  # a warm-up epoch
    assert not model.backbone.training and not any(p.requires_grad for p in model.backbone.parameters())
    loss = sum(z.sum() for z in model(x))
    opt.zero_grad()
    loss.backward()
    opt.step()
    after = model.state_dict()
    assert _same(after, before, "backbone.")  # weights and batch-norm statistics unchanged
    assert not torch.equal(after["heads.0.weight"], before["heads.0.weight"])
    set_head_only(model, False)  # the next epoch: model.train() then everything learns again
    model.train()
    assert all(p.requires_grad for p in model.parameters()) and model.backbone.training
