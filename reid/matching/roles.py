"""Which score names the individual and which one calls NEW: chosen by measurement, per gallery.

Fusing local evidence with the global score is not better everywhere. Where photos of one place
share their background (nyala: the same bushes behind different antelopes), verified
correspondences measure "same place" as much as "same animal": the fused score still ranks the
right individual first more often than the global one, but its best score separates known from
never-seen individuals *worse*. Where the global embedding is blind (photos turned at random),
fusion wins on both. One rule cannot serve both, so the two jobs are chosen separately:

- ``rank_by``: the score whose leave-one-individual-out trials on the gallery's own photos name
  the right individual most often (rank-1);
- ``decide_by``: the score whose trials separate known from unknown queries best (AUROC of the
  best-candidate score).

The global score (the fallback that needs nothing else) keeps a job unless another score does
it better by more than ``MARGIN``: small trial differences do not carry over to new individuals.
When the two differ the query is answered by ``rank_by``'s best individual, and called NEW
when ``decide_by``'s best score over the shortlist is below ``decide_by``'s threshold:
:func:`ranked_decided` builds that pair score for any evaluation that works on (Q, G) matrices
of queries absent from the gallery, and :func:`combined_trials` its leave-one-individual-out
trials (which ``ranked_decided`` cannot give: its row best would keep the left-out individual's
score).

Trials on the gallery's own individuals are in-sample for the choice; the LOIO benchmark checks
it on individuals the choice never saw.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import roc_auc_score

from reid.gallery.threshold import TrialScores, loo_trials_of

PairScores = Callable[[np.ndarray, np.ndarray], np.ndarray]
MARGIN = 0.02  # how much better than the global score, in trial rank-1 or AUROC, another score
# must do to take a job: on nyala (seed 0) trial AUROC differences of +0.01 between fused and
# global reversed on new individuals, while real gains (turned heads: +0.4) dwarf it
RANK_WEIGHT = 1e-3  # in ranked_decided, how far below the best candidate the others fall per
# unit of ranking score: large enough that float32 (what the evaluation keeps) still orders
# ranking scores 1e-4 apart; the best candidate keeps the decision score exactly


@dataclass(frozen=True)
class TrialQuality:
    """How one score did in leave-one-individual-out trials: ``rank1`` over known trials,
    ``auroc`` of known best-candidate scores against unknown ones (None: a class is empty)."""

    rank1: float
    auroc: float | None
    num_known: int
    num_unknown: int


@dataclass(frozen=True)
class Roles:
    """``rank_by`` names the individual, ``decide_by`` calls NEW; ``quality``: each candidate
    score's trial figures, the evidence for the choice (JSON-ready via ``to_dict``)."""

    rank_by: str
    decide_by: str
    quality: dict[str, TrialQuality]

    def to_dict(self) -> dict:
        """JSON-ready."""
        return {
            "rank_by": self.rank_by,
            "decide_by": self.decide_by,
            "quality": {k: vars(q).copy() for k, q in self.quality.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> Roles:
        """The inverse of :meth:`to_dict`; KeyError/TypeError on data it did not write."""
        quality = {k: TrialQuality(**v) for k, v in data["quality"].items()}
        return cls(str(data["rank_by"]), str(data["decide_by"]), quality)


def trial_quality(trials: TrialScores) -> TrialQuality:
    """Rank-1 and AUROC of one score's trials."""
    known, unknown = trials.known_scores, trials.impostor_scores
    rank1 = float(np.mean(trials.known_correct)) if len(known) else 0.0
    auroc = None
    if len(known) and len(unknown):
        y = np.r_[np.ones(len(known)), np.zeros(len(unknown))]
        auroc = float(roc_auc_score(y, np.r_[known, unknown]))
    return TrialQuality(round(rank1, 4), None if auroc is None else round(auroc, 4),
                        int(len(known)), int(len(unknown)))  # fmt: skip


def choose_roles(
    quality: Mapping[str, TrialQuality], fallback: str, margin: float = MARGIN
) -> Roles:
    """The best score for each job (see the module docstring); ``fallback`` (the global score,
    which must be in ``quality``) keeps a job unless another score beats it by more than
    ``margin`` (rank-1 or AUROC), the best of those then taking it."""
    if fallback not in quality:
        raise ValueError(f"the fallback score {fallback!r} has no trial figures")

    def best(key: Callable[[TrialQuality], float]) -> str:
        chosen, bar = fallback, key(quality[fallback]) + margin
        for name, q in quality.items():
            if key(q) > bar and key(q) > key(quality[chosen]):
                chosen = name
        return chosen

    rank_by = best(lambda q: q.rank1)
    decide_by = best(lambda q: -1.0 if q.auroc is None else q.auroc)
    return Roles(rank_by, decide_by, dict(quality))


def measure_roles(
    scores: Mapping[str, PairScores],
    labels: np.ndarray,
    groups: np.ndarray,
    fallback: str,
    *,
    enrolled: np.ndarray | None = None,
) -> Roles:
    """Leave-one-individual-out trials of every score in ``scores`` (name -> ``pair_scores(rows,
    columns)`` over photos with ``labels``, ``groups`` (N,), any values) and
    :func:`choose_roles`. ``enrolled``: None (every photo queries all others of other
    sightings), or (N,) bool: the enrolled photos form the gallery; known trials are the later
    photos (another day, another place, as in the field: trials among all photos would let
    sightings of one day and one scene vouch for each other), unknown trials every photo of
    the left-out individual, its earliest too (a newcomer may well be photographed on the day
    and at the place where gallery animals were)."""
    labels = np.unique(np.asarray(labels), return_inverse=True)[1]
    groups = np.unique(np.asarray(groups), return_inverse=True)[1]
    quality = {}
    for name, fn in scores.items():
        if enrolled is None:
            trials = loo_trials_of(fn, labels, groups, score_mode="max")
        else:
            enrolled = np.asarray(enrolled, dtype=bool)
            only = _gallery_only(fn, enrolled)
            later = loo_trials_of(only, labels, groups, score_mode="max",
                                  queries=np.flatnonzero(~enrolled))  # fmt: skip
            every = loo_trials_of(only, labels, groups, score_mode="max")
            trials = TrialScores(later.known_scores, later.known_correct, every.impostor_scores)
        quality[name] = trial_quality(trials)
    return choose_roles(quality, fallback)


def _gallery_only(fn: PairScores, enrolled: np.ndarray) -> PairScores:
    """``fn`` with every column outside ``enrolled`` scoring -inf (not comparable)."""

    def pair_scores(rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        out = np.array(fn(rows, columns), dtype=np.float32)
        out[:, ~enrolled[columns]] = -np.inf
        return out

    return pair_scores


def combined_trials(rank: TrialScores, decide: TrialScores) -> TrialScores:
    """The trials of ranking by one score and deciding by another, from each one's trials over
    the same queries (both scores finite on every pair, so both keep the same known trials):
    ``decide``'s best scores, ``rank``'s rank-1 hits."""
    if len(rank.known_correct) != len(decide.known_scores):
        raise ValueError("the two scores' trials cover different known queries")
    return TrialScores(decide.known_scores, rank.known_correct, decide.impostor_scores)


def ranked_decided(rank: PairScores, decide: PairScores, groups: np.ndarray) -> PairScores:
    """A pair score that ranks by ``rank`` and decides by ``decide``: the pair (q, c) scores
    ``D(q) - RANK_WEIGHT x (R(q) - rank(q, c))``, where D(q) is q's best ``decide`` score and
    R(q) its best ``rank`` score over the columns (photos of the query's own sighting group
    left out, as every trial leaves them out). The per-individual maximum then orders
    individuals by ``rank``, and the best one scores exactly D(q): rank-1 is ``rank``'s,
    known-vs-unknown is ``decide``'s. ``rank``, ``decide``: (rows (Q,), columns (G,)) -> (Q, G);
    ``groups`` (N,)."""

    def pair_scores(rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        own = groups[rows][:, None] == groups[columns][None, :]
        d = np.where(own, -np.inf, np.asarray(decide(rows, columns), dtype=np.float64))
        r = np.where(own, -np.inf, np.asarray(rank(rows, columns), dtype=np.float64))
        top_d = d.max(axis=1, initial=-np.inf, keepdims=True)  # (Q, 1)
        top_r = r.max(axis=1, initial=-np.inf, keepdims=True)
        gap = np.where(np.isfinite(r), top_r - r, np.inf)  # >= 0; own sighting: never best
        score = np.where(np.isfinite(top_d), top_d, 0.0) - RANK_WEIGHT * np.minimum(gap, 1e3)
        return score

    return pair_scores


__all__ = [
    "MARGIN",
    "RANK_WEIGHT",
    "Roles",
    "TrialQuality",
    "choose_roles",
    "combined_trials",
    "measure_roles",
    "ranked_decided",
    "trial_quality",
]
