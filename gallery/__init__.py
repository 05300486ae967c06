"""Search side of the toolkit (no torch): gallery store, FAISS index, open-set decision.

Typical use::

    from reid.gallery import Gallery, ImageRecord

    g = Gallery.open_or_create("gallery/", model_fingerprint=fp, embedding_dim=512)
    report = g.enroll([ImageRecord(Path("a.jpg"), "JGS-001")], vectors, model_fingerprint=fp)
    g.calibrate(target_fmr=0.05)
    match = g.identify(query_vectors, model_fingerprint=fp)[0]   # match.decision: id or "NEW"
"""

from reid.gallery.core import Gallery
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
    "VectorIndex",
    "validate_individual_id",
]
