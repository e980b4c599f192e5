"""The on-the-fly synthetic dataset: label coverage, novel triples, seeding, handwriting look, output format."""
from __future__ import annotations

import numpy as np
import pytest

from bengali_kit.components import load_class_map, read_grapheme_counts
from bengali_kit.synthetic import (
    GraphemeRenderer,
    HandwritingParams,
    LabelSampler,
    SyntheticGraphemes,
    find_bengali_fonts,
    handwrite,
    novel_triples,
)


def _real_set():
    g = read_grapheme_counts()
    return set(map(tuple, g[["grapheme_root", "vowel_diacritic", "consonant_diacritic"]].to_numpy().tolist()))


def test_novel_triples_are_new_and_follow_the_rules():
    real = _real_set()
    novel = novel_triples()
    assert len(novel) > 500
    as_set = set(map(tuple, novel.tolist()))
    assert not as_set & real and len(as_set) == len(novel)
    vowel_cons = {(v, c) for _, v, c in real}
    cmap = load_class_map()
    for r, v, c in as_set:
        assert r not in range(13) and r != 164  # independent vowels, ং ঃ and ৎ take no signs
        assert (v, c) in vowel_cons
        assert cmap.compose(r, v, c)  # composes to a string


def test_label_sampler_frequencies_and_flattening():
    rng = np.random.default_rng(0)
    real = _real_set()
    s = LabelSampler(alpha=1.0, novel_fraction=0.0)
    draws = [tuple(s.sample(rng).tolist()) for _ in range(4000)]
    assert set(draws) <= real
    flat = LabelSampler(alpha=0.0, novel_fraction=0.0)
    # uniform over triples: the most frequent real triple is drawn about as often as any other
    assert flat.real_p.max() == pytest.approx(flat.real_p.min())
    counts = read_grapheme_counts()["count"].to_numpy(float)
    assert np.allclose(s.real_p, counts / counts.sum())
    half = LabelSampler(alpha=0.5, novel_fraction=0.0)
    assert np.allclose(half.real_p, counts ** 0.5 / (counts ** 0.5).sum())
    # the rare triples get drawn: all 1,292 show up in a modest sample
    assert len({tuple(half.sample(rng).tolist()) for _ in range(20000)}) > 1250
    mixed = LabelSampler(alpha=0.5, novel_fraction=0.3)
    draws = [tuple(mixed.sample(rng).tolist()) for _ in range(2000)]
    share_new = np.mean([d not in real for d in draws])
    assert 0.25 < share_new < 0.35


def test_handwrite_keeps_format_and_changes_the_glyph():
    fonts = find_bengali_fonts()
    img = GraphemeRenderer(fonts).render("ক্ষ", np.random.default_rng(1))
    out = handwrite(img, np.random.default_rng(2), HandwritingParams())
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (out < 128).sum() > 30  # ink survives
    assert np.abs(out.astype(int) - img).mean() > 0.5
    assert np.array_equal(out, handwrite(img, np.random.default_rng(2), HandwritingParams()))


def test_dataset_items_are_seeded_by_seed_epoch_index():
    ds = SyntheticGraphemes(size=32, length=6, seed=5)
    x, y = ds[3]
    assert x.shape == (32, 32) and str(x.dtype) == "torch.uint8" and y.shape == (3,)
    assert int(x.max()) > 150 and int(x[0, 0]) == 0  # ink bright on black, like the preprocessed cache
    x2, y2 = SyntheticGraphemes(size=32, length=6, seed=5)[3]
    assert (x == x2).all() and (y == y2).all()
    ds.set_epoch(1)
    x3, _ = ds[3]
    assert not (x3 == x).all()
    assert np.array_equal(ds.labels_for([0, 3])[1], ds[3][1].numpy())


def test_render_labels_draws_an_item_as_the_stream_would():
    ds = SyntheticGraphemes(size=32, length=6, seed=2)
    img, labels = ds.render(4)
    assert np.array_equal(ds.render_labels(labels, 4), img)  # the same labels: the very same image
    other = ds.render_labels([72, 1, 0], 4)
    assert other.shape == img.shape and other.dtype == np.uint8 and not np.array_equal(other, img)
