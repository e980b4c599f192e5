"""bengali_kit: a kit for the Bengali.AI Handwritten Grapheme Classification competition (bengaliai-cv19)."""
__version__ = "0.1.0"

from .components import COMPONENTS, METRIC_WEIGHTS, N_CLASSES, compose_grapheme, load_class_map  # noqa: F401
from .errors import DataError  # noqa: F401
