"""Safe output: atomic writes (temp file + rename, a whole folder too), output folders that never clobber a
user's files, and output paths checked before any work, with one-line reasons when the disk says no."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from .errors import DataError

__all__ = ["atomic_path", "atomic_write_text", "atomic_write_bytes", "atomic_folder", "prepare_output_dir",
           "check_output_file", "os_problem", "WRITE_ERRNOS", "refuse_inputs", "hold_lock", "temp_prefix",
           "remove_stale_temps", "copy_tree_linked"]

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


_HOST = socket.gethostname() or "localhost"
#: A short tag of this machine in temp names: a temp of another machine (a shared folder) is never judged stale.
_HOST_TAG = hashlib.sha1(_HOST.encode()).hexdigest()[:6]


def temp_prefix(path: Path, kind: str = "") -> str:
    """Prefix of the kit's temporary names beside ``path``: ``.<name>.<kind><pid>@<host>-``.

    The pid and host let a later run tell a leftover of a killed process (removed) from a live writer's file.
    """
    return f".{path.name}.{kind}{os.getpid()}@{_HOST_TAG}-"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove the kit's temporary files and folders beside ``path`` whose process on this machine is gone.

    A run killed hard (SIGKILL, a power cut) cannot clean up; the next run on the same output does. Only
    names of the kit's own pattern (:func:`temp_prefix`) are touched. Returns what was removed.
    """
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:old\.)?(\d+)@([0-9a-f]{{6}})-[A-Za-z0-9_]+"
                         r"(?:\.tmp|\.old|\.probe)?")
    removed = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None or m.group(2) != _HOST_TAG or pid_alive(int(m.group(1))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
        removed.append(entry)
    return removed


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def refuse_inputs(out: str | Path, inputs: Iterable[str | Path], option: str = "output") -> None:
    """DataError when ``out`` is one of ``inputs`` or a folder that holds one, ``--overwrite`` or not.

    Paths are compared as files on the disk (links and ``..`` included): an output never replaces an input.
    """
    out = Path(out)
    for item in inputs:
        item = Path(item)
        if _same(out, item):
            raise DataError(out, f"is an input of this command ({item}); choose another {option}")
        if out.is_dir() and item.exists():
            for parent in item.resolve().parents:
                if _same(out, parent):
                    raise DataError(out, f"holds an input of this command ({item}); choose another {option}")


@contextlib.contextmanager
def hold_lock(target: str | Path, lock: str | Path | None = None) -> Iterator[Path]:
    """One writer at a time for ``target`` (a run folder, a cache): a lock file holding the writer's pid and host.

    ``lock`` defaults to ``.<name>.lock`` beside ``target`` (so that the target itself is not created
    before its inputs are checked). A second writer gets a one-line DataError naming the holder at once;
    a lock left by a dead process of this machine is taken over. The lock file is removed on exit.
    """
    target = Path(target)
    lock = Path(lock) if lock is not None else target.parent / f".{target.name}.lock"
    mine = json.dumps({"pid": os.getpid(), "host": _HOST}) + "\n"
    for _ in range(3):
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _lock_holder(lock)
            if holder is not None and (holder[1] != _HOST or pid_alive(holder[0])):
                raise DataError(target, f"in use by process {holder[0]} on {holder[1]} (lock file {lock}); "
                                        f"wait for it to finish or stop it") from None
            with contextlib.suppress(FileNotFoundError):  # a killed writer's lock (or an unreadable one)
                lock.unlink()
            continue
        except OSError as err:
            raise DataError(target, f"cannot create its lock file {lock.name}: {os_problem(err)}") from None
        try:
            os.write(fd, mine.encode())
        finally:
            os.close(fd)
        break
    else:
        raise DataError(target, f"cannot take the lock file {lock} (another process keeps taking it)")
    try:
        yield lock
    finally:
        with contextlib.suppress(OSError):
            if lock.read_text(encoding="utf-8") == mine:
                lock.unlink()


def _lock_holder(lock: Path) -> tuple[int, str] | None:
    """(pid, host) written in a lock file; None for an unreadable one (a writer killed mid-write)."""
    try:
        info = json.loads(lock.read_text(encoding="utf-8"))
        return int(info["pid"]), str(info["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)  # the same file, no second copy on disk
    except OSError:
        shutil.copy2(src, dst)


def copy_tree_linked(src: Path, dst: Path) -> None:
    """Copy file or folder ``src`` to ``dst`` with hard links where possible (the kit replaces files by rename,
    never in place, so a linked copy never changes under the other name)."""
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif src.is_dir():
        shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
    else:
        _link_or_copy(str(src), str(dst))


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


def check_output_file(path: str | Path, overwrite: bool = False, inputs: Iterable[str | Path] = ()) -> Path:
    """Check, before any work, that ``path`` can be written: DataError with the reason when it cannot.

    Refuses one of the command's ``inputs`` (even with ``overwrite``), an existing file unless ``overwrite``,
    a folder, a parent that is a file, and a folder where no file can be created (read-only, immutable,
    full). Creates nothing: a probe file is made and removed.
    """
    path = Path(path)
    refuse_inputs(path, inputs)
    if path.is_dir():
        raise DataError(path, "is a folder, expected a file path")
    if path.exists() and not overwrite:
        raise DataError(path, "already exists (pass --overwrite to replace it)")
    blocker = _blocking_file(path)
    if blocker is not None:
        raise DataError(path, f"cannot create it: {blocker} is a file, not a folder")
    folder = _nearest_existing(path.parent)
    try:
        fd, probe = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".probe", dir=folder)
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
        remove_stale_temps(path)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent)
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
        remove_stale_temps(path)
        tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(path), suffix=".tmp", dir=path.parent))
    except OSError as err:
        raise _output_error(path, err) from None
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        yield tmp
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=temp_prefix(path, "old."), dir=path.parent))
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
