"""Batch augmentation: affine geometry, identity, dtype/shape, erasing, cutmix/mixup targets, determinism."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from bengali_kit.augment import (
    BatchAugmenter,
    affine_matrices,
    apply_affine,
    cutmix,
    mixup,
    random_affine,
    random_erasing,
)
from bengali_kit.losses import MixedTargets


def _images(b=4, s=32, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, s, s, generator=g)


def _labels(b=4) -> torch.Tensor:
    return torch.stack([torch.arange(b), torch.arange(b) % 11, torch.arange(b) % 7], 1)


def test_identity_params_give_the_input_back():
    x = _images()
    theta = affine_matrices(len(x), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(theta, torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(4, 2, 3), atol=1e-6)
    assert torch.allclose(apply_affine(x, theta), x, atol=1e-5)
    assert random_affine(x) is x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.uint8])
def test_affine_keeps_shape_and_dtype(dtype):
    x = (_images(3, 48) * 255).to(dtype) if dtype == torch.uint8 else _images(3, 48).to(dtype)
    g = torch.Generator().manual_seed(1)
    out = random_affine(x, degrees=15, scale=(0.8, 1.2), translate=0.1, shear=10, generator=g)
    assert out.shape == x.shape and out.dtype == dtype
    assert not torch.equal(out, x)


def test_affine_geometry_translation_and_rotation():
    # a single bright pixel moves where the forward map says
    s = 32
    x = torch.zeros(1, 1, s, s)
    x[0, 0, 8, 16] = 1.0  # row 8, column 16
    g = torch.Generator().manual_seed(0)
    shifted = random_affine(x, translate=0.25, generator=g)
    theta = affine_matrices(1, translate=0.25, generator=torch.Generator().manual_seed(0))
    # inverse of theta is the forward map; translation in normalised units * s/2 = pixels
    fwd = torch.linalg.inv(torch.cat([theta[0], torch.tensor([[0.0, 0, 1]])]))
    dx, dy = float(fwd[0, 2]) * s / 2, float(fwd[1, 2]) * s / 2
    r, c = np.unravel_index(int(shifted[0, 0].argmax()), (s, s))
    assert abs(r - (8 + dy)) <= 1 and abs(c - (16 + dx)) <= 1
    assert float(shifted.sum()) == pytest.approx(1.0, abs=1e-4)
    # a 90 degree rotation of a centred-symmetric grid maps the top row's centre to a side column
    theta90 = torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]])
    y = torch.zeros(1, 1, s, s)
    y[0, 0, 0, :] = 1.0
    rot = apply_affine(y, theta90)
    assert torch.allclose(rot[0, 0].sum(0)[[0, -1]].max(), torch.tensor(float(s)), atol=1e-4)


def test_affine_scale_shrinks_content():
    x = torch.zeros(1, 1, 32, 32)
    x[0, 0, 8:24, 8:24] = 1.0
    small = random_affine(x, scale=(0.5, 0.5), generator=torch.Generator().manual_seed(0))
    assert float(small.sum()) == pytest.approx(x.sum().item() * 0.25, rel=0.05)


def test_cutmix_targets_lam_matches_pasted_area():
    x = torch.zeros(8, 1, 32, 32)
    for i in range(8):
        x[i] = i  # each image a constant = its index, so pasted pixels are identifiable
    y = _labels(8)
    g, rng = torch.Generator().manual_seed(3), np.random.default_rng(3)
    out, t = cutmix(x, y, alpha=1.0, generator=g, rng=rng)
    assert isinstance(t, MixedTargets) and out.shape == x.shape
    perm = t.y_a[:, 0].new_tensor([int(v) for v in t.y_b[:, 0]])
    assert torch.equal(t.y_a, y) and torch.equal(t.y_b, y[perm])
    own = (out == x).float().mean(dim=(1, 2, 3))
    moved = perm != torch.arange(8)
    assert torch.allclose(own[moved], torch.full_like(own[moved], t.lam), atol=1e-6)
    assert 0.0 <= t.lam <= 1.0
    # the same seeds give the same box and permutation
    out2, t2 = cutmix(x, y, 1.0, torch.Generator().manual_seed(3), np.random.default_rng(3))
    assert torch.equal(out, out2) and t2.lam == t.lam


def test_mixup_is_a_convex_blend():
    x, y = _images(6), _labels(6)
    out, t = mixup(x, y, alpha=0.4, generator=torch.Generator().manual_seed(0), rng=np.random.default_rng(0))
    perm = t.y_b[:, 0]  # labels 0..5 in root: the root label is the source index
    assert torch.allclose(out, t.lam * x + (1 - t.lam) * x[perm], atol=1e-6)
    assert torch.equal(t.y_a, y) and 0 < t.lam < 1


def test_batch_augmenter_is_deterministic_and_chooses_ops():
    x, y = _images(8), _labels(8)
    a = BatchAugmenter(10, (0.9, 1.1), 0.05, 5, cutmix_p=0.5, mixup_p=0.5, seed=7)
    b = BatchAugmenter(10, (0.9, 1.1), 0.05, 5, cutmix_p=0.5, mixup_p=0.5, seed=7)
    for _ in range(3):
        (xa, ta), (xb, tb) = a(x, y), b(x, y)
        assert torch.equal(xa, xb) and isinstance(ta, MixedTargets) and ta.lam == tb.lam
    a.reseed(1)
    b.reseed(2)
    assert not torch.equal(a(x, y)[0], b(x, y)[0])
    plain = BatchAugmenter(seed=0)
    xp, tp = plain(x, y)
    assert torch.equal(xp, x) and torch.equal(tp, y)
    with pytest.raises(ValueError, match="cutmix_p"):
        BatchAugmenter(cutmix_p=0.7, mixup_p=0.6)


def test_random_erasing_blanks_one_box_of_the_asked_area():
    x = torch.ones(64, 1, 40, 60)
    out = random_erasing(x, 1.0, area=(0.05, 0.2), generator=torch.Generator().manual_seed(0))
    blank = out[:, 0] == 0
    assert torch.equal(out[~(out == 0)], x[~(out == 0)])  # nothing but the box changes
    for k in range(len(x)):
        rows, cols = blank[k].nonzero(as_tuple=True)
        assert len(rows) > 0
        box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
        assert box == len(rows)  # one filled rectangle
        assert 0.05 * 2400 * 0.8 <= len(rows) <= 0.2 * 2400 * 1.1  # pixel rounding of the asked area
    sizes = blank.flatten(1).sum(1).float()
    assert sizes.std() > 0  # a new box per image
    assert random_erasing(x, 0.0) is x


def test_random_erasing_probability_and_determinism():
    x = torch.ones(400, 1, 16, 16)
    out = random_erasing(x, 0.25, generator=torch.Generator().manual_seed(1))
    erased = (out == 0).flatten(1).any(1).float().mean().item()
    assert 0.18 < erased < 0.32  # binomial(400, 0.25): about 3 standard deviations either side
    again = random_erasing(x, 0.25, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again)
    aug = BatchAugmenter(erase_p=1.0, seed=3)
    xa, ya = aug(x[:8], _labels(8))
    assert (xa == 0).flatten(1).any(1).all() and torch.equal(ya, _labels(8))  # labels are kept
    with pytest.raises(ValueError, match="erase_p"):
        BatchAugmenter(erase_p=1.5)
