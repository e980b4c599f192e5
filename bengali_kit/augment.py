"""Batch augmentation as torch ops on the device: random affine, random erasing, cutmix and mixup.

Images are float tensors (B, 1, H, W) in [0, 1] with bright ink on a black background (the preprocessed
cache / 255), so the affine fills uncovered pixels with 0 (background). Randomness comes only from an
explicit ``torch.Generator`` (per-sample tensors, on the batch's device) and a ``numpy.random.Generator``
(per-batch scalars such as the Beta-distributed mixing weight), so a seed fixes every augmented batch.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .losses import MixedTargets

__all__ = ["affine_matrices", "apply_affine", "random_affine", "random_erasing", "cutmix", "mixup",
           "BatchAugmenter"]


def _uniform(n: int, lo: float, hi: float, generator: torch.Generator, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=generator, device=device)


def affine_matrices(n: int, degrees: float = 0.0, scale: Sequence[float] = (1.0, 1.0), translate: float = 0.0,
                    shear: float = 0.0, generator: torch.Generator | None = None,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """Random sampling matrices ``theta`` (n, 2, 3) for ``F.affine_grid`` (normalised coordinates).

    The content is rotated by U(-degrees, degrees), sheared along x by U(-shear, shear) degrees, scaled by
    U(scale) and shifted by U(-translate, translate) of the image size; ``theta`` is the inverse of that
    map because ``affine_grid`` maps output pixels to input pixels. All zeros (and scale (1, 1)) is the identity.
    """
    if generator is None:
        generator = torch.Generator(device=device)
    rot = torch.deg2rad(_uniform(n, -degrees, degrees, generator, device))
    shr = torch.deg2rad(_uniform(n, -shear, shear, generator, device))
    s = _uniform(n, float(scale[0]), float(scale[1]), generator, device)
    # normalised coordinates span 2 units per image side
    tx = 2 * _uniform(n, -translate, translate, generator, device)
    ty = 2 * _uniform(n, -translate, translate, generator, device)
    cos, sin, tan = torch.cos(rot), torch.sin(rot), torch.tan(shr)
    # forward map of the content: M = R(rot) @ Shear_x(shr) @ diag(s, s), then translation
    m = torch.zeros(n, 3, 3, device=device)
    m[:, 0, 0] = s * cos
    m[:, 0, 1] = s * (cos * tan - sin)
    m[:, 1, 0] = s * sin
    m[:, 1, 1] = s * (sin * tan + cos)
    m[:, 0, 2] = tx
    m[:, 1, 2] = ty
    m[:, 2, 2] = 1.0
    return torch.linalg.inv(m)[:, :2, :]


def apply_affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Resample images (B, C, H, W) with sampling matrices ``theta`` (B, 2, 3); keeps shape and dtype.

    Bilinear, zeros outside (the background of preprocessed images). Integer images are rounded back.
    """
    work = x if x.is_floating_point() else x.float()
    grid = F.affine_grid(theta.to(work.dtype), list(work.shape), align_corners=False)
    out = F.grid_sample(work, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if not x.is_floating_point():
        info = torch.iinfo(x.dtype)
        out = out.round_().clamp_(info.min, info.max)
    return out.to(x.dtype)


def random_affine(x: torch.Tensor, degrees: float = 0.0, scale: Sequence[float] = (1.0, 1.0),
                  translate: float = 0.0, shear: float = 0.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply an independent random affine to every image of ``x`` (B, C, H, W); see ``affine_matrices``."""
    if degrees == 0 and shear == 0 and translate == 0 and tuple(scale) == (1.0, 1.0):
        return x
    theta = affine_matrices(len(x), degrees, scale, translate, shear, generator, x.device)
    return apply_affine(x, theta)


def random_erasing(x: torch.Tensor, p: float, area: Sequence[float] = (0.02, 0.25), max_aspect: float = 3.0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Blank one random box of each image of ``x`` (B, C, H, W) with probability ``p`` (RandomErasing).

    The box covers ``area`` (min max) of the image, with an aspect ratio between 1/``max_aspect`` and
    ``max_aspect``; it is filled with background (0), so strokes under it vanish and the labels stay: a
    root must then be read from the strokes that are left, not from the combination it usually comes in.
    """
    if p <= 0:
        return x
    b, _, h, w = x.shape
    device = x.device
    box_area = _uniform(b, area[0], area[1], generator, device) * h * w
    aspect = torch.exp(_uniform(b, -math.log(max_aspect), math.log(max_aspect), generator, device))
    box_h = (box_area * aspect).sqrt().clamp(1, h)
    box_w = (box_area / aspect).sqrt().clamp(1, w)
    top = torch.rand(b, generator=generator, device=device) * (h - box_h)
    left = torch.rand(b, generator=generator, device=device) * (w - box_w)
    chosen = torch.rand(b, generator=generator, device=device) < p
    rows = torch.arange(h, device=device).view(1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, w)
    inside = ((rows >= top.view(b, 1, 1)) & (rows < (top + box_h).view(b, 1, 1))
              & (cols >= left.view(b, 1, 1)) & (cols < (left + box_w).view(b, 1, 1)) & chosen.view(b, 1, 1))
    return x.masked_fill(inside.unsqueeze(1), 0)


def _mixed_targets(y_a: torch.Tensor, y_b: torch.Tensor, lam: float):
    return MixedTargets(y_a, y_b, float(lam))


def cutmix(x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator,
           rng: np.random.Generator):
    """Paste a random box from a shuffled copy of the batch into each image.

    Returns ``(x_mixed, MixedTargets(y, y[perm], lam))`` where ``lam`` is the fraction of each image
    that is still its own (1 - box area / image area, after clipping the box to the image).
    """
    b, _, h, w = x.shape
    lam = float(rng.beta(alpha, alpha))
    perm = torch.randperm(b, generator=generator, device=x.device)
    cut = math.sqrt(1.0 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = int(rng.integers(h)), int(rng.integers(w))
    y1, y2 = max(cy - ch // 2, 0), min(cy + ch // 2 + ch % 2, h)
    x1, x2 = max(cx - cw // 2, 0), min(cx + cw // 2 + cw % 2, w)
    out = x.clone()
    out[:, :, y1:y2, x1:x2] = x[perm, :, y1:y2, x1:x2]
    lam = 1.0 - (y2 - y1) * (x2 - x1) / (h * w)
    return out, _mixed_targets(y, y[perm], lam)


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, generator: torch.Generator,
          rng: np.random.Generator):
    """Blend each image with one of a shuffled copy of the batch: ``lam * x + (1 - lam) * x[perm]``.

    Returns ``(x_mixed, MixedTargets(y, y[perm], lam))`` with ``lam ~ Beta(alpha, alpha)``.
    """
    lam = float(rng.beta(alpha, alpha))
    perm = torch.randperm(len(x), generator=generator, device=x.device)
    out = x * lam + x[perm] * (1.0 - lam)
    return out, _mixed_targets(y, y[perm], lam)


class BatchAugmenter:
    """Augments a training batch on its device: random affine, random erasing, then cutmix OR mixup OR neither.

    ``reseed(seed)`` resets both generators; training reseeds at every epoch from (seed, epoch, rank),
    so an epoch's augmentations do not depend on what ran before (resume gives the same batches).
    """

    def __init__(self, degrees: float = 0.0, scale: Sequence[float] = (1.0, 1.0), translate: float = 0.0,
                 shear: float = 0.0, cutmix_p: float = 0.0, mixup_p: float = 0.0, alpha: float = 1.0,
                 device: torch.device | str = "cpu", seed: int = 0, erase_p: float = 0.0):
        if not (0 <= cutmix_p <= 1 and 0 <= mixup_p <= 1 and cutmix_p + mixup_p <= 1):
            raise ValueError(f"cutmix_p and mixup_p must be in [0, 1] with a sum <= 1, got {cutmix_p}, {mixup_p}")
        if not 0 <= erase_p <= 1:
            raise ValueError(f"erase_p must be in [0, 1], got {erase_p}")
        if (cutmix_p or mixup_p) and alpha <= 0:
            raise ValueError(f"mix alpha must be > 0, got {alpha}")
        self.degrees, self.scale, self.translate, self.shear = degrees, tuple(scale), translate, shear
        self.cutmix_p, self.mixup_p, self.alpha, self.erase_p = cutmix_p, mixup_p, alpha, erase_p
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device)
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Reset the torch and numpy generators from ``seed``."""
        self.generator.manual_seed(int(seed))
        self.rng = np.random.default_rng(int(seed))

    def __call__(self, x: torch.Tensor, y: torch.Tensor):
        """``x`` float (B, 1, H, W) on the device, ``y`` long (B, 3) -> ``(x_aug, y or MixedTargets)``."""
        x = random_affine(x, self.degrees, self.scale, self.translate, self.shear, self.generator)
        x = random_erasing(x, self.erase_p, generator=self.generator)
        u = self.rng.random()
        if u < self.cutmix_p:
            return cutmix(x, y, self.alpha, self.generator, self.rng)
        if u < self.cutmix_p + self.mixup_p:
            return mixup(x, y, self.alpha, self.generator, self.rng)
        return x, y
