"""The competition's class map and the composition of a grapheme's Unicode string.

Labels follow ``class_map.csv``: 168 grapheme roots, 11 vowel diacritics and 7 consonant
diacritics; label 0 of the two diacritics means "none".
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import DataError

#: Component names in the order used everywhere in the kit (arrays of labels are (N, 3) in this order).
COMPONENTS: tuple[str, str, str] = ("grapheme_root", "vowel_diacritic", "consonant_diacritic")
#: What progress lines, summaries and plots call each component.
SHORT_NAMES: dict[str, str] = {"grapheme_root": "root", "vowel_diacritic": "vowel", "consonant_diacritic": "consonant"}
#: Number of classes per component, in ``COMPONENTS`` order.
N_CLASSES: tuple[int, int, int] = (168, 11, 7)
#: Weights of the competition metric, in ``COMPONENTS`` order.
METRIC_WEIGHTS: tuple[float, float, float] = (2.0, 1.0, 1.0)

_REPH = "র্"  # ra + hasanta written above the following consonant
_ZWJ = "\u200d"
# consonant_diacritic label -> (prefix before the root, suffix after the root, tail after the vowel sign)
_CONSONANT_PARTS: dict[int, tuple[str, str, str]] = {
    0: ("", "", ""),
    1: ("", "", "ঁ"),  # candrabindu follows the vowel sign in Unicode order
    2: (_REPH, "", ""),
    3: (_REPH, "্য", ""),
    4: ("", "্য", ""),
    5: ("", "্র", ""),
    6: ("", "্র্য", ""),
}


def resource_path(name: str) -> Path:
    """Path of a data file shipped inside the package (e.g. ``class_map.csv``)."""
    return Path(str(resources.files("bengali_kit") / "resources" / name))


@dataclass(frozen=True)
class ClassMap:
    """The three component tables: ``roots[label]`` is the Unicode text of that root, etc."""

    roots: tuple[str, ...]
    vowels: tuple[str, ...]
    consonants: tuple[str, ...]

    def table(self, component: str) -> tuple[str, ...]:
        """The table of one component, by its competition name."""
        return {COMPONENTS[0]: self.roots, COMPONENTS[1]: self.vowels, COMPONENTS[2]: self.consonants}[component]

    def compose(self, root: int, vowel: int, consonant: int) -> str:
        """Unicode string of the grapheme with these labels, in Bengali orthographic order.

        The reph goes before the root, ya-/ra-phala after it, then the vowel sign, then candrabindu.
        """
        if not (0 <= root < len(self.roots) and 0 <= vowel < len(self.vowels)
                and 0 <= consonant < len(self.consonants)):
            raise ValueError(f"labels out of range: root={root}, vowel={vowel}, consonant={consonant}")
        base = self.roots[root]
        prefix, suffix, tail = _CONSONANT_PARTS[consonant]
        if base == "র" and suffix.startswith("্য"):
            # ra + ya-phala is written with a ZWJ (র‍্য), otherwise it would shape as a reph over ya
            suffix = _ZWJ + suffix
        vowel_sign = "" if vowel == 0 else self.vowels[vowel]
        return prefix + base + suffix + vowel_sign + tail


def read_class_map(path: str | Path | None = None) -> pd.DataFrame:
    """Read a ``class_map.csv`` (the packaged copy when ``path`` is None) as a DataFrame."""
    path = Path(path) if path is not None else resource_path("class_map.csv")
    if not path.is_file():
        raise DataError(path, "file not found")
    df = pd.read_csv(path, dtype={"component_type": str, "label": "int64", "component": str}, keep_default_na=False)
    if list(df.columns) != ["component_type", "label", "component"]:
        raise DataError(path, f"expected columns component_type,label,component, got {','.join(df.columns)}")
    for name, n in zip(COMPONENTS, N_CLASSES):
        labels = sorted(df.loc[df.component_type == name, "label"])
        if labels != list(range(n)):
            raise DataError(path, f"{name} must have labels 0..{n - 1}, got {len(labels)} labels")
    return df


@lru_cache(maxsize=None)
def _class_map_cached(path: str | None) -> ClassMap:
    df = read_class_map(path)
    tables = []
    for name in COMPONENTS:
        part = df[df.component_type == name].sort_values("label")
        texts = ["" if name != COMPONENTS[0] and lbl == 0 else txt for lbl, txt in zip(part.label, part.component)]
        tables.append(tuple(texts))
    return ClassMap(*tables)


def load_class_map(path: str | Path | None = None) -> ClassMap:
    """The class map as a :class:`ClassMap` (cached; the packaged copy when ``path`` is None)."""
    return _class_map_cached(None if path is None else str(Path(path).resolve()))


def compose_grapheme(root: int, vowel: int, consonant: int) -> str:
    """Unicode string of a grapheme from its three labels, using the packaged class map."""
    return load_class_map().compose(root, vowel, consonant)


def read_grapheme_counts(path: str | Path | None = None) -> pd.DataFrame:
    """The real train set's (root, vowel, consonant) triples with their counts (packaged copy by default)."""
    path = Path(path) if path is not None else resource_path("grapheme_counts.csv")
    return pd.read_csv(path, keep_default_na=False, dtype={"grapheme": str, "other_spelling": str})


def triple_codes(labels: Any) -> Any:
    """(N, 3) labels (numpy or torch) -> one integer per (root, vowel, consonant): ``(root * 11 + vowel) * 7 + c``."""
    return (labels[:, 0] * N_CLASSES[1] + labels[:, 1]) * N_CLASSES[2] + labels[:, 2]


@lru_cache(maxsize=1)
def grapheme_index() -> np.ndarray:
    """Class index of each (root, vowel, consonant) in the real train set (the grapheme head's classes).

    A flat int64 array over all ``168 * 11 * 7`` label triples, read at :func:`triple_codes`:
    the rank of the triple among the 1,292 real ones (sorted by labels), or -100 for a triple absent from the
    real data (cross-entropy's ignore index: a rendered novel grapheme trains the three heads only).
    """
    triples = read_grapheme_counts()[list(COMPONENTS)].to_numpy(np.int64)
    keys = np.unique(triple_codes(triples))
    table = np.full(int(np.prod(N_CLASSES)), -100, dtype=np.int64)
    table[keys] = np.arange(len(keys))
    table.flags.writeable = False
    return table


_VIRAMA = "\u09cd"


@lru_cache(maxsize=1)
def root_parts() -> tuple[np.ndarray, tuple[str, ...]]:
    """Which letters each root is written with: a (168, P) float32 multi-hot matrix and the P letters.

    A conjunct root shares its consonants with other roots (ক্ষ with ক and ষ), so a head trained on these
    targets learns the letters, which recur across roots, and not only each root as a whole. The virama
    that joins them is left out: every conjunct has it.
    """
    roots = load_class_map().roots
    letters = tuple(sorted({ch for root in roots for ch in root} - {_VIRAMA}))
    column = {ch: k for k, ch in enumerate(letters)}
    table = np.zeros((len(roots), len(letters)), dtype=np.float32)
    for r, root in enumerate(roots):
        table[r, [column[ch] for ch in root if ch != _VIRAMA]] = 1.0
    table.flags.writeable = False
    return table, letters
