"""Local-feature scorers: keypoints per photo region, verified correspondences per pair.

``make_scorer("sift")`` or ``make_scorer("xfeat", matcher="lighterglue")`` builds one;
:func:`prepare_region` turns a photo file and its box into the region a scorer extracts from.
"""

from __future__ import annotations

from typing import Any

from reid.errors import ReIDError
from reid.matching.local.features import Correspondences, LocalFeatures, LocalScorer
from reid.matching.local.region import prepare_region
from reid.matching.local.sift import SiftScorer
from reid.matching.local.verify import verify
from reid.matching.local.xfeat import XFeatScorer

SCORERS: dict[str, type] = {"sift": SiftScorer, "xfeat": XFeatScorer}

__all__ = [
    "SCORERS",
    "Correspondences",
    "LocalFeatures",
    "LocalScorer",
    "SiftScorer",
    "XFeatScorer",
    "make_scorer",
    "prepare_region",
    "verify",
]


def make_scorer(name: str, **settings: Any) -> LocalScorer:
    """The local scorer called ``name`` ("sift", "xfeat") built with ``settings`` (keyword
    arguments of its class). Raises :class:`ReIDError` for an unknown name, TypeError or
    ValueError for a setting the scorer does not take."""
    try:
        cls = SCORERS[name]
    except KeyError:
        raise ReIDError(
            f"unknown local scorer {name!r}; valid names: {', '.join(sorted(SCORERS))}"
        ) from None
    return cls(**settings)
