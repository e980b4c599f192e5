"""Competition-format IO: parquet reading (fast path, fallback, batching) and every bad-input error."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bengali_kit import data
from bengali_kit.errors import DataError

H, W, P = data.IMAGE_HEIGHT, data.IMAGE_WIDTH, data.N_PIXELS
# Writing and reading a 32,332-column parquet costs 1-7 s of CPU whatever its rows: the tests that do are
# marked slow (CI runs them; the quick loop `-m "not slow"` keeps the schema and csv checks).


def _images(n: int, seed: int = 0) -> np.ndarray:
    """Distinct images: random values, so a transposed or shifted read cannot pass."""
    return np.random.default_rng(seed).integers(0, 256, (n, H, W), dtype=np.uint8)


def _table(ids, images: np.ndarray, pixel_type: pa.DataType | None = None) -> pa.Table:
    pixel_type = pixel_type or pa.uint8()
    cols = images.reshape(len(images), P).T
    arrays = [pa.array(list(ids), type=pa.string())] + [pa.array(c, type=pixel_type) for c in cols]
    return pa.Table.from_arrays(arrays, names=["image_id", *data.PIXEL_COLUMNS])


@pytest.fixture(scope="module")
def good_table() -> pa.Table:
    return _table([f"Train_{i}" for i in range(6)], _images(6))


def _write(path, table, **kw):
    pq.write_table(table, path, **kw)
    return path


# ---------------------------------------------------------------- reading good files
@pytest.mark.slow
def test_round_trip_and_batches_of_a_size_that_does_not_divide_n(tmp_path):
    ids, images = [f"Train_{i}" for i in range(7)], _images(7, seed=1)
    path = tmp_path / "train_image_data_0.parquet"
    data.write_image_parquet(path, ids, images, row_group_size=4)  # row groups of 4 and 3
    assert data.count_images(path) == 7
    got = data.read_images(path)
    assert got.images.dtype == np.uint8 and got.images.shape == (7, H, W)
    np.testing.assert_array_equal(got.images, images)
    assert got.ids.tolist() == ids
    batches = list(data.iter_image_batches(path, batch_size=3))
    assert all(1 <= len(b.ids) <= 3 and len(b.ids) == len(b.images) for b in batches)
    np.testing.assert_array_equal(np.concatenate([b.images for b in batches]), images)
    assert np.concatenate([b.ids for b in batches]).tolist() == ids


@pytest.mark.slow
def test_one_big_row_group_is_split_into_batches(tmp_path):
    ids, images = [f"T{i}" for i in range(10)], _images(10, seed=2)
    path = _write(tmp_path / "one_group.parquet", _table(ids, images), row_group_size=100)
    batches = list(data.iter_image_batches(path, batch_size=3))
    assert [len(b.ids) for b in batches] == [3, 3, 3, 1]
    np.testing.assert_array_equal(np.concatenate([b.images for b in batches]), images)
    assert np.concatenate([b.ids for b in batches]).tolist() == ids


@pytest.mark.slow
def test_pandas_index_column_is_ignored(tmp_path, good_table):
    table = good_table.append_column("__index_level_0__", pa.array(np.arange(6, dtype=np.int64)))
    path = _write(tmp_path / "with_index.parquet", table)
    np.testing.assert_array_equal(np.concatenate([b.images for b in data.iter_image_batches(path, 4)]), _images(6))


@pytest.mark.slow
def test_empty_parquet_reads_as_zero_images(tmp_path):
    path = tmp_path / "empty.parquet"
    data.write_image_parquet(path, [], np.zeros((0, H, W), np.uint8))
    got = data.read_images(path)
    assert got.images.shape == (0, H, W) and len(got.ids) == 0


def test_write_image_parquet_rejects_bad_arrays(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        data.write_image_parquet(tmp_path / "x.parquet", ["a"], np.zeros((1, H, W), np.float32))
    with pytest.raises(ValueError, match="ids"):
        data.write_image_parquet(tmp_path / "x.parquet", ["a", "b"], np.zeros((1, H, W), np.uint8))
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- bad parquets
def test_missing_file(tmp_path):
    for fn in (data.read_images, data.count_images, lambda p: list(data.iter_image_batches(p))):
        with pytest.raises(DataError, match="file not found") as err:
            fn(tmp_path / "nope.parquet")
        assert "nope.parquet" in str(err.value)


def test_not_a_parquet(tmp_path):
    path = tmp_path / "train_image_data_0.parquet"
    path.write_bytes(b"image_id,0,1\nTrain_0,1,2\n")
    with pytest.raises(DataError, match="not a readable parquet") as err:
        data.read_images(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_wrong_first_column(tmp_path, good_table):
    table = good_table.rename_columns(["id", *data.PIXEL_COLUMNS])
    with pytest.raises(DataError, match="first column must be 'image_id'"):
        data.read_images(_write(tmp_path / "bad.parquet", table))


def test_wrong_pixel_count(tmp_path, good_table):
    table = good_table.select(list(range(1 + 100)))  # a 100-pixel image
    with pytest.raises(DataError, match="expected 32332 pixel columns.*got 100"):
        data.read_images(_write(tmp_path / "bad.parquet", table))


@pytest.mark.slow
def test_misnamed_pixel_columns(tmp_path, good_table):
    names = ["image_id", *data.PIXEL_COLUMNS]
    names[5], names[6] = names[6], names[5]
    with pytest.raises(DataError, match="named '0'..'32331' in order"):
        data.read_images(_write(tmp_path / "bad.parquet", good_table.rename_columns(names)))


@pytest.mark.slow
@pytest.mark.parametrize("bad_type", [pa.int64(), pa.float64()])  # float64: what pandas makes of NaN pixels
def test_non_uint8_pixels(tmp_path, good_table, bad_type):
    i = good_table.schema.get_field_index("777")
    table = good_table.set_column(i, "777", good_table.column(i).cast(bad_type))
    with pytest.raises(DataError, match=f"must be uint8, found {bad_type}"):
        data.read_images(_write(tmp_path / "bad.parquet", table))


@pytest.mark.slow
@pytest.mark.parametrize("reader", ["read_images", "iter_image_batches"])
def test_null_pixels_in_a_uint8_column(tmp_path, good_table, reader):
    i = good_table.schema.get_field_index("3000")
    values = good_table.column(i).to_pylist()
    values[2] = None
    table = good_table.set_column(i, "3000", pa.array(values, type=pa.uint8()))
    path = _write(tmp_path / "bad.parquet", table)
    with pytest.raises(DataError, match="pixel column '3000' has missing") as err:
        if reader == "read_images":
            data.read_images(path)
        else:
            list(data.iter_image_batches(path, batch_size=4))
    assert "bad.parquet" in str(err.value)


@pytest.mark.slow
def test_null_image_id(tmp_path, good_table):
    table = good_table.set_column(0, "image_id", pa.array(["a", None, "c", "d", "e", "f"], type=pa.string()))
    with pytest.raises(DataError, match="image_id has missing values"):
        data.read_images(_write(tmp_path / "bad.parquet", table))


@pytest.mark.slow
def test_duplicate_image_ids(tmp_path, good_table):
    table = good_table.set_column(0, "image_id", pa.array(["a", "b", "c", "b", "e", "f"]))
    with pytest.raises(DataError, match="1 duplicate image_id.*'b'"):
        data.read_images(_write(tmp_path / "bad.parquet", table))


@pytest.mark.slow
def test_bad_batch_size(tmp_path, good_table):
    path = _write(tmp_path / "ok.parquet", good_table)
    with pytest.raises(ValueError, match="batch_size"):
        list(data.iter_image_batches(path, batch_size=0))


# ---------------------------------------------------------------- folder layout
def test_image_parquets_in_numeric_order(tmp_path):
    for k in (10, 2, 0):
        (tmp_path / f"train_image_data_{k}.parquet").touch()
    (tmp_path / "test_image_data_0.parquet").touch()
    (tmp_path / "train_image_data_x.parquet").touch()
    assert [p.name for p in data.image_parquets(tmp_path, "train")] == [
        "train_image_data_0.parquet", "train_image_data_2.parquet", "train_image_data_10.parquet"]
    assert [p.name for p in data.image_parquets(tmp_path, "test")] == ["test_image_data_0.parquet"]
    with pytest.raises(ValueError, match="split"):
        data.image_parquets(tmp_path, "val")
    with pytest.raises(DataError, match="data folder not found"):
        data.image_parquets(tmp_path / "missing", "train")
    (tmp_path / "test_image_data_0.parquet").unlink()
    with pytest.raises(DataError, match="no test_image_data"):
        data.image_parquets(tmp_path, "test")


# ---------------------------------------------------------------- csv files
def _train_csv(tmp_path, text: str):
    path = tmp_path / "train.csv"
    path.write_text(text, encoding="utf-8")
    return path


HEADER = "image_id,grapheme_root,vowel_diacritic,consonant_diacritic,grapheme\n"


def test_read_train_csv_dtypes(tmp_path):
    df = data.read_train_csv(_train_csv(tmp_path, HEADER + "Train_0,15,9,5,ক্ট্রো\nTrain_1,167,10,6,x\n"))
    assert df["grapheme_root"].dtype == np.int64 and df["image_id"].tolist() == ["Train_0", "Train_1"]
    np.testing.assert_array_equal(data.labels_array(df), [[15, 9, 5], [167, 10, 6]])


@pytest.mark.parametrize("row, match", [
    ("Train_0,168,0,0,x", "grapheme_root: 168 \\(expected 0..167\\)"),
    ("Train_0,0,11,0,x", "vowel_diacritic: 11"),
    ("Train_0,0,0,7,x", "consonant_diacritic: 7"),
    ("Train_0,-1,0,0,x", "grapheme_root: -1"),
    ("Train_0,1.5,0,0,x", "grapheme_root: 1.5"),
    ("Train_0,,0,0,x", "grapheme_root has missing values"),
    ("Train_0,abc,0,0,x", "bad value"),
])
def test_train_csv_labels_out_of_range(tmp_path, row, match):
    path = _train_csv(tmp_path, HEADER + "Train_9,1,1,1,y\n" + row + "\n")
    with pytest.raises(DataError, match=match) as err:
        data.read_train_csv(path)
    assert str(path) in str(err.value)


def test_train_csv_missing_column_and_duplicates(tmp_path):
    with pytest.raises(DataError, match="missing column\\(s\\) vowel_diacritic"):
        data.read_train_csv(_train_csv(tmp_path, "image_id,grapheme_root,consonant_diacritic\nT0,1,1\n"))
    with pytest.raises(DataError, match="duplicate image_id 'T0'"):
        data.read_train_csv(_train_csv(tmp_path, HEADER + "T0,1,1,1,x\nT0,2,2,2,y\n"))
    with pytest.raises(DataError, match="file not found"):
        data.read_train_csv(tmp_path / "none.csv")
    with pytest.raises(DataError, match="not a readable csv"):
        data.read_train_csv(_train_csv(tmp_path, ""))


def test_labels_must_have_images(tmp_path):
    labels = data.read_train_csv(_train_csv(tmp_path, HEADER + "T0,1,1,1,x\nT1,2,2,2,y\nT7,0,0,0,z\n"))
    data.check_labels_match_images(labels, np.array(["T0", "T1", "T7", "T8"]), tmp_path / "train.csv")
    with pytest.raises(DataError, match="1 image_id\\(s\\) have no image.*'T7'") as err:
        data.check_labels_match_images(labels, np.array(["T0", "T1"]), tmp_path / "train.csv")
    assert "train.csv" in str(err.value)


def test_test_csv_and_sample_submission(tmp_path, reference_dir):
    test = data.read_test_csv(reference_dir / "test.csv")
    assert set(test["component"]) == {"grapheme_root", "vowel_diacritic", "consonant_diacritic"}
    sub = data.read_sample_submission(reference_dir / "sample_submission.csv")
    assert sub["target"].dtype == np.int64 and sub["row_id"].tolist() == test["row_id"].tolist()
    bad = tmp_path / "test.csv"
    bad.write_text("row_id,image_id,component\nTest_0_x,Test_0,grapheme\n", encoding="utf-8")
    with pytest.raises(DataError, match="unknown component"):
        data.read_test_csv(bad)
    bad.write_text("row_id,image_id\nTest_0_x,Test_0\n", encoding="utf-8")
    with pytest.raises(DataError, match="missing column\\(s\\) component"):
        data.read_test_csv(bad)


@pytest.mark.slow
def test_a_damaged_page_is_one_line_naming_the_file(tmp_path):
    """A flipped page header deep in the file: pyarrow's multi-line message becomes one line."""
    path = tmp_path / "test_image_data_0.parquet"
    data.write_image_parquet(path, ["a", "b", "c"], _images(3, seed=4))
    offset = pq.ParquetFile(path).metadata.row_group(0).column(5000).data_page_offset
    raw = bytearray(path.read_bytes())
    raw[offset:offset + 24] = b"\xff" * 24
    path.write_bytes(bytes(raw))
    assert data.count_images(path) == 3  # the footer is intact: the damage shows only when pixels are decoded
    for read in (data.read_images, lambda p: list(data.iter_image_batches(p))):
        with pytest.raises(DataError) as err:
            read(path)
        msg = str(err.value)
        assert msg.startswith(f"{path}: cannot decode parquet data, the file is damaged (")
        assert "\n" not in msg and msg.isprintable() and msg.endswith(")")


@pytest.mark.slow
def test_parquet_ids_reads_the_id_column_only(tmp_path):
    path = tmp_path / "x.parquet"
    data.write_image_parquet(path, ["b", "a", "c"], _images(3))
    assert data.parquet_ids(path).tolist() == ["b", "a", "c"]


def test_vendored_reference_files_are_the_real_ones():
    """tests/data (used on a fresh clone) holds byte copies of ../shared/reference and a slice of its crops."""
    from conftest import SHARED_REFERENCE, TEST_DATA

    if not (SHARED_REFERENCE / "real_sample_64.npz").is_file():
        pytest.skip(f"needs {SHARED_REFERENCE} to compare with (absent on a fresh clone)")
    for name in ("class_map.csv", "test.csv", "sample_submission.csv", "grapheme_counts.csv"):
        assert (TEST_DATA / name).read_bytes() == (SHARED_REFERENCE / name).read_bytes(), name
    with np.load(SHARED_REFERENCE / "real_sample_64.npz") as full, np.load(TEST_DATA / "real_slice_64.npz") as part:
        assert sorted(part.files) == sorted(full.files)
        index = {i: k for k, i in enumerate(full["image_id"].tolist())}
        rows = np.array([index[i] for i in part["image_id"].tolist()])
        assert len(rows) == 300 and (np.diff(rows) > 0).all()  # file order kept
        for key in full.files:
            np.testing.assert_array_equal(part[key], full[key][rows])
            assert part[key].dtype == full[key].dtype
