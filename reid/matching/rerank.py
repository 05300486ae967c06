"""Re-rankers: the step between search and decide, where a scorer may rescore the shortlist.

Search (:meth:`reid.gallery.Gallery.search`) proposes each query's candidate individuals with
their global cosine scores; a :class:`Reranker` may change those scores (and so their order);
:func:`reid.gallery.decide.decide` then applies the threshold. A re-ranker whose scores are not
cosine similarities needs a threshold calibrated on its own scores
(:func:`reid.gallery.threshold.fit_threshold`), passed to :func:`rerank_and_decide`.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from reid.detect.crop import Box
from reid.errors import ImageLoadError
from reid.gallery import Candidate, Match, decide
from reid.matching.local import Correspondences, LocalFeatures, LocalScorer, prepare_region

if TYPE_CHECKING:
    from reid.gallery import Gallery
    from reid.matching.fused import FusionCalibration


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


@dataclass(frozen=True)
class Evidence:
    """Why one candidate photo scored as it did under a :class:`LocalReranker`.

    ``raw``: scorer name -> raw score (``cosine``: the similarity; a local scorer: its verified
    correspondence count); ``probabilities``: scorer name -> calibrated P(same), and ``fused``;
    ``query_xy``, ``candidate_xy``: (M, 2) float32 verified correspondences in pixels of each
    side's resized region, whose (width, height) are ``query_size`` and ``candidate_size``.
    """

    image_id: int
    raw: dict[str, float]
    probabilities: dict[str, float]
    query_xy: np.ndarray
    candidate_xy: np.ndarray
    query_size: tuple[int, int]
    candidate_size: tuple[int, int]


def probe_key(probe: Probe) -> tuple[str, Box | None]:
    """What identifies a query region: its photo and box."""
    return str(probe.path), probe.box


class LocalReranker:
    """Re-ranks a shortlist of gallery photos with a local scorer and a fused calibration.

    For each query: the ``shortlist`` nearest gallery photos by cosine (``Gallery.
    search_photos``), the query's local features extracted once (its box, as the gallery's
    were), matched against each photo's stored features; every scorer's raw score calibrated to
    P(same) and fused (:class:`reid.matching.fused.FusionCalibration`). An individual scores its
    best photo; ``rank_by`` is ``fused``, ``cosine`` or the local scorer's name (its probability
    alone). ``decide_by`` (None: ``rank_by``): the score whose best over the shortlist calls NEW
    (``cosine``: the raw cosine, for the gallery's cosine threshold; otherwise a probability),
    kept per query for :meth:`decision_score` (:mod:`reid.matching.roles`).
    Individuals with no photo in the shortlist are not candidates. ``evidence[probe_key(p)]``
    keeps each returned candidate's :class:`Evidence` (image id -> evidence) for match sheets.
    """

    def __init__(
        self,
        gallery: Gallery,
        scorer: LocalScorer,
        fusion: FusionCalibration,
        *,
        rank_by: str = "fused",
        decide_by: str | None = None,
        top_k: int = 5,
        shortlist: int = 50,
        workers: int = 2,
        cache_photos: int = 2000,
    ) -> None:
        self.name = rank_by
        self.decide_by = decide_by
        self._decision: dict[tuple[str, Box | None], float] = {}
        self.gallery, self.scorer, self.fusion = gallery, scorer, fusion
        self.top_k, self.shortlist, self.workers = int(top_k), int(shortlist), int(workers)
        self.evidence: dict[tuple[str, Box | None], dict[int, Evidence]] = {}
        self._cache_photos = int(cache_photos)
        self._photos: dict[int, LocalFeatures | None] = {}
        self._queries: dict[tuple[str, Box | None], LocalFeatures | None] = {}

    def query_features(self, probe: Probe) -> LocalFeatures | None:
        """The query region's local features (None: the photo could not be read), once."""
        key = probe_key(probe)
        if key not in self._queries:
            try:
                region = prepare_region(probe.path, probe.box, self.scorer.max_side)
                self._queries[key] = self.scorer.extract(region)
            except ImageLoadError:
                self._queries[key] = None
        return self._queries[key]

    def rescore(self, probe: Probe, candidates: Sequence[Candidate]) -> list[Candidate]:
        """The best ``top_k`` individuals of the re-ranked shortlist, scored by ``rank_by``'s
        probability, best first (``candidates``, the search's, are not needed)."""
        photos = self.gallery.search_photos(
            probe.vector, model_fingerprint=self.gallery.model_fingerprint, k=self.shortlist
        )[0]
        self._decision.pop(probe_key(probe), None)
        if not photos:
            return []
        query = self.query_features(probe)
        stored = self._gallery_features([p.image_id for p in photos])
        found = self._match_all(query, [stored[p.image_id] for p in photos])
        raw = {"cosine": np.array([p.score for p in photos], np.float64),
               self.scorer.name: np.array([c.score for c in found], np.float64)}  # fmt: skip
        probs = self.fusion.probabilities(raw)
        probs["fused"] = self.fusion.fuse(probs)
        ranking = probs[self.name]
        if self.decide_by is not None:
            deciding = raw["cosine"] if self.decide_by == "cosine" else probs[self.decide_by]
            self._decision[probe_key(probe)] = float(np.max(deciding))
        order = np.lexsort((-raw["cosine"], -ranking))  # ties: the higher cosine first
        chosen: dict[str, int] = {}
        for i in order:
            chosen.setdefault(photos[i].individual, int(i))
        best = list(chosen.values())[: self.top_k]
        self.evidence[probe_key(probe)] = {
            photos[i].image_id: self._evidence(i, photos[i].image_id, raw, probs, query,
                                               stored[photos[i].image_id], found[i])
            for i in best
        }  # fmt: skip
        return [replace(photos[i], score=float(ranking[i])) for i in best]

    def decision_score(self, probe: Probe) -> float | None:
        """The query's best ``decide_by`` score from its last :meth:`rescore` (None: the best
        candidate's score decides, or the query had no shortlist)."""
        return self._decision.get(probe_key(probe))

    def _gallery_features(self, image_ids: list[int]) -> dict[int, LocalFeatures | None]:
        """Decoded stored features of these photos (None: none stored), cached by image id."""
        missing = [i for i in image_ids if i not in self._photos]
        if missing:
            if len(self._photos) + len(missing) > self._cache_photos:
                self._photos.clear()
            blobs = self.gallery.local_features(missing)
            for i in missing:
                blob = blobs.get(i)
                self._photos[i] = None if blob is None else LocalFeatures.from_bytes(blob)
        return {i: self._photos[i] for i in image_ids}

    def _match_all(
        self, query: LocalFeatures | None, stored: list[LocalFeatures | None]
    ) -> list[Correspondences]:
        """The verified correspondences of the query with each photo (empty where either side
        has no features)."""

        def one(candidate: LocalFeatures | None) -> Correspondences:
            if query is None or candidate is None or not len(query) or not len(candidate):
                return Correspondences.empty()
            return self.scorer.match(query, candidate)

        if self.workers <= 1:
            return [one(c) for c in stored]
        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(one, stored))

    def _evidence(self, i: int, image_id: int, raw: dict[str, np.ndarray],
                  probs: dict[str, np.ndarray], query: LocalFeatures | None,
                  candidate: LocalFeatures | None, found: Correspondences) -> Evidence:  # fmt: skip
        """The :class:`Evidence` of shortlist photo ``i``."""
        return Evidence(
            image_id,
            {s: float(v[i]) for s, v in raw.items()},
            {s: float(v[i]) for s, v in probs.items()},
            found.query_xy,
            found.candidate_xy,
            query.size if query is not None else (0, 0),
            candidate.size if candidate is not None else (0, 0),
        )


def rerank_and_decide(
    probes: Sequence[Probe],
    candidates: Sequence[Sequence[Candidate]],
    threshold: float | None,
    reranker: Reranker | None = None,
) -> list[Match]:
    """Rescore each query's candidates with ``reranker`` (None: keep the search's cosine
    scores), then decide known / NEW at ``threshold`` (on the re-ranker's ``decision_score``
    of the query where it has one). One :class:`Match` per probe."""
    if len(probes) != len(candidates):
        raise ValueError(f"{len(probes)} probes but {len(candidates)} candidate lists")
    scorer = reranker or CosineScorer()
    apart = getattr(scorer, "decision_score", None)  # one score names, another calls NEW
    out = []
    for probe, found in zip(probes, candidates, strict=True):
        ranked = scorer.rescore(probe, found)
        out.append(decide(ranked, threshold, apart(probe) if apart is not None else None))
    return out


__all__ = [
    "CosineScorer",
    "Evidence",
    "LocalReranker",
    "Probe",
    "Reranker",
    "probe_key",
    "rerank_and_decide",
]
