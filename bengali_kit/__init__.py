"""bengali_kit: a kit for the Bengali.AI Handwritten Grapheme Classification competition (bengaliai-cv19)."""
# The one place the version is set: pyproject.toml reads it (dynamic version), checkpoints and packages record it.
__version__ = "0.3.0.dev0"

from .components import COMPONENTS, METRIC_WEIGHTS, N_CLASSES, compose_grapheme, load_class_map  # noqa: E402, F401
from .errors import DataError  # noqa: E402, F401
