"""Evaluate a gallery the way the field uses it: enroll photos of known individuals, query it
with later photos and photos of never-seen ones, and read known rank-1, the share of known photos
accepted as the right individual, and the share of never-seen photos called NEW.

The one gallery-evaluation routine of the benchmarks (end to end, detector, hybrid screen).
A query that could not be embedded counts as a miss, never as a dropped query.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from reid.features.embedder import Embedder
from reid.gallery import Gallery
from reid.io.datasets import ImageRecord

if TYPE_CHECKING:
    from reid.pipeline import EnrollOutcome


@dataclass
class GalleryAnswers:
    """Each query's answer beside its truth; arrays (Q,), one row per query in the order given.

    ``top1`` is the best candidate individual and ``decision`` the gallery's call at its
    threshold (the individual, or NEW); both are None for a query that could not be embedded.
    ``matches`` holds each answered query's ``Match`` (None where unanswered).
    """

    truth: np.ndarray  # (Q,) object: the query's true individual
    top1: np.ndarray  # (Q,) object
    decision: np.ndarray  # (Q,) object
    is_new: np.ndarray  # (Q,) bool: called NEW (False where unanswered)
    matches: list  # (Q,) gallery Match or None

    def _mean(self, hits: np.ndarray, mask: np.ndarray | None) -> float | None:
        hits = hits if mask is None else hits[np.asarray(mask, bool)]
        return float(hits.mean()) if len(hits) else None

    def rank1(self, mask: np.ndarray | None = None) -> float | None:
        """Share of the (masked) queries whose best candidate is their individual; None if no
        query is in the mask."""
        return self._mean(self.top1 == self.truth, mask)

    def accepted(self, mask: np.ndarray | None = None) -> float | None:
        """Share of the (masked) queries the gallery accepts as their own individual."""
        return self._mean(self.decision == self.truth, mask)

    def flagged_new(self, mask: np.ndarray | None = None) -> float | None:
        """Share of the (masked) queries called NEW."""
        return self._mean(self.is_new, mask)


def enrolled_gallery(
    folder: Path,
    embedder: Embedder,
    samples: Sequence[ImageRecord],
    *,
    detector: object | None = None,
    local: str | None = None,
) -> tuple[Gallery, EnrollOutcome]:
    """A new gallery in ``folder`` (anything there is replaced) for ``embedder``'s model, with
    ``samples`` enrolled (through ``detector``, as ``reid enroll --detector``, when given; with
    the ``local`` scorer's features, as ``reid enroll --local``, when given)."""
    from reid.pipeline import enroll_samples

    shutil.rmtree(folder, ignore_errors=True)
    gallery = Gallery.create(
        folder,
        model_fingerprint=embedder.fingerprint,
        embedding_dim=embedder.loaded.embedding_dim,
    )
    spec = None
    if local is not None:
        from reid.matching.fused import scorer_spec

        spec = scorer_spec(local)
    outcome = enroll_samples(gallery, samples, embedder, progress=False, detector=detector,
                             local=spec)  # fmt: skip
    return gallery, outcome


def query_gallery(
    gallery: Gallery,
    embedder: Embedder,
    queries: Sequence[ImageRecord],
    *,
    top_k: int = 5,
    scorer: str | None = None,
) -> GalleryAnswers:
    """Embed ``queries`` (cropped to their ``box`` where they have one) and ask ``gallery`` who
    each one is, at its calibrated threshold if it has one; ``scorer``: as ``reid match
    --scorer`` (None: the cosine search alone, as ``Gallery.identify``)."""
    emb = embedder.embed_paths([q.path for q in queries], [q.box for q in queries],
                               progress=False)  # fmt: skip
    if scorer is None:
        found = gallery.identify(emb.embeddings, model_fingerprint=embedder.fingerprint,
                                 top_k=top_k)  # fmt: skip
    else:
        from reid.matching import Probe
        from reid.pipeline import MatchOptions, identify_probes, resolve_scorer

        opts, _ = resolve_scorer(gallery, MatchOptions(top_k=top_k, scorer=scorer))
        probes = [Probe(queries[i].path, v, queries[i].box)
                  for i, v in zip(emb.indices, emb.embeddings, strict=True)]  # fmt: skip
        found = identify_probes(gallery, probes, embedder.fingerprint, opts)
    matches: list = [None] * len(queries)
    for i, m in zip(emb.indices, found, strict=True):
        matches[i] = m
    return GalleryAnswers(
        truth=np.array([q.individual for q in queries], dtype=object),
        top1=np.array(
            [m.candidates[0].individual if m and m.candidates else None for m in matches],
            dtype=object,
        ),  # fmt: skip
        decision=np.array([m.decision if m else None for m in matches], dtype=object),
        is_new=np.array([bool(m and m.is_new) for m in matches], dtype=bool),
        matches=matches,
    )
