"""Errors the kit raises for bad input: each names the file and the problem, on one line."""
from __future__ import annotations

import re
from pathlib import Path

__all__ = ["DataError", "one_line", "first_sentence"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
#: Where a long message may be cut: after a sentence, then a clause.
_BREAKS = (". ", "; ", ": ", ", ")


def one_line(text: object, limit: int = 400) -> str:
    """``text`` as one line: terminal colour codes dropped, its lines joined with "; ", and, when longer
    than ``limit``, cut after the last whole sentence (or clause, or word) that fits, marked with "…"."""
    s = _ANSI.sub("", str(text))
    lines = [_printable(ln.strip()) for ln in s.splitlines() if ln.strip()]
    s = "; ".join([ln.rstrip(" .;") for ln in lines[:-1]] + lines[-1:])
    if len(s) <= limit:
        return s
    head = s[:limit]
    for mark in _BREAKS:
        cut = head.rfind(mark)
        if cut >= limit // 3:
            return head[:cut + (1 if mark == ". " else 0)].rstrip(" ,;:") + " …"
    cut = head.rfind(" ")
    return (head[:cut] if cut > 0 else head).rstrip(" ,;:") + " …"


def _printable(line: str) -> str:
    """Control characters (e.g. a raw byte quoted by a parser) written as escapes, not sent to the terminal."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in line)


def first_sentence(text: object) -> str:
    """The first sentence of the first non-blank line of ``text`` (colour codes dropped, no final period)."""
    s = _ANSI.sub("", str(text))
    line = next((ln.strip() for ln in s.splitlines() if ln.strip()), "")
    cut = line.find(". ")
    return (line[:cut] if cut > 0 else line).rstrip(".")


class DataError(ValueError):
    """Bad or missing input data. ``str(err)`` is a one-line message: ``<path>: <problem>``."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = one_line(problem)
        super().__init__(f"{path}: {self.problem}")
