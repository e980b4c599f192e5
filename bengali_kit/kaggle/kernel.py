"""The kernel script of a package: ``kernel_template.py`` (package data) rendered for one dataset slug.

The template imports the input search from ``search.py``; rendering replaces that import with the
module's own source, so the kernel, which runs before the kit is installed, is one self-contained file
and the search has a single hand-written copy.
"""
from __future__ import annotations

import re
from importlib import resources

from ..errors import DataError

TEMPLATE = "kernel_template.py"
_SEARCH_BLOCK = re.compile(r"^# >>> search[^\n]*\n.*?^# <<< search\n", flags=re.MULTILINE | re.DOTALL)
_SLUG_LINE = re.compile(r'^DATASET_SLUG = "[^"\n]*"', flags=re.MULTILINE)


def _read(name: str) -> str:
    path = resources.files(__package__).joinpath(name)
    if not path.is_file():
        raise DataError(str(path), "kernel source file missing from the installed kit")
    return path.read_text(encoding="utf-8")


def kernel_source(slug: str) -> str:
    """The kernel script with ``slug`` as its default dataset folder and the search module inlined."""
    text = _read(TEMPLATE)
    search = _read("search.py").rstrip("\n")
    block = ("# >>> search: inlined from bengali_kit/kaggle/search.py by `bengali-kit package`\n"
             f"{search}\n# <<< search\n")
    text, n_search = _SEARCH_BLOCK.subn(lambda _: block, text, count=1)
    text, n_slug = _SLUG_LINE.subn(f'DATASET_SLUG = "{slug}"', text, count=1)
    if n_search != 1 or n_slug != 1:
        raise DataError(TEMPLATE, "kernel template lacks its search block or DATASET_SLUG line")
    return text
