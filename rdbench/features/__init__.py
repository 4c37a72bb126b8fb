"""Images -> features: resize modes, extractors (``inception``, ``clip``, ``dinov2``), cache.

``load_extractor(name, ...)`` builds a registered extractor; ``extract_features(imageset,
extractor)`` runs it over an image set with the content-addressed :class:`FeatureCache`.
"""

from rdbench.features import clip, dinov2, inception  # noqa: F401 - register extractors
from rdbench.features.base import (
    EXTRACTORS,
    FEATURE_FORMAT_VERSION,
    FeatureExtractor,
    Preprocessor,
    load_extractor,
)
from rdbench.features.cache import FeatureCache
from rdbench.features.extract import Features, extract_features
from rdbench.features.resize import RESIZE_MODES, make_resizer

__all__ = [
    "EXTRACTORS",
    "FEATURE_FORMAT_VERSION",
    "RESIZE_MODES",
    "FeatureCache",
    "FeatureExtractor",
    "Features",
    "Preprocessor",
    "extract_features",
    "load_extractor",
    "make_resizer",
]
