"""What must never be uploaded: credentials, VCS data, caches, editor and OS litter (also inside wheels)."""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

_JUNK_NAMES = {
    "kaggle.json", ".kaggle", ".git", ".gitconfig", ".netrc", ".pypirc", ".npmrc", ".aws", ".ssh",
    "__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".DS_Store",
    "Thumbs.db", "id_rsa", "id_ed25519", "credentials", "credentials.json", ".venv", "venv",
}
_JUNK_SUFFIXES = (".pyc", ".pyo", ".tmp", ".swp", ".pem", ".key", ".log", "~")
_JUNK_PREFIXES = (".env",)


def is_junk(name: str) -> bool:
    """True for a file or folder name that must not be uploaded."""
    return (name in _JUNK_NAMES or name.endswith(_JUNK_SUFFIXES)
            or any(name.startswith(p) for p in _JUNK_PREFIXES))


def find_junk(folder: str | Path) -> list[str]:
    """Relative paths under ``folder`` (and inside its wheels) that must not be uploaded."""
    folder = Path(folder)
    bad: list[str] = []
    for root, dirs, files in os.walk(folder):
        rel_root = Path(root).relative_to(folder)
        for name in sorted(dirs + files):
            if is_junk(name):
                bad.append(str(rel_root / name))
        dirs[:] = [d for d in dirs if not is_junk(d)]
        for name in files:
            if name.endswith(".whl"):
                bad += _junk_in_wheel(Path(root) / name, rel_root / name)
    return bad


def _junk_in_wheel(path: Path, rel: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except zipfile.BadZipFile:
        return [f"{rel} (not a valid wheel)"]
    return [f"{rel}!{member}" for member in names if any(is_junk(p) for p in member.rstrip("/").split("/"))]
