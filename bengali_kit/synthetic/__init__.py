"""Synthetic Bengali graphemes, one concern per module: ``fonts`` (the installed Bengali fonts), ``renderer``
(a grapheme drawn as a competition image), ``handwriting`` (distortions that make it look written),
``labels`` (label triples), ``stream`` (the on-the-fly dataset for pretraining) and ``generate`` (synthetic
competition folders, written by the kit's one competition-folder writer, ``bengali_kit.competition_folder``)."""
from __future__ import annotations

from .fonts import (
    EXCLUDED_FONTS,
    FONT_DIRS,
    HOLDOUT_FONT_PREFIXES,
    INSTALL_HINT,
    find_bengali_fonts,
    split_fonts,
)
from .generate import write_competition_folder
from .handwriting import HandwritingParams, handwrite
from .labels import LabelSampler, novel_triples, sample_labels
from .renderer import GraphemeRenderer, thin
from .stream import StreamConfig, SyntheticGraphemes

__all__ = [
    "FONT_DIRS", "EXCLUDED_FONTS", "HOLDOUT_FONT_PREFIXES", "INSTALL_HINT", "find_bengali_fonts", "split_fonts",
    "GraphemeRenderer", "thin", "HandwritingParams", "handwrite", "LabelSampler", "novel_triples", "sample_labels",
    "StreamConfig", "SyntheticGraphemes", "write_competition_folder",
]
