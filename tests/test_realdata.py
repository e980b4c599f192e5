"""Real crops as competition folders: import-crops, the split, the placement, and a tiny train + evaluate."""
from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from bengali_kit.cli import main
from bengali_kit.components import COMPONENTS
from bengali_kit.data import image_parquets, read_images, read_test_csv, read_train_csv
from bengali_kit.errors import DataError
from bengali_kit.realdata import load_crops, place_crops, split_by_triple

SLICE = 300


@pytest.fixture(scope="module")
def npz(real_slice_npz):
    return real_slice_npz


@pytest.fixture(scope="module")
def imported(npz, tmp_path_factory):
    out = tmp_path_factory.mktemp("real") / "crops"
    rc = main(["import-crops", str(npz), str(out), "--limit", str(SLICE), "--files", "1", "--seed", "3"])
    assert rc == 0
    return out


def _triples(df: pd.DataFrame) -> set:
    return set(map(tuple, df[list(COMPONENTS)].to_numpy().tolist()))


@pytest.mark.slow
def test_import_writes_competition_folders(imported, npz):
    crops = load_crops(npz, limit=SLICE)
    train = read_train_csv(imported / "train" / "train.csv")
    val = read_train_csv(imported / "val" / "train.csv")
    # one image of each triple in val, the other four in train; nothing lost, nothing shared
    assert len(train) + len(val) == len(crops) == SLICE
    assert len(val) == len(_triples(val)) == SLICE // 5
    assert _triples(val) == _triples(train)
    assert not set(train.image_id) & set(val.image_id)
    # labels and grapheme strings travel with their image ids
    by_id = {i: (tuple(l), g) for i, l, g in zip(crops.image_ids, crops.labels.tolist(), crops.graphemes)}
    for df in (train, val):
        for row in df.itertuples():
            assert by_id[row.image_id] == ((row.grapheme_root, row.vowel_diacritic, row.consonant_diacritic),
                                           row.grapheme)
    for folder in ("train", "val"):
        d = imported / folder
        for name in ("class_map.csv", "test.csv", "sample_submission.csv", "test_labels.csv"):
            assert (d / name).is_file(), name
        ids, images = read_images(image_parquets(d, "train")[0])
        assert images.shape[1:] == (137, 236) and images.dtype == np.uint8
        assert set(ids) == set(read_train_csv(d / "train.csv").image_id)
        # the test split is the validation images, with their answer key
        test = read_test_csv(d / "test.csv")
        assert list(test.component[:3]) == ["consonant_diacritic", "grapheme_root", "vowel_diacritic"]
        key = pd.read_csv(d / "test_labels.csv")
        assert len(key) == len(val) and set(key.image_id) == set(test.image_id)
        assert sorted(map(tuple, key[list(COMPONENTS)].to_numpy().tolist())) == sorted(_triples(val))


def test_placed_crop_comes_back_through_crop_resize(npz):
    from bengali_kit.preprocess import crop_resize

    crops = load_crops(npz, limit=100)
    frames = place_crops(crops.images)
    assert frames.shape == (len(crops), 137, 236) and (frames[:, :5] == 255).all()  # margins stay white
    scores = []
    for frame, orig in zip(frames, crops.images):
        back = cv2.GaussianBlur(crop_resize(frame, size=64).astype(np.float32), (0, 0), 1.0)
        ref = cv2.GaussianBlur((255 - orig).astype(np.float32), (0, 0), 1.0)
        # the sample was cut with the public kernel, whose crops sit ~2 px off centre: allow small shifts
        scores.append(max(np.corrcoef(np.roll(back, (dy, dx), (0, 1)).ravel(), ref.ravel())[0, 1]
                          for dy in range(-3, 4) for dx in range(-3, 4)))
    assert np.mean(scores) > 0.85, np.mean(scores)
    assert np.percentile(scores, 10) > 0.6


def test_split_by_triple_is_stratified_and_seeded():
    labels = np.array([[1, 0, 0]] * 5 + [[2, 1, 0]] * 3 + [[3, 0, 0]], dtype=np.int64)
    tr, va = split_by_triple(labels, val_per_triple=2, seed=0)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(9))
    val_labels = [tuple(l) for l in labels[va].tolist()]
    assert val_labels.count((1, 0, 0)) == 2 and val_labels.count((2, 1, 0)) == 2
    assert (3, 0, 0) not in val_labels  # a single image stays in train
    assert np.array_equal(split_by_triple(labels, 2, seed=0)[1], va)
    assert any(not np.array_equal(split_by_triple(labels, 1, seed=s)[1], split_by_triple(labels, 1, 0)[1])
               for s in range(1, 6))


def test_bad_npz_is_a_data_error(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, images=np.zeros((2, 8, 8), np.uint8), grapheme_root=np.array([1, 2]))
    with pytest.raises(DataError, match="missing key"):
        load_crops(bad)
    out = tmp_path / "o"
    assert main(["import-crops", str(bad), str(out)]) == 2


def test_import_refuses_non_empty_folder(npz, tmp_path):
    (tmp_path / "x.txt").write_text("mine")
    assert main(["import-crops", str(npz), str(tmp_path), "--limit", "10"]) == 2


@pytest.mark.slow
def test_import_overwrite_replaces_train_and_val_whole(npz, tmp_path):
    out = tmp_path / "o"
    assert main(["import-crops", str(npz), str(out), "--limit", "40", "--files", "2"]) == 0
    assert (out / "train" / "train_image_data_1.parquet").is_file()
    (out / "notes.txt").write_text("mine")
    (out / "train" / "stale.txt").write_text("inside a folder the kit owns")
    assert main(["import-crops", str(npz), str(out), "--limit", "40", "--files", "1", "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [".bengali_kit.json", "notes.txt", "train", "val"]
    assert (out / "notes.txt").read_text() == "mine"
    competition = {"train.csv", "train_image_data_0.parquet", "test.csv", "test_image_data_0.parquet",
                   "class_map.csv", "sample_submission.csv", "test_labels.csv"}
    # one writer for synth and import-crops: exactly the competition's files, no stale parquet; a user's
    # file inside train/ is not the kit's and is kept (issue 27: --overwrite replaces only what the kit made)
    assert {p.name for p in (out / "train").iterdir()} == competition | {"stale.txt"}
    assert (out / "train" / "stale.txt").read_text() == "inside a folder the kit owns"
    assert {p.name for p in (out / "val").iterdir()} == competition
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_tiny_train_and_evaluate_on_real_crops(imported, capsys):
    import torch

    from bengali_kit.evaluation import evaluate
    from bengali_kit.train import TrainConfig, train

    torch.set_num_threads(2)
    run = train(TrainConfig(data_dir=str(imported / "train"), out_dir=str(imported / "run"), image_size=32,
                            batch_size=8, epochs=1, max_steps=2, progress=False, cutmix_p=0.0,
                            preprocess_workers=1))
    res = evaluate(imported / "val", run / "best.pt", all_images=True, progress=False)
    assert res.n_images == SLICE // 5
    assert set(res.scores) == {*COMPONENTS, "weighted"} and 0.0 <= res.scores["weighted"] <= 1.0
    rc = main(["evaluate", "--data", str(imported / "val"), "--checkpoint", str(run / "best.pt"), "--all",
               "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0 and "weighted recall" in out and "worst classes" in out


def test_unseen_triples_are_held_out_whole_and_every_class_stays_in_training(real_slice_npz, tmp_path):
    from bengali_kit.realdata import holdout_triples, import_crops

    labels = load_crops(real_slice_npz).labels
    held = holdout_triples(labels, 0.1, seed=0)
    triples = {tuple(t) for t in labels[held]}
    assert len(triples) == 6 and not triples & {tuple(t) for t in labels[~held]}  # whole triples: 10 % of 60
    for c in range(3):
        assert set(labels[held, c]) <= set(labels[~held, c])  # every held-out class is still trained on
    assert np.array_equal(held, holdout_triples(labels, 0.1, seed=0))
    assert not np.array_equal(held, holdout_triples(labels, 0.1, seed=1))
    rep = import_crops(real_slice_npz, tmp_path / "r", unseen_fraction=0.1, files=1)
    assert (rep.n_train, rep.n_val, rep.n_unseen, rep.n_unseen_triples) == (216, 54, 30, 6)
    frames = {name: pd.read_csv(tmp_path / "r" / name / "train.csv") for name in ("train", "val", "unseen")}
    key = lambda df: set(map(tuple, df[list(COMPONENTS)].to_numpy()))  # noqa: E731
    assert not key(frames["unseen"]) & (key(frames["train"]) | key(frames["val"]))
    assert key(frames["val"]) <= key(frames["train"])


def test_val_per_triple_zero_puts_every_crop_in_train(real_slice_npz, tmp_path, capsys):
    """``--val-per-triple 0`` (to train a model on all the crops): one train/ folder, its own test split."""
    rc = main(["import-crops", str(real_slice_npz), str(tmp_path / "all"), "--val-per-triple", "0",
               "--limit", "100", "--files", "1"])
    assert rc == 0
    assert "100 crops of 20 triples: 100 -> " in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == [".bengali_kit.json", "train"]
    train = read_train_csv(tmp_path / "all" / "train" / "train.csv")
    key = pd.read_csv(tmp_path / "all" / "train" / "test_labels.csv")
    test = read_test_csv(tmp_path / "all" / "train" / "test.csv")
    assert len(train) == 100 and set(key.image_id) == set(test.image_id)
    assert sorted(_triples(key)) == sorted(_triples(train)) and len(key) == 100
    ids, images = read_images(image_parquets(tmp_path / "all" / "train", "test")[0])
    assert len(ids) == 100 and images.dtype == np.uint8


def _split_slice(real_slice_npz, tmp_path, n: int = 2):
    """The vendored slice cut into ``n`` npz files by position (the way the shared files hold disjoint crops)."""
    z = np.load(real_slice_npz)
    paths = []
    for k in range(n):
        path = tmp_path / f"part{k}.npz"
        np.savez(path, **{key: z[key][k::n] for key in z.files})
        paths.append(path)
    return paths


@pytest.mark.slow
def test_import_reads_several_files_as_one_set(real_slice_npz, tmp_path, capsys):
    """Two npz files give the same folders as the one file they were cut from (same union, same split)."""
    parts = _split_slice(real_slice_npz, tmp_path)
    assert main(["import-crops", *map(str, parts), str(tmp_path / "two"), "--files", "1", "--val-per-triple", "2"]) == 0
    assert main(["import-crops", str(real_slice_npz), str(tmp_path / "one"), "--files", "1",
                 "--val-per-triple", "2"]) == 0
    assert "300 crops of 60 triples: 180 -> " in capsys.readouterr().out
    for folder in ("train", "val"):
        two, one = (read_train_csv(tmp_path / d / folder / "train.csv") for d in ("two", "one"))
        assert sorted(two.image_id) != [] and len(two) == len(one)
        assert _triples(two) == _triples(one)
    both = set(read_train_csv(tmp_path / "two" / "train" / "train.csv").image_id)
    assert both & set(np.load(parts[0])["image_id"]) and both & set(np.load(parts[1])["image_id"])


def test_an_image_id_in_two_files_is_one_line_naming_both(real_slice_npz, tmp_path, capsys):
    parts = _split_slice(real_slice_npz, tmp_path)
    rc = main(["import-crops", str(parts[0]), str(real_slice_npz), str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc != 0 and len(err.splitlines()) == 1
    assert str(real_slice_npz) in err and str(parts[0]) in err and "also in" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_exclude_leaves_listed_crops_out_and_options_apply_to_the_union(real_slice_npz, tmp_path, capsys):
    z = np.load(real_slice_npz)
    listed = tmp_path / "ids.txt"
    listed.write_text("image_id\n" + "\n".join(z["image_id"][:10]) + "\n")
    parts = _split_slice(real_slice_npz, tmp_path)
    rc = main(["import-crops", *map(str, parts), str(tmp_path / "out"), "--exclude", str(listed), "--files", "1",
               "--limit", "150", "--seed", "1"])
    assert rc == 0 and "10 crops left out" in capsys.readouterr().out
    ids = set()
    for folder in ("train", "val"):
        ids |= set(read_train_csv(tmp_path / "out" / folder / "train.csv").image_id)
    assert not ids & set(z["image_id"][:10]) and 140 <= len(ids) <= 150


@pytest.mark.slow
def test_train_per_triple_gives_nested_subsets_and_keeps_validation(real_slice_npz, tmp_path):
    from bengali_kit.realdata import import_crops

    reps = {k: import_crops(real_slice_npz, tmp_path / f"k{k}", val_per_triple=1, train_per_triple=k, files=1)
            for k in (1, 3)}
    train = {k: read_train_csv(tmp_path / f"k{k}" / "train" / "train.csv") for k in reps}
    val = {k: read_train_csv(tmp_path / f"k{k}" / "val" / "train.csv") for k in reps}
    assert (reps[1].n_train, reps[3].n_train) == (60, 180)
    assert train[1].groupby(list(COMPONENTS)).size().max() == 1
    assert set(train[1].image_id) < set(train[3].image_id)
    assert list(val[1].image_id) == list(val[3].image_id)


HELDOUT = "real_heldout_64"


def test_the_held_out_slice_is_one_crop_per_triple_and_its_ids_are_listed(reference_dir):
    from conftest import TEST_DATA

    crops = load_crops(TEST_DATA / f"{HELDOUT}.npz")
    listed = (TEST_DATA / f"{HELDOUT}_ids.txt").read_text().split()
    assert listed[0] == "image_id" and sorted(listed[1:]) == sorted(crops.image_ids)
    counts = pd.read_csv(reference_dir / "grapheme_counts.csv")
    assert len(crops) == len(counts) == 1292
    assert _triples(pd.DataFrame(crops.labels, columns=list(COMPONENTS))) == _triples(counts)


@pytest.mark.slow
def test_the_held_out_slice_comes_from_real_more_and_not_from_the_sample(real_sample_npz):
    """The slice is a copy of 1,292 crops of real_more_64.npz and shares no id with real_sample_64.npz, on
    which the shipped real model of the previous round trained (needs ../shared)."""
    from conftest import TEST_DATA

    heldout = np.load(TEST_DATA / f"{HELDOUT}.npz")
    more = np.load(real_sample_npz.parent / "real_more_64.npz")
    position = {i: k for k, i in enumerate(more["image_id"])}
    rows = [position[i] for i in heldout["image_id"]]
    assert np.array_equal(more["images"][rows], heldout["images"])
    assert not set(heldout["image_id"]) & set(np.load(real_sample_npz)["image_id"])
