"""Synthetic Bengali graphemes, one concern per module: ``fonts`` (the installed Bengali fonts), ``renderer``
(a grapheme drawn as a competition image), ``handwriting`` (distortions that make it look written),
``labels`` (label triples), ``stream`` (the on-the-fly dataset for pretraining), ``folder`` (the kit's one
competition-folder writer, also used by ``import-crops``) and ``generate`` (synthetic competition folders)."""
from __future__ import annotations

from .folder import FOLDER_MANIFEST, TEST_COMPONENT_ORDER, kit_written_files, write_competition_files, write_folders
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
    "StreamConfig", "SyntheticGraphemes", "FOLDER_MANIFEST", "TEST_COMPONENT_ORDER", "kit_written_files",
    "write_competition_files", "write_folders",
    "write_competition_folder",
]
