"""The benchmarks' gallery-evaluation routine: answers beside the truth, failures as misses."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from reid.evaluation.gallery_eval import GalleryAnswers, query_gallery
from reid.io.datasets import ImageRecord


def test_rates_are_shares_of_the_masked_queries():
    answers = GalleryAnswers(
        truth=np.array(["a", "b", "c", "x"], dtype=object),
        top1=np.array(["a", "a", "c", "a"], dtype=object),
        decision=np.array(["a", "NEW", "c", "NEW"], dtype=object),
        is_new=np.array([False, True, False, True]),
        matches=[None] * 4,
    )
    known = np.array([True, True, True, False])
    assert answers.rank1(known) == 2 / 3 and answers.rank1() == 0.5
    assert answers.accepted(known) == 2 / 3
    assert answers.flagged_new(~known) == 1.0 and answers.flagged_new(known) == 1 / 3
    assert answers.rank1(np.zeros(4, bool)) is None  # nobody in the mask: no rate, not 0


def _match(individual: str, is_new: bool) -> SimpleNamespace:
    cand = SimpleNamespace(individual=individual)
    return SimpleNamespace(candidates=[cand], decision="NEW" if is_new else individual,
                           is_new=is_new)  # fmt: skip


def test_a_query_that_cannot_be_embedded_counts_as_a_miss():
    queries = [ImageRecord(Path(f"/q/{i}.jpg"), ind) for i, ind in enumerate(["a", "b", "c"])]
    seen: dict = {}

    class Embedder:  # photo 1 is unreadable
        fingerprint = "fp"

        def embed_paths(self, paths, boxes, progress):
            seen["boxes"] = boxes
            return SimpleNamespace(indices=[0, 2], embeddings=np.eye(2, dtype=np.float32))

    class Gallery:
        def identify(self, embeddings, *, model_fingerprint, top_k):
            assert model_fingerprint == "fp" and len(embeddings) == 2
            return [_match("a", False), _match("z", True)]

    answers = query_gallery(Gallery(), Embedder(), queries)
    assert list(answers.top1) == ["a", None, "z"]
    assert answers.rank1() == 1 / 3  # the unreadable photo is a miss, not a dropped query
    assert list(answers.is_new) == [False, False, True]
    assert answers.matches[1] is None and seen["boxes"] == [None, None, None]
