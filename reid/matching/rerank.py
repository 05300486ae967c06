"""Re-rankers: the step between search and decide, where a scorer may rescore the shortlist.

Search (:meth:`reid.gallery.Gallery.search`) proposes each query's candidate individuals with
their global cosine scores; a :class:`Reranker` may change those scores (and so their order);
:func:`reid.gallery.decide.decide` then applies the threshold. A re-ranker whose scores are not
cosine similarities needs a threshold calibrated on its own scores
(:func:`reid.gallery.threshold.fit_threshold`), passed to :func:`rerank_and_decide`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from reid.detect.crop import Box
from reid.gallery import Candidate, Match, decide


@dataclass(frozen=True)
class Probe:
    """One query as a scorer sees it: the photo, the region identified and its embedding.

    ``vector`` is (D,) float32, L2-normalised; ``box`` is None for the whole photo.
    """

    path: Path
    vector: np.ndarray
    box: Box | None = None


@runtime_checkable
class Reranker(Protocol):
    """Rescores one query's candidates; higher means more likely the same individual."""

    name: str  # what the scores are, e.g. "cosine"; a threshold belongs to one kind of score

    def rescore(self, probe: Probe, candidates: Sequence[Candidate]) -> list[Candidate]:
        """The candidates with new scores, best first (:class:`Candidate` is frozen: use
        ``dataclasses.replace(c, score=...)``)."""
        ...


class CosineScorer:
    """The global scorer: the cosine similarity of the embeddings, as the search computed it.

    Its rescoring is the identity, so search -> CosineScorer -> decide gives exactly what
    :meth:`reid.gallery.Gallery.identify` gives; it is the baseline other scorers replace.
    """

    name = "cosine"

    def rescore(self, probe: Probe, candidates: Sequence[Candidate]) -> list[Candidate]:
        """``candidates`` unchanged (already scored by cosine similarity, best first)."""
        return list(candidates)


def rerank_and_decide(
    probes: Sequence[Probe],
    candidates: Sequence[Sequence[Candidate]],
    threshold: float | None,
    reranker: Reranker | None = None,
) -> list[Match]:
    """Rescore each query's candidates with ``reranker`` (None: keep the search's cosine
    scores), then decide known / NEW at ``threshold``. One :class:`Match` per probe."""
    if len(probes) != len(candidates):
        raise ValueError(f"{len(probes)} probes but {len(candidates)} candidate lists")
    scorer = reranker or CosineScorer()
    return [
        decide(scorer.rescore(probe, found), threshold)
        for probe, found in zip(probes, candidates, strict=True)
    ]


__all__ = ["CosineScorer", "Probe", "Reranker", "rerank_and_decide"]
