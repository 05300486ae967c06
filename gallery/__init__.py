"""Search side of the toolkit (no torch): gallery store, FAISS index, thresholds, decisions.

Typical use::

    from reid.gallery import Gallery, ImageRecord

    g = Gallery.open_or_create("gallery/", model_fingerprint=fp, embedding_dim=512)
    report = g.enroll([ImageRecord(Path("a.jpg"), "JGS-001")], vectors, model_fingerprint=fp)
    g.calibrate(target_fmr=0.05)
    match = g.identify(query_vectors, model_fingerprint=fp)[0]   # match.decision: id or "NEW"

``identify`` is ``search`` then ``decide``; call them apart to rescore candidates in between::

    candidates = g.search(query_vectors, model_fingerprint=fp, top_k=5)[0]
    match = decide(my_rescoring(candidates), g.threshold)
"""

from reid.gallery.core import Gallery
from reid.gallery.decide import decide, is_new
from reid.gallery.errors import GalleryError
from reid.gallery.index import VectorIndex
from reid.gallery.records import (
    NEW,
    Calibration,
    Candidate,
    Duplicate,
    EnrollFailure,
    EnrollReport,
    ImageRecord,
    IndividualSummary,
    Match,
    StoredImage,
    validate_individual_id,
)
from reid.gallery.threshold import ThresholdFit, TrialScores, fit_threshold, threshold_for_fmr

__all__ = [
    "NEW",
    "Calibration",
    "Candidate",
    "Duplicate",
    "EnrollFailure",
    "EnrollReport",
    "Gallery",
    "GalleryError",
    "ImageRecord",
    "IndividualSummary",
    "Match",
    "StoredImage",
    "ThresholdFit",
    "TrialScores",
    "VectorIndex",
    "decide",
    "fit_threshold",
    "is_new",
    "threshold_for_fmr",
    "validate_individual_id",
]
