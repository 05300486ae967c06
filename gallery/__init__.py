"""Search side of the toolkit (no torch): gallery store, FAISS index, open-set decision.

Typical use::

    from gallery import Gallery, ImageRecord

    g = Gallery.open_or_create("gallery/", model_fingerprint=fp, embedding_dim=512)
    report = g.enroll([ImageRecord(Path("a.jpg"), "JGS-001")], vectors, model_fingerprint=fp)
    g.calibrate(target_fmr=0.05)
    match = g.identify(query_vectors, model_fingerprint=fp)[0]   # match.decision: id or "NEW"
"""

from gallery.core import Gallery
from gallery.errors import GalleryError
from gallery.index import VectorIndex
from gallery.records import (
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
