"""Plain records that cross the gallery's API: what goes in, what comes out.

Every record is a frozen dataclass of plain values so that the CLI and other tools can print,
compare and serialise them without knowing anything about SQLite or FAISS.
"""

from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reid.gallery.errors import GalleryError

NEW = "NEW"
"""The decision for a query that matches no known individual well enough."""

MAX_ID_LENGTH = 128


def validate_individual_id(individual: str) -> str:
    """Return ``individual`` stripped, or raise :class:`GalleryError` naming the rule it breaks."""
    if not isinstance(individual, str):
        raise GalleryError(f"Individual id {individual!r} must be text.")
    name = individual.strip()
    rule = None
    if not name:
        rule = "must not be empty"
    elif len(name) > MAX_ID_LENGTH:
        rule = f"must be at most {MAX_ID_LENGTH} characters long (it has {len(name)})"
    elif "/" in name or "\\" in name:
        rule = "must not contain '/' or '\\'"
    elif any(unicodedata.category(ch) == "Cc" for ch in name):
        rule = "must not contain control characters such as tabs or newlines"
    elif name in (".", ".."):
        rule = "must not be '.' or '..'"
    elif name.upper() == NEW:
        rule = f"must not be '{NEW}' in any case, which is the decision for an unknown animal"
    if rule:
        raise GalleryError(f"Individual id {individual!r} is not allowed: it {rule}.")
    return name


STANDARD_COLUMNS = ("date", "time", "condition", "location", "observer", "side", "sighting")
"""The optional manifest columns that :class:`ImageRecord` holds as fields; others go to attrs."""


@dataclass(frozen=True)
class ImageRecord:
    """One photo of one individual and what is known about it: the one photo record of the
    toolkit, read from a data set or manifest, enrolled into a gallery, split for training.

    ``box`` is the region ``(x0, y0, x1, y1)`` in pixels of the upright photo to use (the crop
    the embedding is computed from), or None for the whole photo. Dates are best written
    ISO-style (``2024-05-31``) so that first/last dates sort correctly. ``sighting`` groups
    photos taken together (one video burst, the left and right flank of one encounter): they are
    near-duplicates and must never be split across train and test. ``attrs`` holds a manifest's
    extra columns (e.g. ``population`` for the native-vs-hybrid screen).
    """

    path: Path
    individual: str
    date: str = ""
    time: str = ""
    location: str = ""
    observer: str = ""
    condition: str = ""
    side: str = ""
    sighting: str = ""
    box: tuple[int, int, int, int] | None = None
    attrs: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.box is not None and len(self.box) != 4:
            raise GalleryError(f"Crop box {self.box} of {self.path} is not (x0, y0, x1, y1).")

    @property
    def group(self) -> str:
        """The unit a split keeps together: the sighting, or the photo itself if none is given."""
        return f"{self.individual}\x1f{self.sighting or self.path}"

    def get(self, column: str) -> str:
        """A standard column, ``individual``, or an extra one from the manifest; '' if absent."""
        if column in STANDARD_COLUMNS or column == "individual":
            return getattr(self, column)
        return self.attrs.get(column, "")


@dataclass(frozen=True)
class Candidate:
    """One known individual proposed for a query; ``image_*`` is its best-scoring gallery photo."""

    individual: str
    score: float
    image_id: int
    image_path: Path


@dataclass(frozen=True)
class Match:
    """The open-set answer for one query photo.

    ``score`` is the best individual's cosine similarity (-1.0 when the gallery is empty);
    ``threshold`` is None and ``calibrated`` False when the gallery has not been calibrated, in
    which case ``decision`` is simply the best individual.
    """

    decision: str
    is_new: bool
    score: float
    threshold: float | None
    calibrated: bool
    candidates: list[Candidate]


@dataclass(frozen=True)
class Duplicate:
    """A photo skipped by enroll because its bytes (sha256) are already in the gallery."""

    path: Path
    requested_individual: str
    existing_individual: str
    existing_image_id: int

    @property
    def conflicting(self) -> bool:
        """True when the caller said it is a different individual than the gallery has."""
        return self.requested_individual != self.existing_individual


@dataclass(frozen=True)
class EnrollFailure:
    """A photo that could not be enrolled; the rest of the batch went on."""

    path: Path
    reason: str


@dataclass(frozen=True)
class EnrollReport:
    """What one enroll call did. ``added`` are the new image ids in input order."""

    added: list[int]
    duplicates: list[Duplicate]
    failed: list[EnrollFailure]
    new_individuals: list[str]
    generation: int

    def summary(self) -> str:
        """One line for people: counts, then each duplicate and failure by name."""
        parts = [f"enrolled {len(self.added)} photo(s)"]
        if self.new_individuals:
            parts.append(f"{len(self.new_individuals)} new individual(s)")
        for dup in self.duplicates:
            note = f" (you said {dup.requested_individual})" if dup.conflicting else ""
            parts.append(
                f"skipped {dup.path}: already in the gallery as {dup.existing_individual}{note}"
            )
        parts.extend(f"failed {f.path}: {f.reason}" for f in self.failed)
        return "; ".join(parts)


@dataclass(frozen=True)
class IndividualSummary:
    """One known individual: how many photos and the first/last date they were taken."""

    individual: str
    num_images: int
    first_date: str
    last_date: str
    created_at: str
    notes: str = ""

    @property
    def id(self) -> str:
        """The individual's id (same as :attr:`individual`)."""
        return self.individual


@dataclass(frozen=True)
class StoredImage:
    """One enrolled photo as the gallery keeps it; ``path`` is the copy inside the gallery."""

    image_id: int
    individual: str
    sha256: str
    path: Path
    source_path: str
    date: str
    time: str
    location: str
    observer: str
    condition: str
    side: str
    sighting: str
    box: tuple[int, int, int, int] | None
    enrolled_at: str


@dataclass(frozen=True)
class ThresholdFit:
    """A threshold chosen on trial scores and the rates measured there.

    ``fmr`` is the measured false-match rate at ``threshold`` (<= ``target_fmr``), ``tpr`` the
    fraction of known trials that were identified correctly and at or above the threshold, and
    ``rank1`` the fraction identified correctly ignoring the threshold.
    """

    threshold: float
    target_fmr: float
    fmr: float
    tpr: float
    rank1: float
    num_known_trials: int
    num_unknown_trials: int


@dataclass(frozen=True)
class Calibration(ThresholdFit):
    """A threshold measured on the gallery itself by leave-one-individual-out trials: the fit
    (see :class:`ThresholdFit`) and how, when and on what it was measured."""

    num_individuals: int
    num_images: int
    score_mode: str
    score_k: int
    sampled: bool
    seed: int
    model_fingerprint: str
    generation: int
    at: str
    # Where the unknown trials came from: "never-trained" (individuals the embedding model never
    # saw in training: an honest stand-in for a new animal), "trained" (the model was trained on
    # them: the threshold is optimistic) or "unspecified" (no model information was given).
    unknown_pool: str = "unspecified"
    num_unknown_individuals: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def optimistic(self) -> bool:
        """True unless the unknown trials used individuals the model never trained on."""
        return self.unknown_pool != "never-trained"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (stored in the gallery's settings)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibration:
        """Inverse of :meth:`to_dict`; unknown keys (from newer versions) go to ``extra``."""
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        extra = dict(data.get("extra") or {})
        extra.update({k: v for k, v in data.items() if k not in known and k != "extra"})
        return cls(**{k: v for k, v in data.items() if k in known}, extra=extra)
