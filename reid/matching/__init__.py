"""Stage 4, vector -> scores: scorers that compare a query with gallery candidates. The global
cosine scorer answers from the FAISS shortlist; re-rankers rescore that shortlist before the
open-set decision (:mod:`reid.gallery.decide`).

``rerank``: the :class:`Reranker` protocol, :class:`CosineScorer` (the global score) and
:func:`rerank_and_decide`; ``sheets``: match sheets, each query beside its candidates."""

from reid.matching.rerank import CosineScorer, Probe, Reranker, rerank_and_decide

__all__ = ["CosineScorer", "Probe", "Reranker", "rerank_and_decide"]
