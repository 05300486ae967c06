"""Decide: turn a query's scored candidates into an answer, a known individual or NEW.

The third of three steps: search proposes candidates with their cosine scores
(:mod:`reid.gallery.search`), a re-ranker may rescore them (``reid.matching``), and decide
applies the threshold. It reads nothing but the scores, so it works on any score calibrated
with :func:`reid.gallery.threshold.fit_threshold`, cosine or otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

from reid.gallery.records import NEW, Candidate, Match


def is_new(score: float, threshold: float | None) -> bool:
    """The open-set rule: NEW when there is a threshold and the best score is below it."""
    return threshold is not None and score < threshold


def decide(
    candidates: Sequence[Candidate], threshold: float | None, score: float | None = None
) -> Match:
    """The answer for one query from its candidates (any order; higher score = more alike).

    The decision is the best-scoring candidate (ties keep the given order) unless its score is
    below ``threshold``; no candidate at all (an empty gallery) is NEW with score -1.0. With
    ``threshold`` None (an uncalibrated gallery) the decision is simply the best candidate.
    ``score``: when one score names the individual and another calls NEW
    (:mod:`reid.matching.roles`), the query's score on the second, compared with ``threshold``
    instead of the best candidate's. Returns a :class:`Match` whose candidates are sorted best
    first and whose ``score`` is the one compared.
    """
    ranked = sorted(candidates, key=lambda c: -c.score)
    if score is None:
        score = ranked[0].score if ranked else -1.0
    new = not ranked or is_new(score, threshold)
    return Match(
        decision=NEW if new else ranked[0].individual,
        is_new=new,
        score=score,
        threshold=threshold,
        calibrated=threshold is not None,
        candidates=ranked,
    )


__all__ = ["decide", "is_new"]
