"""Finding the competition data and a bengali_kit package under Kaggle's input folder.

Kaggle mounts an attached input in one of three layouts (older and newer notebooks differ)::

    /kaggle/input/<slug>                            the classic layout
    /kaggle/input/competitions/<competition>        competition data, newer layout
    /kaggle/input/datasets/<owner>/<slug>           datasets, newer layout

and an uploaded folder may sit one or two levels deeper (``-r zip`` uploads are unzipped into folders).
:func:`find_input` looks for the folder named ``name`` in those places first; only when none holds the
marker file does it look anywhere under the root. When several folders hold the marker, they must be
the same input (identical marker files, e.g. one dataset mounted twice); several different ones are
refused rather than one of them taken silently.

Standard library only, and no ``from __future__`` import: the package builder inlines this file into
the offline kernel, which runs before the kit is installed (``bengali_kit.kaggle.kernel``).
"""
import hashlib
from pathlib import Path

#: The manifest file at the top of a package folder (its marker).
MANIFEST = "bengali_kit_package.json"
#: The competition's slug and the file that marks its data folder.
COMPETITION = "bengaliai-cv19"
DATA_MARKER = "test.csv"
#: How many levels below a candidate folder the marker may sit (unzipped sub-folders).
NESTING = 2
#: How deep the fallback search goes below the input root (datasets/<owner>/<slug> plus nesting).
MAX_DEPTH = 5


class InputSearchError(FileNotFoundError):
    """No matching input, or several different ones; ``str()`` is one line."""


def candidate_folders(root: str | Path, name: str) -> list[Path]:
    """The folders where Kaggle mounts an input called ``name``, in order of preference."""
    root = Path(root)
    found = [root / name, root / "competitions" / name]
    datasets = root / "datasets"
    if datasets.is_dir():
        found += sorted(owner / name for owner in datasets.iterdir() if (owner / name).is_dir())
    return [f for f in found if f.is_dir()]


def folders_holding(folder: str | Path, marker: str, depth: int) -> list[Path]:
    """Folders at or below ``folder`` (at most ``depth`` levels down) that hold a file ``marker``, shallow first."""
    folder = Path(folder)
    hits = []
    for level in range(depth + 1):
        pattern = "/".join(["*"] * level + [marker])
        hits += sorted(p.parent for p in folder.glob(pattern) if p.is_file())
    return hits


def _fingerprint(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _only_one(hits: list[Path], marker: str, what: str, name: str | None) -> Path:
    distinct: dict[str, Path] = {}
    for hit in hits:
        distinct.setdefault(_fingerprint(hit / marker), hit)
    if len(distinct) > 1:
        listed = ", ".join(str(h) for h in distinct.values())
        raise InputSearchError(f"{len(distinct)} different {what}s match '{name or '*'}': {listed}; "
                               "attach only one of them (or name the folder explicitly)")
    return hits[0]


def find_input(root: str | Path, name: str | None, marker: str, what: str = "input") -> Path:
    """The folder holding ``marker`` for the input called ``name`` under ``root`` (e.g. ``/kaggle/input``).

    Folders named ``name`` (in the layouts above) are preferred; others are searched only when none of
    those holds the marker (or ``name`` is None). Raises :class:`InputSearchError` when none is found
    or several differ.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputSearchError(f"{root}: input folder not found (is this a Kaggle notebook?)")
    named = [hit for folder in (candidate_folders(root, name) if name else [])
             for hit in folders_holding(folder, marker, NESTING)]
    if named:
        return _only_one(named, marker, what, name)
    anywhere = folders_holding(root, marker, MAX_DEPTH)
    if anywhere:
        return _only_one(anywhere, marker, what, name)
    attached = f"'{name}'" if name else "it"
    raise InputSearchError(f"{root}: no {what} ({marker}) found; is {attached} attached as an input?")


def find_package(root: str | Path, slug: str | None = None) -> Path:
    """The bengali_kit package folder (the one with ``bengali_kit_package.json``) of dataset ``slug``
    (None: the only package attached)."""
    return find_input(root, slug, MANIFEST, "bengali_kit package")


def find_competition(root: str | Path, competition: str = COMPETITION) -> Path:
    """The competition data folder (the one with ``test.csv``)."""
    return find_input(root, competition, DATA_MARKER, "competition data folder")


def locate(package_dir: str | Path, rel: str) -> Path:
    """``package_dir/rel``, or the file of that name anywhere below (Kaggle may nest unzipped folders)."""
    package_dir = Path(package_dir)
    path = package_dir / rel
    if path.exists():
        return path
    for hit in sorted(package_dir.rglob(Path(rel).name)):
        return hit
    raise InputSearchError(f"{package_dir}: {rel} not found in the package")
