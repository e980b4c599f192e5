"""Safe output: atomic files and folders, output paths checked up front, one-line reasons from the disk."""
from __future__ import annotations

import errno
import os

import pytest

from bengali_kit.errors import DataError
from bengali_kit.files import atomic_folder, atomic_path, atomic_write_text, check_output_file, os_problem


def test_atomic_path_replaces_only_on_success(tmp_path):
    path = tmp_path / "a" / "f.txt"
    atomic_write_text(path, "one")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert path.read_text() == "one" and sorted(p.name for p in path.parent.iterdir()) == ["f.txt"]


def test_atomic_path_turns_a_full_disk_into_a_data_error(tmp_path):
    path = tmp_path / "f.csv"
    with pytest.raises(DataError) as info, atomic_path(path):
        raise OSError(errno.ENOSPC, "No space left on device")  # no file name: a write() that failed
    assert str(info.value) == f"{path}: cannot write: no space left on the device"
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError), atomic_path(path):  # an input the writer reads: not ours to rename
        open(tmp_path / "missing-input.csv")


def test_a_parent_that_is_a_file(tmp_path):
    (tmp_path / "afile").write_text("mine")
    target = tmp_path / "afile" / "sub" / "x.csv"
    for attempt in (lambda: atomic_write_text(target, "x"), lambda: check_output_file(target)):
        with pytest.raises(DataError) as info:
            attempt()
        assert str(info.value) == f"{target}: cannot create it: {tmp_path / 'afile'} is a file, not a folder"
    assert (tmp_path / "afile").read_text() == "mine"


def test_check_output_file_creates_nothing(tmp_path):
    target = tmp_path / "new" / "deeper" / "s.csv"
    assert check_output_file(target) == target
    assert list(tmp_path.iterdir()) == []  # no folder made, no probe left
    target.parent.mkdir(parents=True)
    target.write_text("mine")
    with pytest.raises(DataError, match="already exists \\(pass --overwrite"):
        check_output_file(target)
    assert check_output_file(target, overwrite=True) == target and target.read_text() == "mine"
    with pytest.raises(DataError, match="is a folder"):
        check_output_file(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a mode-555 folder anyway (test_faults uses chattr)")
def test_check_output_file_in_a_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    with pytest.raises(DataError, match="cannot write into .*ro: not writable"):
        check_output_file(ro / "s.csv")


def test_atomic_folder_swaps_whole_folders(tmp_path):
    out = tmp_path / "out"
    with atomic_folder(out) as tmp:
        (tmp / "a.txt").write_text("1")
        (tmp / "b.txt").write_text("1")
        assert not out.exists()  # nothing visible until the end
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "b.txt"]
    with pytest.raises(DataError, match="not empty \\(pass --overwrite"):
        with atomic_folder(out):
            pass
    with pytest.raises(RuntimeError), atomic_folder(out, overwrite=True) as tmp:
        (tmp / "a.txt").write_text("2")
        raise RuntimeError("writer failed")
    assert (out / "a.txt").read_text() == "1" and (out / "b.txt").exists()  # the old folder untouched
    with atomic_folder(out, overwrite=True) as tmp:
        (tmp / "a.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"] and (out / "a.txt").read_text() == "2"  # no stale b
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary or old folder left


def test_os_problem_wording():
    assert os_problem(OSError(errno.ENOSPC, "x")) == "no space left on the device"
    assert os_problem(PermissionError(errno.EACCES, "x")) == "not writable (permission denied)"
    assert os_problem(OSError(errno.ENOENT, "No such file or directory")) == "no such file or directory"
