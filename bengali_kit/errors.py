"""Errors the kit raises for bad input: each names the file and the problem."""
from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """Bad or missing input data. ``str(err)`` is a one-line message: ``<path>: <problem>``."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")
