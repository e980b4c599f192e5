"""Bengali fonts for the renderer: find the installed ones, and split them for font hold-out.

Debian packages ``fonts-beng-extra fonts-lohit-beng-bengali fonts-noto-core`` provide them. MitraMono is left
out (a monospaced font with incomplete Bengali shaping).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import ImageFont

__all__ = ["FONT_DIRS", "EXCLUDED_FONTS", "HOLDOUT_FONT_PREFIXES", "INSTALL_HINT", "find_bengali_fonts", "split_fonts"]

#: Folders searched for font files (recursively).
FONT_DIRS: tuple[str, ...] = ("/usr/share/fonts", "/usr/local/share/fonts", "~/.local/share/fonts", "~/.fonts")
#: Font files (by stem) never used: MitraMono is monospaced with incomplete Bengali shaping.
EXCLUDED_FONTS: tuple[str, ...] = ("MitraMono",)
#: With ``holdout_fonts``, fonts whose file name starts with one of these render the test split only.
HOLDOUT_FONT_PREFIXES: tuple[str, ...] = ("Jamrul", "NotoSerifBengali")
INSTALL_HINT = "apt-get install fonts-beng-extra fonts-lohit-beng-bengali fonts-noto-core"
_PROBE = "ক"  # a Bengali letter every Bengali font covers

def _font_name_ok(path: Path) -> bool:
    low = str(path).lower()
    return path.suffix.lower() in (".ttf", ".otf") and ("beng" in low or "assamese" in low)


def _covers_bengali(path: Path) -> bool:
    """True when the font draws a real glyph for a Bengali letter (not its .notdef box)."""
    try:
        font = ImageFont.truetype(str(path), 32, layout_engine=ImageFont.Layout.BASIC)
        probe = np.asarray(font.getmask(_PROBE))
        notdef = np.asarray(font.getmask("\ue000"))  # a private-use code point: .notdef in every font
    except OSError:
        return False
    return probe.any() and (probe.shape != notdef.shape or not np.array_equal(probe, notdef))


def find_bengali_fonts(dirs: Iterable[str | Path] | None = None) -> list[Path]:
    """Installed font files that cover Bengali, sorted by file name (deterministic), MitraMono excluded.

    Raises ``RuntimeError`` with the apt-get command to run when none is found.
    """
    dirs = FONT_DIRS if dirs is None else tuple(dirs)
    found: dict[str, Path] = {}
    for d in dirs:
        root = Path(d).expanduser()
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            if path.stem in EXCLUDED_FONTS or path.name in found or not _font_name_ok(path):
                continue
            if _covers_bengali(path):
                found[path.name] = path  # the same file installed twice counts once
    if not found:
        raise RuntimeError(f"no Bengali fonts found in {', '.join(map(str, dirs))}; install them with: {INSTALL_HINT}")
    return [found[name] for name in sorted(found)]


def split_fonts(fonts: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """(train fonts, test fonts) for ``holdout_fonts``: :data:`HOLDOUT_FONT_PREFIXES` go to test.

    If that leaves one side empty (another set of fonts installed), every third font (positions 2, 5, …
    of the sorted list) goes to test instead.
    """
    fonts = [Path(f) for f in fonts]
    if len(fonts) < 2:
        raise RuntimeError(f"--holdout-fonts needs at least 2 Bengali fonts, found {len(fonts)}; "
                           f"install: {INSTALL_HINT}")
    test = [f for f in fonts if f.name.startswith(HOLDOUT_FONT_PREFIXES)]
    if not test or len(test) == len(fonts):
        test = fonts[2::3]
    train = [f for f in fonts if f not in test]
    return train, test
