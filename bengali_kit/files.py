"""Safe output: atomic writes (temp file + rename, a whole folder too), output folders that never clobber a
user's files, and output paths checked before any work, with one-line reasons when the disk says no."""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import DataError

__all__ = ["atomic_path", "atomic_write_text", "atomic_write_bytes", "atomic_folder", "prepare_output_dir",
           "check_output_file", "os_problem", "WRITE_ERRNOS"]

#: errno values that can only come from writing: met inside ``atomic_path``, they concern the output.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


def os_problem(err: OSError) -> str:
    """A short lowercase reason for an OSError, without the ``[Errno N]`` prefix and file name."""
    reasons = {
        errno.ENOSPC: "no space left on the device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "not writable (permission denied)",
        errno.EPERM: "not writable (operation not permitted: an immutable or protected folder?)",
        errno.EFBIG: "file too large for this file system",
        errno.ENAMETOOLONG: "file name too long",
    }
    if err.errno in reasons:
        return reasons[err.errno]
    return (err.strerror or str(err) or type(err).__name__).lower()


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _blocking_file(path: Path) -> Path | None:
    """The first ancestor of ``path`` that exists and is not a folder, if any."""
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def _output_error(path: Path, err: OSError) -> DataError:
    blocker = _blocking_file(path)
    if blocker is not None and err.errno in (errno.EEXIST, errno.ENOTDIR):
        return DataError(path, f"cannot create it: {blocker} is a file, not a folder")
    return DataError(path, f"cannot write: {os_problem(err)}")


def check_output_file(path: str | Path, overwrite: bool = False) -> Path:
    """Check, before any work, that ``path`` can be written: DataError with the reason when it cannot.

    Refuses an existing file unless ``overwrite``, a folder, a parent that is a file, and a folder where no
    file can be created (read-only, immutable, full). Creates nothing: a probe file is made and removed.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(path, "is a folder, expected a file path")
    if path.exists() and not overwrite:
        raise DataError(path, "already exists (pass --overwrite to replace it)")
    blocker = _blocking_file(path)
    if blocker is not None:
        raise DataError(path, f"cannot create it: {blocker} is a file, not a folder")
    folder = _nearest_existing(path.parent)
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise DataError(path, f"cannot write into {folder}: {os_problem(err)}") from None
    return path


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, on error removed.

    Readers never see a half-written file, and an interrupted run leaves the old file intact. An OSError
    of the file system (not writable, no space left, a parent that is a file) becomes a one-line DataError
    naming ``path``; so does one raised by the writer for the temporary file or with a write-only errno.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as err:
        raise _output_error(path, err) from None
    tmp_path = Path(tmp)
    # mkstemp creates 0600 files; give the result the usual permissions (0666 less the umask)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp_path, 0o666 & ~umask)
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as err:
        tmp_path.unlink(missing_ok=True)
        if err.errno in WRITE_ERRNOS or err.filename in (str(tmp_path), str(path)):
            raise _output_error(path, err) from None
        raise
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


@contextlib.contextmanager
def atomic_folder(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it replaces ``path`` whole, on error it
    is removed and ``path`` is left as it was.

    An existing non-empty ``path`` is refused unless ``overwrite``; with it, the old folder is replaced as a
    whole (no stale file survives). The swap is two renames: a crash between them leaves the old folder as
    ``.<name>.old.*`` beside the new name's absence, never a mix of old and new files.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(path, "exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise DataError(path, "folder is not empty (pass --overwrite to replace it)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as err:
        raise _output_error(path, err) from None
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if err.errno in WRITE_ERRNOS or (err.filename or "").startswith(str(tmp)):
            raise _output_error(path, err) from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def prepare_output_dir(path: str | Path, overwrite: bool = False) -> Path:
    """Create ``path`` as an output folder; refuse a non-empty one unless ``overwrite`` is set.

    Nothing is deleted even with ``overwrite``: files are replaced one by one as they are written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(path, "exists and is not a folder")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise DataError(path, "folder is not empty (pass --overwrite to write into it anyway)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _output_error(path, err) from None
    return path
