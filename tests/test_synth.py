"""Synthetic competition folder: files and schema like the real ones, realistic images, determinism, fonts."""
from __future__ import annotations

import filecmp
import pickle
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from bengali_kit import competition_folder, synthetic
from bengali_kit.cli import main
from bengali_kit.components import (
    COMPONENTS,
    N_CLASSES,
    load_class_map,
    read_grapheme_counts,
)
from bengali_kit.data import (
    IMAGE_HEIGHT,
    IMAGE_WIDTH,
    INCOMPLETE_MARKER,
    image_parquets,
    labels_array,
    read_images,
    read_sample_submission,
    read_test_csv,
    read_train_csv,
    write_image_parquet,
)
from bengali_kit.errors import DataError
from bengali_kit.synthetic import renderer

COMPETITION_FILES = {
    "train.csv", "test.csv", "class_map.csv", "sample_submission.csv", "test_labels.csv",
    *(f"{split}_image_data_{k}.parquet" for split in ("train", "test") for k in range(2)),
}


@pytest.fixture(scope="module")
def fonts():
    return synthetic.find_bengali_fonts()


@pytest.fixture(scope="module")
def train_images(synth_dir):
    parts = [read_images(p) for p in image_parquets(synth_dir, "train")]
    return np.concatenate([p.ids for p in parts]), np.concatenate([p.images for p in parts])


def test_folder_has_exactly_the_competition_files_and_their_manifest(synth_dir):
    assert {p.name for p in synth_dir.iterdir()} == COMPETITION_FILES | {competition_folder.FOLDER_MANIFEST}
    assert competition_folder.kit_written_files(synth_dir) == COMPETITION_FILES


def test_csv_layouts_match_the_real_files(synth_dir, reference_dir):
    train = pd.read_csv(synth_dir / "train.csv")
    assert list(train.columns) == ["image_id", *COMPONENTS, "grapheme"]
    assert train["image_id"].tolist() == [f"Train_{i}" for i in range(400)]
    assert all(train[c].dtype == np.int64 for c in COMPONENTS)

    real_test = pd.read_csv(reference_dir / "test.csv")
    test = read_test_csv(synth_dir / "test.csv")
    assert list(test.columns) == list(real_test.columns)
    assert len(test) == 3 * 60
    # the real order of the three rows per image, and the row_id spelling
    assert test["component"].tolist()[:3] == real_test["component"].tolist()[:3]
    assert test["row_id"].tolist()[:6] == real_test["row_id"].tolist()[:6]
    assert (test["row_id"] == test["image_id"] + "_" + test["component"]).all()

    real_sub = pd.read_csv(reference_dir / "sample_submission.csv")
    sub = read_sample_submission(synth_dir / "sample_submission.csv")
    assert list(sub.columns) == list(real_sub.columns)
    assert sub["row_id"].tolist() == test["row_id"].tolist() and (sub["target"] == 0).all()
    assert sub["target"].dtype == real_sub["target"].dtype

    assert (synth_dir / "class_map.csv").read_bytes() == (reference_dir / "class_map.csv").read_bytes()

    key = pd.read_csv(synth_dir / "test_labels.csv")
    assert list(key.columns) == ["image_id", *COMPONENTS]
    assert key["image_id"].tolist() == test["image_id"].unique().tolist()


def test_labels_in_range_long_tailed_and_spelled_like_the_real_data(synth_dir):
    train = read_train_csv(synth_dir / "train.csv")
    y = labels_array(train)
    for j, n in enumerate(N_CLASSES):
        assert y[:, j].min() >= 0 and y[:, j].max() < n
    counts = read_grapheme_counts()
    real = {tuple(t): g for t, g in zip(counts[list(COMPONENTS)].to_numpy(), counts["grapheme"])}
    assert all(real[tuple(t)] == g for t, g in zip(y, train["grapheme"]))  # real triples, real spelling
    # long-tailed roots: many distinct roots, the most common far above the median
    root_counts = np.bincount(y[:, 0], minlength=168)
    assert (root_counts > 0).sum() > 80
    assert root_counts.max() >= 4 * np.median(root_counts[root_counts > 0])
    key = pd.read_csv(synth_dir / "test_labels.csv")
    assert all(key[c].between(0, n - 1).all() for c, n in zip(COMPONENTS, N_CLASSES))


def test_sample_labels_follow_the_real_frequencies():
    y = synthetic.sample_labels(20000, np.random.default_rng(0))
    assert y.shape == (20000, 3) and y.dtype == np.int64
    counts = read_grapheme_counts()
    real = counts.groupby("grapheme_root")["count"].sum()
    expected = real / real.sum()
    got = pd.Series(np.bincount(y[:, 0], minlength=168))[expected.index] / len(y)
    assert np.abs(got - expected).max() < 0.01
    assert got.idxmax() == expected.idxmax()  # root 72 in the real data


def test_parquet_schema_and_images(synth_dir, train_images):
    for split, n in (("train", 400), ("test", 60)):
        paths = image_parquets(synth_dir, split)
        assert [p.name for p in paths] == [f"{split}_image_data_{k}.parquet" for k in range(2)]
        rows = [pq.ParquetFile(p).metadata.num_rows for p in paths]
        assert rows == [n // 2, n // 2]
        schema = pq.ParquetFile(paths[0]).schema_arrow
        assert schema.names[0] == "image_id" and schema.names[1:] == [str(i) for i in range(IMAGE_HEIGHT * IMAGE_WIDTH)]
    ids, images = train_images
    assert ids.tolist() == [f"Train_{i}" for i in range(400)]
    assert images.shape == (400, IMAGE_HEIGHT, IMAGE_WIDTH) and images.dtype == np.uint8
    # white paper, dark ink, every image has a visible glyph
    assert np.median(images, axis=(1, 2)).min() >= 245
    assert (images.min(axis=(1, 2)) < 100).all()
    ink = images < 128
    assert (ink.mean(axis=(1, 2)) > 0.005).all()
    # glyph height 40-90% of the frame on average, at varied positions
    rows = ink.any(axis=2)
    height = IMAGE_HEIGHT - np.argmax(rows, 1) - np.argmax(rows[:, ::-1], 1)
    assert 0.4 * IMAGE_HEIGHT < np.median(height) < 0.9 * IMAGE_HEIGHT
    centres = np.array([np.flatnonzero(r).mean() for r in ink.any(axis=1)])
    assert centres.std() > 10
    assert len({im.tobytes() for im in images}) == len(images)


@pytest.mark.slow
def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    kw = dict(train_rows=30, test_rows=9, files=2, progress=False)
    a = synthetic.write_competition_folder(tmp_path / "a", seed=3, **kw)
    b = synthetic.write_competition_folder(tmp_path / "b", seed=3, workers=2, **kw)  # workers never change bytes
    c = synthetic.write_competition_folder(tmp_path / "c", seed=4, **kw)
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert not filecmp.cmp(a / "train_image_data_0.parquet", c / "train_image_data_0.parquet", shallow=False)
    assert not filecmp.cmp(a / "train.csv", c / "train.csv", shallow=False)


@pytest.mark.slow
def test_refuses_non_empty_folder_unless_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match="not empty"):
        synthetic.write_competition_folder(out, train_rows=4, test_rows=2, files=1, progress=False)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    synthetic.write_competition_folder(out, train_rows=4, test_rows=2, files=1, progress=False, overwrite=True)
    assert (out / "mine.txt").read_text() == "keep me" and (out / "train.csv").is_file()


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError):
        synthetic.write_competition_folder(tmp_path / "x", train_rows=0, progress=False)
    with pytest.raises(ValueError):
        synthetic.write_competition_folder(tmp_path / "y", train_rows=3, test_rows=3, files=4, progress=False)


@pytest.mark.slow
def test_streamed_parquet_equals_the_array_one(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(11, IMAGE_HEIGHT, IMAGE_WIDTH), dtype=np.uint8)
    ids = [f"Train_{i}" for i in range(11)]
    write_image_parquet(tmp_path / "a.parquet", ids, images, row_group_size=4)
    # batches that straddle row groups: the same bytes
    write_image_parquet(tmp_path / "b.parquet", ids, iter([images[:3], images[3:9], images[9:]]), row_group_size=4)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    got = read_images(tmp_path / "b.parquet")
    assert got.ids.tolist() == ids and np.array_equal(got.images, images)
    with pytest.raises(ValueError, match="11 ids for 9 images"):
        write_image_parquet(tmp_path / "c.parquet", ids, iter([images[:9]]))
    assert not (tmp_path / "c.parquet").exists()


def test_folder_writer_failure_leaves_the_old_folder(tmp_path, synth_dir):
    out = tmp_path / "d"
    shutil.copytree(synth_dir, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def write(tmp):
        (tmp / "train.csv").write_text("half")
        raise DataError(tmp / "train_image_data_0.parquet", "cannot write: no space left on the device")

    with pytest.raises(DataError) as err:
        competition_folder.write_folders(out, overwrite=True, write=write)
    assert err.value.path == out / "train_image_data_0.parquet"  # named as in the target, not the temp folder
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no temporary folder left


def test_incomplete_folder_is_refused_by_readers(tmp_path, synth_dir):
    d = tmp_path / "d"
    shutil.copytree(synth_dir, d)
    assert image_parquets(d, "train")
    (d / INCOMPLETE_MARKER).touch()  # what an interrupted write_competition_files leaves
    with pytest.raises(DataError, match="incomplete"):
        image_parquets(d, "train")
    assert not (synth_dir / INCOMPLETE_MARKER).exists()  # a finished folder has no marker


def test_fonts_found_sorted_without_mitramono(fonts, tmp_path):
    names = [f.name for f in fonts]
    assert len(fonts) >= 2 and names == sorted(names)
    assert not any("MitraMono" in n for n in names)
    with pytest.raises(RuntimeError, match="apt-get install fonts-beng-extra"):
        synthetic.find_bengali_fonts([tmp_path])


@pytest.mark.slow
def test_holdout_fonts_are_disjoint(fonts, tmp_path, monkeypatch):
    train, test = synthetic.split_fonts(fonts)
    assert train and test and not set(train) & set(test) and set(train) | set(test) == set(fonts)
    used = {}
    real_init = synthetic.GraphemeRenderer.__post_init__

    def spy(self):
        real_init(self)
        used.setdefault("sets", []).append(set(self.fonts))

    monkeypatch.setattr(synthetic.GraphemeRenderer, "__post_init__", spy)
    synthetic.write_competition_folder(tmp_path / "h", train_rows=6, test_rows=3, files=1, holdout_fonts=True,
                                   progress=False)
    train_set, test_set = used["sets"]
    assert train_set == {str(f) for f in train} and test_set == {str(f) for f in test}
    assert not train_set & test_set


def _ink_width(renderer, text, font_index):
    g = renderer.glyph(text, font_index)
    cols = np.flatnonzero(g.max(axis=0) > 64)
    return cols[-1] - cols[0] + 1


def test_conjuncts_and_vowel_signs_are_shaped(fonts):
    r = synthetic.GraphemeRenderer(fonts)
    for i in range(len(fonts)):
        # a conjunct is one glyph, clearly narrower than its two consonants side by side
        assert _ink_width(r, "ক্ষ", i) < 0.8 * (_ink_width(r, "ক", i) + _ink_width(r, "ষ", i)), fonts[i].name
        # a vowel sign after a consonant gets no dotted circle: narrower than consonant + '◌ি' by most of a circle
        circle = _ink_width(r, "\u25cc", i)
        assert _ink_width(r, "কি", i) < _ink_width(r, "ক", i) + _ink_width(r, "\u25cc\u09bf", i) - 0.5 * circle
        # the i-kar is reordered before the consonant: 'ক' sits at the right end of 'কি' (unshaped: at the left)
        k, ki = r.glyph("ক", i) > 127, r.glyph("কি", i) > 127
        h, w = k.shape
        right = (k & ki[-h:, -w:]).sum() / k.sum()
        left = (k & ki[-h:, :w]).sum() / k.sum()
        assert right > left + 0.15, fonts[i].name


def test_thinning_gives_connected_one_pixel_centre_lines(fonts):
    import cv2

    bar = np.zeros((40, 60), np.uint8)
    bar[10:20, 5:55] = 1  # a 10 px thick bar: one line, inside the bar, along its middle
    sk = synthetic.thin(bar)
    assert sk.any() and (sk[bar == 0] == 0).all()
    assert (sk.sum(axis=0)[10:50] == 1).all() and set(np.flatnonzero(sk[:, 30])) <= {14, 15}
    r = synthetic.GraphemeRenderer(fonts)
    for i in range(len(fonts)):
        for text in ("ক্ষ", "ছে", "স্ত্রী"):
            glyph = (r.glyph(text, i) >= 128).astype(np.uint8)
            sk = r.skeleton(text, i) > 0
            # thinning keeps every stroke: no more pieces than the glyph has (a morphological skeleton breaks
            # strokes into many), and it lies inside the (slightly closed) glyph
            n_glyph = cv2.connectedComponents(glyph, connectivity=8)[0]
            n_skel = cv2.connectedComponents(sk.astype(np.uint8), connectivity=8)[0]
            assert n_skel <= n_glyph, (fonts[i].name, text)
            assert sk.sum() < 0.5 * glyph.sum()


def test_renderer_output_and_pickling(fonts):
    r = synthetic.GraphemeRenderer(fonts)
    text = load_class_map().compose(15, 1, 0)
    img = r.render(text, np.random.default_rng(0))
    assert img.shape == (IMAGE_HEIGHT, IMAGE_WIDTH) and img.dtype == np.uint8
    r2 = pickle.loads(pickle.dumps(r))
    assert not r2._glyphs  # caches are not shipped to workers
    assert np.array_equal(r2.render(text, np.random.default_rng(0)), img)
    assert not np.array_equal(r.render(text, np.random.default_rng(1)), img)


def test_render_steps_place_the_glyph_inside_the_frame(fonts):
    r = synthetic.GraphemeRenderer(fonts, height_frac=(0.9, 1.4), max_perspective=0.4)  # often too big: shrunk
    for seed in range(20):
        rng = np.random.default_rng(seed)
        shape = r.glyph("ক্ষ", 0).shape
        to_frame, box = r._fit_and_place(r._glyph_to_frame(shape, 3.0, rng), shape, rng)
        x0, y0, x1, y1 = box
        assert 0 < x0 < x1 < IMAGE_WIDTH and 0 < y0 < y1 < IMAGE_HEIGHT
        assert x1 - x0 <= 0.961 * IMAGE_WIDTH and y1 - y0 <= 0.961 * IMAGE_HEIGHT
        # the box is where the homography sends the glyph's tight corners
        assert np.allclose(renderer._tight_box(to_frame, shape, r._PAD), box)
        rx0, ry0, rx1, ry1 = renderer._frame_region(box, margin=4)
        assert 0 <= rx0 <= x0 and x1 <= rx1 <= IMAGE_WIDTH and 0 <= ry0 <= y0 and y1 <= ry1 <= IMAGE_HEIGHT


def test_random_offset_puts_a_box_inside_or_centres_it():
    rng = np.random.default_rng(0)
    for _ in range(50):
        shift = renderer._random_offset(-30.0, 50.0, 236, rng)
        assert 1 <= -30.0 + shift and 50.0 + shift <= 235
    assert renderer._random_offset(-120.0, 120.0, 236, rng) == pytest.approx(118.0)  # barely fits: centred


def test_project_inverts_a_homography():
    h = np.array([[1.1, 0.2, 5.0], [-0.1, 0.9, 3.0], [1e-3, -2e-3, 1.0]])
    x, y = np.meshgrid(np.arange(0, 50, 7, dtype=np.float32), np.arange(0, 30, 5, dtype=np.float32))
    fx, fy = renderer._project(h, x, y)
    bx, by = renderer._project(np.linalg.inv(h), fx, fy)
    assert fx.dtype == np.float32 and np.allclose(bx, x, atol=1e-3) and np.allclose(by, y, atol=1e-3)


def test_font_strokes_thicken_or_thin_but_never_erase(fonts):
    r = synthetic.GraphemeRenderer(fonts, stroke_steps=(2,))
    glyph = r.glyph("ক্ষ", 0)
    assert np.count_nonzero(r._font_strokes(glyph, np.random.default_rng(0))) > np.count_nonzero(glyph)
    r.stroke_steps = (-3,)
    hair = np.zeros_like(glyph)
    hair[20, 10:40] = 255  # one pixel wide: an erosion would leave nothing
    assert np.array_equal(r._font_strokes(hair, np.random.default_rng(0)), hair)


def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["synth", str(out), "--train-rows", "8", "--test-rows", "4", "--seed", "1", "--files", "1", "--no-progress"]
    assert main(args) == 0
    line = capsys.readouterr().out.strip()
    assert "8 train + 4 test" in line and "images/s" in line
    assert len(read_train_csv(out / "train.csv")) == 8
    assert main(args) == 2  # the folder is no longer empty
    assert "not empty" in capsys.readouterr().err
