"""Finding the competition data and the package on fake ``/kaggle/input`` layouts, with the kit's search and
with the copy inlined into the rendered kernel (the two must behave the same)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_package import load_kernel  # the rendered kernel as a module, shared

from bengali_kit.kaggle import search

SLUG = "my-slug-b0"


@pytest.fixture(params=["kit", "kernel"])
def finder(request, tmp_path_factory):
    """The search functions: the kit's module, or the kernel's inlined copy."""
    return search if request.param == "kit" else load_kernel(tmp_path_factory.mktemp("kernel"), SLUG)


def _package(folder: Path, dataset_id: str = f"someone/{SLUG}") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / search.MANIFEST).write_text(json.dumps({"dataset_id": dataset_id}))
    return folder


def _competition(folder: Path, rows: str = "row_id,image_id,component\n") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "test.csv").write_text(rows)
    return folder


def test_classic_layout(finder, tmp_path):
    pkg, comp = _package(tmp_path / SLUG), _competition(tmp_path / "bengaliai-cv19")
    assert finder.find_package(tmp_path, SLUG) == pkg
    assert finder.find_competition(tmp_path) == comp


def test_newer_layout(finder, tmp_path):
    pkg = _package(tmp_path / "datasets" / "someone" / SLUG)
    comp = _competition(tmp_path / "competitions" / "bengaliai-cv19")
    _package(tmp_path / "datasets" / "someone" / "older-upload", dataset_id="someone/older-upload")
    assert finder.find_package(tmp_path, SLUG) == pkg
    assert finder.find_competition(tmp_path, "bengaliai-cv19") == comp


def test_unzipped_one_level_deeper(finder, tmp_path):
    pkg = _package(tmp_path / "datasets" / "someone" / SLUG / SLUG)
    assert finder.find_package(tmp_path, SLUG) == pkg
    (pkg / "wheels" / "wheels").mkdir(parents=True)
    wheel = pkg / "wheels" / "wheels" / "bengali_kit-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    assert finder.locate(pkg, "wheels/bengali_kit-0.1.0-py3-none-any.whl") == wheel
    with pytest.raises(finder.InputSearchError, match="missing.pt"):
        finder.locate(pkg, "checkpoints/missing.pt")


def test_prefers_the_dataset_whose_slug_matches(finder, tmp_path):
    # An older, different package attached under another slug sorts first; the matching slug wins.
    _package(tmp_path / "a-older-package", dataset_id="someone/a-older-package")
    mine = _package(tmp_path / "datasets" / "someone" / SLUG)
    assert finder.find_package(tmp_path, SLUG) == mine


def test_one_dataset_mounted_twice_is_one_match(finder, tmp_path):
    classic = _package(tmp_path / SLUG)
    _package(tmp_path / "datasets" / "someone" / SLUG)  # identical manifest
    assert finder.find_package(tmp_path, SLUG) == classic


def test_refuses_several_different_packages_with_the_slug(finder, tmp_path):
    first = _package(tmp_path / "datasets" / "alice" / SLUG, dataset_id=f"alice/{SLUG}")
    second = _package(tmp_path / "datasets" / "bob" / SLUG, dataset_id=f"bob/{SLUG}")
    with pytest.raises(finder.InputSearchError) as err:
        finder.find_package(tmp_path, SLUG)
    message = str(err.value)
    assert "2 different bengali_kit packages" in message and str(first) in message and str(second) in message
    assert "\n" not in message


def test_falls_back_to_the_only_package_under_another_name(finder, tmp_path):
    renamed = _package(tmp_path / "datasets" / "someone" / "renamed-upload")
    assert finder.find_package(tmp_path, SLUG) == renamed
    assert finder.find_package(tmp_path) == renamed  # no slug given: the only package attached


def test_refuses_several_packages_when_none_has_the_slug(finder, tmp_path):
    _package(tmp_path / "first-upload", dataset_id="someone/first-upload")
    _package(tmp_path / "second-upload", dataset_id="someone/second-upload")
    with pytest.raises(finder.InputSearchError, match="2 different bengali_kit packages match"):
        finder.find_package(tmp_path, SLUG)


def test_competition_data_under_another_folder(finder, tmp_path):
    comp = _competition(tmp_path / "competitions" / "bengali-copy")
    assert finder.find_competition(tmp_path) == comp
    _competition(tmp_path / "other-data", rows="row_id,image_id,component\nTest_0_grapheme_root,Test_0,grapheme_root\n")
    with pytest.raises(finder.InputSearchError, match="2 different competition data folders"):
        finder.find_competition(tmp_path)


def test_nothing_attached(finder, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError) as err:
        finder.find_package(tmp_path / "empty", SLUG)
    assert str(tmp_path / "empty") in str(err.value) and search.MANIFEST in str(err.value)
    assert SLUG in str(err.value)
    with pytest.raises(finder.InputSearchError, match="input folder not found"):
        finder.find_competition(tmp_path / "no-such-root")
