"""Stage 4, vector -> scores: scorers that compare a query with gallery candidates. The global
cosine scorer answers from the FAISS shortlist; re-rankers rescore that shortlist before the
open-set decision (:mod:`reid.gallery.decide`)."""
