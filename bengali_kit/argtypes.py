"""argparse types for the command line: values checked where they are parsed, so the error names the option.

``p.add_argument("--seed", type=non_negative_int)`` turns ``--seed -1`` into
``bengali-kit synth: error: argument --seed: must be an integer >= 0, got '-1'`` (one line, exit status 2).
"""
from __future__ import annotations

import argparse
import math

__all__ = ["non_negative_int", "positive_int", "positive_float", "non_negative_float"]


def _int(text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer {what}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be an integer {what}, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (seeds, counts that may be zero)."""
    return _int(text, 0, ">= 0")


def positive_int(text: str) -> int:
    """An integer >= 1 (batch sizes, sizes, file counts)."""
    return _int(text, 1, ">= 1")


def _float(text: str, positive: bool) -> float:
    what = "> 0" if positive else ">= 0"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number {what}, got {text!r}") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise argparse.ArgumentTypeError(f"must be a finite number {what}, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates, time budgets)."""
    return _float(text, positive=True)


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (probabilities, weight decay)."""
    return _float(text, positive=False)
