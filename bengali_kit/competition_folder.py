"""The competition-folder writer: a folder of the competition's files, written whole or not at all.

One folder holds ``train.csv``, ``train_image_data_{k}.parquet``, ``test.csv`` (three rows per test image,
in the real component order), ``test_image_data_{k}.parquet``, ``class_map.csv``, ``sample_submission.csv``
and ``test_labels.csv`` (the answer key of the test images). ``synth`` and ``import-crops`` both write
through :func:`write_folders`: the files go into a temporary folder beside the target, renamed into place
at the end (with ``overwrite``: swapped for the old folder whole), so an interrupted or failed run leaves
either the old folder or nothing, never a mix, and no stale parquet of an earlier run survives.

Every folder written here carries a manifest, ``.bengali_kit.json``, listing the files the writer made.
``overwrite`` replaces only the files a valid manifest lists: anything else there (a user's notes, a cache
folder) is carried over. A folder with competition files but no manifest, such as the real competition
data, is refused, because names alone cannot tell the kit's ``train.csv`` from a user's.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .components import COMPONENTS, resource_path
from .data import INCOMPLETE_MARKER, write_image_parquet
from .errors import DataError
from .files import atomic_folder, atomic_write_bytes, atomic_write_text, copy_tree_linked, os_problem

__all__ = ["FOLDER_MANIFEST", "TEST_COMPONENT_ORDER", "file_slices", "test_csv", "is_competition_file",
           "kit_written_files", "write_competition_files", "write_folders"]

#: The manifest of a folder the kit wrote: which files are the kit's (what an ``overwrite`` may replace).
FOLDER_MANIFEST = ".bengali_kit.json"

#: Test rows per image, in the real test.csv order.
TEST_COMPONENT_ORDER: tuple[str, ...] = ("consonant_diacritic", "grapheme_root", "vowel_diacritic")

#: Images of one split: a uint8 array (n, 137, 236), or one iterable of such arrays per parquet file
#: (rows in order; streamed, e.g. as they are rendered).
Images = np.ndarray | Sequence[Iterable[np.ndarray]]


_COMPETITION_FILE = re.compile(
    r"(train|test)_image_data_\d+\.parquet|(train|test|class_map|sample_submission|test_labels)\.csv")


def is_competition_file(name: str) -> bool:
    """True for the names of the files a competition folder is made of (what an overwrite replaces)."""
    return _COMPETITION_FILE.fullmatch(name) is not None


def file_slices(n: int, files: int) -> list[slice]:
    """Rows of each of ``files`` parquet files of a split of ``n`` rows: contiguous, sizes differing by <= 1."""
    return [slice(k * n // files, (k + 1) * n // files) for k in range(files)]


def _csv_text(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, lineterminator="\n")


def test_csv(image_ids: Sequence[str]) -> pd.DataFrame:
    """The rows of test.csv for these test images: ``row_id, image_id, component``, in the real order."""
    ids = np.asarray(image_ids, dtype=object)
    rows = pd.DataFrame({
        "image_id": np.repeat(ids, len(TEST_COMPONENT_ORDER)),
        "component": np.tile(TEST_COMPONENT_ORDER, len(ids)),
    })
    rows.insert(0, "row_id", rows["image_id"] + "_" + rows["component"])
    return rows


def _check_labels(name: str, df: pd.DataFrame) -> None:
    missing = [c for c in ("image_id", *COMPONENTS) if c not in df.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {', '.join(missing)}")
    if len(df) == 0:
        raise ValueError(f"{name} has no rows")


def write_competition_files(folder: str | Path, train: pd.DataFrame, test_labels: pd.DataFrame,
                            train_images: Images, test_images: Images, files: int,
                            row_group_size: int = 2048, on_images: Callable[[int], None] | None = None) -> None:
    """Write one competition folder's files into ``folder`` (created if needed; normally a temporary one).

    ``train``: ``image_id``, the three labels (and e.g. ``grapheme``), one row per train image, written as
    train.csv. ``test_labels``: ``image_id`` and the three labels of the test images (test_labels.csv; test.csv
    and sample_submission.csv follow from its ids). Each split is cut into ``files`` parquets (fewer when
    it has fewer images; an array is cut by :func:`file_slices`, per-file iterables must match it).
    ``on_images(n)`` is called as images are written (progress). Until the last file is written the folder
    holds ``data.INCOMPLETE_MARKER``, which readers refuse (an interrupted write is never read as data).
    """
    if isinstance(files, bool) or not isinstance(files, (int, np.integer)) or files < 1:
        raise ValueError(f"files must be an integer >= 1, got {files!r}")
    _check_labels("train", train)
    _check_labels("test_labels", test_labels)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / INCOMPLETE_MARKER  # readers refuse the folder until the last file is written
    marker.touch()
    # csv files first (small), then the images
    atomic_write_bytes(folder / "class_map.csv", resource_path("class_map.csv").read_bytes())
    atomic_write_text(folder / "train.csv", _csv_text(train))
    rows = test_csv(test_labels["image_id"].astype(str).tolist())
    atomic_write_text(folder / "test.csv", _csv_text(rows))
    submission = pd.DataFrame({"row_id": rows["row_id"], "target": 0})
    atomic_write_text(folder / "sample_submission.csv", _csv_text(submission))
    atomic_write_text(folder / "test_labels.csv", _csv_text(test_labels[["image_id", *COMPONENTS]]))
    for split, df, images in (("train", train, train_images), ("test", test_labels, test_images)):
        ids = df["image_id"].astype(str).to_numpy()
        parts = file_slices(len(ids), min(int(files), len(ids)))
        if isinstance(images, np.ndarray):
            if len(images) != len(ids):
                raise ValueError(f"{split}: {len(ids)} image ids for {len(images)} images")
            per_file: Sequence[Iterable[np.ndarray]] = [[images[s]] for s in parts]
        else:
            per_file = images
            if len(per_file) != len(parts):
                raise ValueError(f"{split}: {len(per_file)} image sources for {len(parts)} parquet files")
        for k, (part, batches) in enumerate(zip(parts, per_file)):
            write_image_parquet(folder / f"{split}_image_data_{k}.parquet", ids[part],
                                _counted(batches, on_images), row_group_size=row_group_size)
    marker.unlink()


def _counted(batches: Iterable[np.ndarray], on_images: Callable[[int], None] | None) -> Iterable[np.ndarray]:
    for batch in batches:
        yield batch
        if on_images is not None:
            on_images(len(batch))


def _files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() or p.is_symlink())


def kit_written_files(folder: str | Path) -> set[str] | None:
    """The files (paths relative to ``folder``) its manifest says the kit wrote; None without a valid manifest."""
    try:
        data = json.loads((Path(folder) / FOLDER_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = data.get("files") if isinstance(data, dict) else None
    if data.get("writer") != "bengali_kit" or not isinstance(files, list) \
            or not all(isinstance(f, str) for f in files):
        return None
    return set(files)


def _carry_over(old: Path, new: Path, kits: set[str], prefix: str = "") -> None:
    """Give ``new`` every entry of ``old`` that is not a file of ``kits`` (hard links where possible).

    A user's file whose name the new folder also uses is refused (one line), never replaced.
    """
    for entry in old.iterdir():
        rel = prefix + entry.name
        target = new / entry.name
        if rel == FOLDER_MANIFEST or rel in kits:
            continue
        if entry.is_dir() and not entry.is_symlink() and any(k.startswith(rel + "/") for k in kits):
            made = not target.exists() and not target.is_symlink()
            if made:
                target.mkdir()
            if target.is_dir() and not target.is_symlink():
                _carry_over(entry, target, kits, rel + "/")
                if made and not any(target.iterdir()):  # nothing of the user's in it: the kit's folder goes
                    target.rmdir()
                continue
        elif not target.exists() and not target.is_symlink():
            copy_tree_linked(entry, target)
            continue
        raise DataError(entry, "is not a file the kit wrote, and the new folder has one of that name: "
                               "move it away first")


def write_folders(out_dir: str | Path, overwrite: bool, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp)`` on a temporary folder beside ``out_dir``, then rename it into place; returns ``out_dir``.

    A non-empty ``out_dir`` is refused unless ``overwrite``. With it, the files the old folder's manifest lists
    are replaced and every other file is carried over; a folder holding competition files but no manifest is
    refused before any work, and a user's file whose name the writer also uses is refused, never replaced.
    On any error or interruption the temporary folder is removed and ``out_dir`` is left as it was. A
    DataError about a file of the temporary folder names the file as it would be in ``out_dir``.
    """
    out = Path(out_dir)
    kits: set[str] = set()
    if overwrite and out.is_dir() and any(out.iterdir()):
        listed = kit_written_files(out)
        if listed is None and any(is_competition_file(Path(f).name) for f in _files_under(out)):
            # checked before any work: names alone cannot tell the kit's train.csv from the real one
            raise DataError(out, f"holds competition files the kit did not write (no valid {FOLDER_MANIFEST}), "
                                 "so --overwrite will not replace them: choose another folder")
        kits = listed or set()
    tmp: Path | None = None
    try:
        with atomic_folder(out, overwrite=overwrite) as tmp:
            write(tmp)
            written = _files_under(tmp)
            if overwrite and out.is_dir():
                _carry_over(out, tmp, kits)
            atomic_write_text(tmp / FOLDER_MANIFEST, json.dumps({"writer": "bengali_kit", "files": written},
                                                                indent=1) + "\n")
    except DataError as err:
        if tmp is not None and err.path.is_relative_to(tmp):
            raise DataError(out / err.path.relative_to(tmp), err.problem) from None
        raise
    except OSError as err:  # carrying a user's file over failed: say which, in one line
        if tmp is not None and err.filename and Path(err.filename).is_relative_to(tmp):
            raise DataError(out / Path(err.filename).relative_to(tmp), f"cannot write: {os_problem(err)}") from None
        raise
    return out
