"""Crop/resize: fast path == reference, blank safety, hand-checked geometry, the cache, the CLI."""
from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest

from bengali_kit import data, preprocess
from bengali_kit.cli import main
from bengali_kit.errors import DataError
from bengali_kit.preprocess import CropParams, crop_resize, crop_resize_batch, crop_resize_reference

H, W = data.IMAGE_HEIGHT, data.IMAGE_WIDTH


def _white(n: int = 1) -> np.ndarray:
    return np.full((n, H, W), 255, dtype=np.uint8)


def strokes(n: int, seed: int) -> np.ndarray:
    """Varied test images: strokes of random darkness/width anywhere (also on the edges), noise, blur."""
    rng = np.random.default_rng(seed)
    out = _white(n)
    for img in out:
        centre = rng.integers([0, 0], [W, H])
        for _ in range(rng.integers(1, 6)):
            pts = (centre + rng.normal(0, rng.uniform(5, 60), (rng.integers(2, 6), 2))).astype(np.int32)
            cv2.polylines(img, [pts], False, int(rng.integers(0, 200)), int(rng.integers(1, 9)), cv2.LINE_AA)
        if rng.random() < 0.5:
            img[:] = cv2.GaussianBlur(img, (5, 5), 0)
        img[:] = np.clip(img.astype(np.int16) - rng.integers(0, rng.integers(1, 40), img.shape), 0, 255)
    return out


def edge_cases() -> np.ndarray:
    imgs = _white(8)
    imgs[1][:] = 250  # flat grey: faint "ink" everywhere, scaled to 255
    imgs[2][:4, :] = 0  # ink only inside the ignored 5 px frame: near-blank
    imgs[3][70, 120] = 0  # a single dark pixel
    imgs[4][:] = 0  # all black
    imgs[5][5:, 5:] = np.random.default_rng(1).integers(0, 256, (H - 5, W - 5))  # noise up to the edges
    imgs[6][20:130, 0:236] = 100  # ink over the full width
    imgs[7][60:70, 200:236] = 30  # ink touching the right edge
    return imgs


# ---------------------------------------------------------------- fast == reference
@pytest.mark.parametrize("size, params", [
    (128, {}),
    (64, {"interpolation": "linear"}),
    (48, {"threshold": 40, "noise": 0, "margin": 0, "pad_x": 0, "pad_y": 0, "border": 0}),
    (96, {"threshold": 200, "noise": 100, "margin": 40, "pad_x": 30, "pad_y": 2, "border": 12,
          "interpolation": "cubic"}),
])
def test_batch_equals_reference(size, params):
    images = np.concatenate([strokes(60, seed=size), edge_cases()])
    out, n_blank = crop_resize_batch(images, size, **params)
    ref = np.stack([crop_resize_reference(im, size, **params) for im in images])
    assert out.dtype == np.uint8 and out.shape == (len(images), size, size)
    bad = np.flatnonzero((out != ref).any(axis=(1, 2)))
    assert bad.size == 0, f"images {bad.tolist()} differ from the reference"
    blank = ref.reshape(len(ref), -1).max(axis=1) == 0
    assert n_blank == blank.sum() >= 1  # the all-white image at least
    np.testing.assert_array_equal(crop_resize(images[3], size, **params), ref[3])


def test_batch_equals_reference_on_rendered_graphemes(synth_dir):
    images = data.read_images(data.image_parquets(synth_dir, "test")[0]).images
    out, n_blank = crop_resize_batch(images, 64)
    ref = np.stack([crop_resize_reference(im, 64) for im in images])
    np.testing.assert_array_equal(out, ref)
    assert n_blank == 0 and (out.reshape(len(out), -1).max(axis=1) > 200).all()  # ink scaled to 255, then resized


def test_parallel_batch_equals_single_process():
    images = strokes(40, seed=7)
    images[5] = 255
    one, blank1 = crop_resize_batch(images, 32)
    two, blank2 = crop_resize_batch(images, 32, workers=2, chunk_size=7)
    np.testing.assert_array_equal(one, two)
    assert blank1 == blank2 == 1


# ---------------------------------------------------------------- blanks
def test_blank_and_near_blank_images_give_zeros_and_are_counted():
    images = _white(5)
    images[1][:] = 255
    images[2][:5, :] = 0  # ink only in the top frame rows
    images[3][:, -5:] = 40  # ... and in the right frame columns
    images[4][60:80, 100:140] = 0  # one real image
    out, n_blank = crop_resize_batch(images, 32)
    assert n_blank == 4
    assert not out[:4].any() and out[4].max() == 255
    for im in images[:4]:
        assert not crop_resize_reference(im, 32).any()
        assert crop_resize(im, 32).shape == (32, 32)
    assert crop_resize_batch(np.zeros((0, H, W), np.uint8), 32)[0].shape == (0, 32, 32)


def test_tiny_image_smaller_than_the_frame_is_blank():
    tiny = np.zeros((1, 8, 8), np.uint8)
    out, n_blank = crop_resize_batch(tiny, 16)
    assert n_blank == 1 and not out.any()
    assert not crop_resize_reference(tiny[0], 16).any()


# ---------------------------------------------------------------- geometry, checked by hand
def _box_image() -> np.ndarray:
    img = _white()[0]
    img[50:60, 100:130] = 0  # 10 × 30 dark box
    return img


def test_crop_geometry_with_default_parameters():
    # box rows 50..59 -> crop rows 40..69 (30); cols 100..129 -> 87..142 (56); square side 56 + 16 = 72:
    # at size 72 the resize is the identity, so the output shows the padding exactly.
    out = crop_resize(_box_image(), size=72)
    expected = np.zeros((72, 72), np.uint8)
    top, left = (72 - 30) // 2, (72 - 56) // 2
    expected[top + 10:top + 20, left + 13:left + 43] = 255  # inverted: ink bright on black
    np.testing.assert_array_equal(out, expected)


def test_padding_and_margin_parameters_are_honoured():
    out = crop_resize(_box_image(), size=30, pad_x=0, pad_y=0, margin=0)  # crop 10 × 30, square 30
    expected = np.zeros((30, 30), np.uint8)
    expected[10:20, :] = 255
    np.testing.assert_array_equal(out, expected)
    out = crop_resize(_box_image(), size=40, pad_x=0, pad_y=3, margin=10)  # crop 16 × 30, square 40
    expected = np.zeros((40, 40), np.uint8)
    expected[12 + 3:12 + 13, 5:35] = 255
    np.testing.assert_array_equal(out, expected)


def test_threshold_border_and_noise_parameters_are_honoured():
    img = _box_image()
    img[55, 200] = 255 - 60  # faint mark far right: inverted 60 <= 80, not ink by default
    img[45, 110] = 255 - 40  # faint pixel inside the widened box: 40 >= 28 survives, < 50 would not
    base = crop_resize(img, size=72)
    assert base[(72 - 30) // 2 + 5, (72 - 56) // 2 + 23] == 40
    assert crop_resize(img, size=72, noise=50)[(72 - 30) // 2 + 5, (72 - 56) // 2 + 23] == 0
    # with threshold 50 the faint mark extends the box to col 200: crop rows 40..69, cols 87..213 (30 × 127),
    # square 143, padded 56 above and 8 left; at size 143 the resize is the identity
    wide = crop_resize(img, size=143, threshold=50)
    expected = np.zeros((143, 143), np.uint8)
    expected[56 + 10:56 + 20, 8 + 13:8 + 43] = 255
    expected[56 + 15, 8 + 113] = 60
    expected[56 + 5, 8 + 23] = 40
    np.testing.assert_array_equal(wide, expected)
    # border: ink within the first 5 rows is ignored by default, found with border=0
    edge = _white()[0]
    edge[1:3, 100:110] = 0
    assert not crop_resize(edge, 32).any()
    assert crop_resize(edge, 32, border=0).max() > 100  # a 2-px line, averaged by the resize


def test_scaling_brings_faint_ink_to_255_and_output_is_inverted():
    img = _white()[0]
    img[40:90, 60:160] = 200  # faint ink: inverted 55, scaled to 255
    out = crop_resize(img, 64)
    assert out.max() == 255 and out[0, 0] == 0 and out[32, 32] == 255


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown crop parameter"):
        crop_resize(_box_image(), 32, treshold=3)
    with pytest.raises(ValueError, match="interpolation"):
        CropParams(interpolation="bilinear")
    with pytest.raises(ValueError, match="noise"):
        CropParams(noise=-1)
    with pytest.raises(ValueError, match="size"):
        crop_resize(_box_image(), 0)
    with pytest.raises(ValueError, match="uint8"):
        crop_resize_batch(np.zeros((2, H, W), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        crop_resize(np.zeros((2, H, W), np.uint8))
    assert CropParams.make({"margin": 4}, noise=3).asdict()["margin"] == 4
    assert CropParams.make(CropParams(noise=3)) == CropParams(noise=3)


# ---------------------------------------------------------------- cache
def _mtime_ns(path):
    return path.stat().st_mtime_ns


def test_build_cache_reuse_and_rebuild(synth_dir, tmp_path):
    out = tmp_path / "cache"
    paths = data.image_parquets(synth_dir, "test")
    assert len(paths) == 2
    info = preprocess.build_cache(synth_dir, "test", 32, out, workers=1, progress=False, batch_size=20)
    assert not info.reused and info.n_images == 60 and info.images_path == out / "test_32.npy"
    images, ids = preprocess.load_cache(out, "test", 32)
    assert isinstance(images, np.memmap) and images.shape == (60, 32, 32) and images.dtype == np.uint8
    parts = [data.read_images(p) for p in paths]
    assert ids.tolist() == np.concatenate([p.ids for p in parts]).tolist()  # k order
    expected, n_blank = crop_resize_batch(np.concatenate([p.images for p in parts]), 32)
    np.testing.assert_array_equal(images, expected)
    assert info.n_blank == n_blank
    manifest = json.loads(info.manifest_path.read_text())
    assert manifest["params"] == CropParams().asdict() and len(manifest["sources"]) == 2

    def build(**kw):
        return preprocess.build_cache(synth_dir, "test", 32, out, workers=1, progress=False, **kw)

    stamp = _mtime_ns(info.images_path)
    again = build()
    assert again.reused and again.n_images == 60 and _mtime_ns(info.images_path) == stamp

    changed = build(margin=0)
    assert not changed.reused and json.loads(info.manifest_path.read_text())["params"]["margin"] == 0
    assert not np.array_equal(preprocess.load_cache(out, "test", 32, mmap=False)[0], expected)

    st = paths[1].stat()
    os.utime(paths[1], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # a source "changed"
    assert not build(margin=0).reused  # the source's mtime changed


def test_build_cache_in_parallel_equals_iter_preprocessed(synth_dir, tmp_path):
    info = preprocess.build_cache(synth_dir, "test", 24, tmp_path, workers=2, progress=False, batch_size=25,
                                  chunk_size=10)
    images, ids = preprocess.load_cache(tmp_path, "test", 24)
    streamed = list(preprocess.iter_preprocessed(synth_dir, "test", 24, batch_size=25, workers=1))
    assert all(len(i) <= 25 for i, _ in streamed) and len(streamed) >= 3
    np.testing.assert_array_equal(np.concatenate([im for _, im in streamed]), images)
    assert np.concatenate([i for i, _ in streamed]).tolist() == ids.tolist()
    assert info.n_images == 60


@pytest.mark.slow
def test_failed_build_leaves_no_partial_file(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    images = strokes(6, seed=3)
    data.write_image_parquet(folder / "train_image_data_0.parquet", [f"T{i}" for i in range(6)], images)
    data.write_image_parquet(folder / "train_image_data_1.parquet", ["T9", "T2"], images[:2])  # T2 twice
    out = tmp_path / "cache"
    with pytest.raises(DataError, match="duplicate image_id 'T2'"):
        preprocess.build_cache(folder, "train", 16, out, workers=1, progress=False)
    assert not out.exists()  # the folder it made is removed again: a failed first build leaves nothing

    (folder / "train_image_data_1.parquet").unlink()
    preprocess.build_cache(folder, "train", 16, out, workers=1, progress=False)
    calls = []

    def exploding(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("worker died")

    monkeypatch.setattr(preprocess, "_crop_chunk", exploding)
    with pytest.raises(RuntimeError, match="worker died"):
        preprocess.build_cache(folder, "train", 16, out, workers=1, progress=False, force=True)
    assert calls
    # the old arrays stay, no temp files remain, and without a manifest the old cache is not trusted
    assert sorted(p.name for p in out.iterdir()) == ["train_16.npy", "train_16_ids.csv"]


def test_load_cache_errors(tmp_path):
    with pytest.raises(DataError, match="cache file not found"):
        preprocess.load_cache(tmp_path, "train", 32)
    np.save(tmp_path / "train_32.npy", np.zeros((2, 16, 16), np.uint8))
    (tmp_path / "train_32_ids.csv").write_text("image_id\na\nb\n")
    with pytest.raises(DataError, match="expected uint8 \\(N, 32, 32\\)"):
        preprocess.load_cache(tmp_path, "train", 32)
    np.save(tmp_path / "train_32.npy", np.zeros((3, 32, 32), np.uint8))
    with pytest.raises(DataError, match="2 ids for 3 cached images"):
        preprocess.load_cache(tmp_path, "train", 32)


# ---------------------------------------------------------------- command line
def test_cli_preprocess(synth_dir, tmp_path, capsys):
    out = tmp_path / "cache"
    assert main(["preprocess", str(synth_dir), "--size", "32", "--out", str(out), "--workers", "2",
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "train: 400 images, " in text and "test: 60 images, " in text and "images/s" in text
    assert (out / "train_32.npy").is_file() and (out / "test_32_ids.csv").is_file()
    assert main(["preprocess", str(synth_dir), "--size", "32", "--out", str(out), "--split", "test",
                 "--no-progress"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_cli_skips_a_split_without_parquets_and_fails_without_any(tmp_path, capsys):
    folder = tmp_path / "data"
    data.write_image_parquet(folder / "test_image_data_0.parquet", ["Test_0", "Test_1"], strokes(2, seed=5))
    assert main(["preprocess", str(folder), "--out", str(tmp_path / "c"), "--size", "16", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "note: skipping train" in text and "test: 2 images" in text
    assert main(["preprocess", str(tmp_path / "c"), "--out", str(tmp_path / "d"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no train_image_data" in err and len(err.strip().splitlines()) == 1
    assert main(["preprocess", str(tmp_path / "missing"), "--out", str(tmp_path / "d")]) == 2
    assert "data folder not found" in capsys.readouterr().err
