"""Enroll and match: photos -> embeddings (reid) -> gallery (search side).

The CLI's ``enroll`` and ``match`` are thin wrappers around these functions, so a Python user
gets the same behaviour without copying any CLI code.
"""

from __future__ import annotations

import getpass
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from gallery import NEW, EnrollReport, Gallery, ImageRecord, Match
from reid.data import Sample
from reid.embed import Embedder
from reid.errors import ImageLoadError, ReIDError
from reid.imageio import IMAGE_SUFFIXES


@dataclass
class EnrollOutcome:
    report: EnrollReport
    unreadable: list[ImageLoadError] = field(default_factory=list)

    def summary(self) -> str:
        text = self.report.summary()
        return text + "".join(f"; skipped {e.path}: {e.reason}" for e in self.unreadable)


@dataclass
class MatchRow:
    """One query photo's answer; ``match`` is None when the photo could not be read."""

    path: Path
    match: Match | None
    error: str = ""
    enrolled_as: str = ""  # set when --enroll-new enrolled this photo as a new individual


def expand_photos(items: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders expanded to the images inside (sorted); missing paths -> error."""
    out: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            out += sorted(
                p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        elif item.exists():
            out.append(item)
        else:
            raise ReIDError(f"Photo {item} does not exist: check the path.")
    return out


def open_gallery(
    directory: str | Path, embedder: Embedder, *, create: bool, index_factory: str = "Flat"
) -> Gallery:
    """Open (or, when ``create``, make) a gallery and check it suits this model."""
    if create:
        return Gallery.open_or_create(
            directory,
            model_fingerprint=embedder.fingerprint,
            embedding_dim=embedder.loaded.model.embedding_dim,
            index_factory=index_factory,
        )
    gallery = Gallery.open(directory)
    gallery.check_model(embedder.fingerprint, embedder.loaded.model.embedding_dim)
    return gallery


def to_record(sample: Sample, observer: str = "") -> ImageRecord:
    return ImageRecord(
        path=Path(sample.path),
        individual=sample.individual,
        date=sample.date,
        time=sample.time,
        location=sample.location,
        observer=sample.get("observer") or observer,
        condition=sample.condition,
        side=sample.side,
        sighting=sample.sighting,
    )


def enroll_samples(
    gallery: Gallery,
    samples: Sequence[Sample],
    embedder: Embedder,
    *,
    observer: str = "",
    user: str | None = None,
    progress: bool = True,
) -> EnrollOutcome:
    """Embed and enroll labelled photos; unreadable ones are reported, the rest goes on."""
    result = embedder.embed_paths([s.path for s in samples], progress=progress, desc="enrolling")
    records = [to_record(samples[i], observer) for i in result.indices]
    report = gallery.enroll(
        records,
        result.embeddings,
        model_fingerprint=embedder.fingerprint,
        user=user or getpass.getuser(),
    )
    return EnrollOutcome(report, result.failures)


def match_photos(
    gallery: Gallery,
    photos: Sequence[Path],
    embedder: Embedder,
    *,
    top_k: int = 5,
    enroll_new: bool = False,
    user: str | None = None,
    progress: bool = True,
) -> list[MatchRow]:
    """Identify each photo: a known individual or NEW. With ``enroll_new``, NEW photos are
    enrolled one by one as new individuals, so a second photo of the same newcomer in the same
    batch is matched to the first rather than becoming another new individual."""
    result = embedder.embed_paths(list(photos), progress=progress, desc="matching")
    rows = {i: MatchRow(photos[i], None, "") for i in range(len(photos))}
    for err in result.failures:
        index = photos.index(err.path) if err.path in photos else None
        if index is not None:
            rows[index].error = err.reason
    matches = (
        gallery.identify(result.embeddings, model_fingerprint=embedder.fingerprint, top_k=top_k)
        if result.indices
        else []
    )
    for k, (i, match) in enumerate(zip(result.indices, matches, strict=True)):
        if enroll_new and match.is_new:
            match = gallery.identify(
                result.embeddings[k : k + 1], model_fingerprint=embedder.fingerprint, top_k=top_k
            )[0]
            if match.is_new:
                rows[i].enrolled_as = _enroll_new(
                    gallery, photos[i], result.embeddings[k], embedder, user
                )
        rows[i].match = match
    return [rows[i] for i in range(len(photos))]


def _enroll_new(gallery: Gallery, photo: Path, vector, embedder: Embedder, user: str | None) -> str:
    known = {s.individual for s in gallery.individuals()}
    stamp = datetime.now().strftime("%Y%m%d")
    n = 1
    while f"ind-{stamp}-{n:03d}" in known:
        n += 1
    new_id = f"ind-{stamp}-{n:03d}"
    gallery.enroll(
        [ImageRecord(path=photo, individual=new_id)],
        vector[None],
        model_fingerprint=embedder.fingerprint,
        user=user or getpass.getuser(),
    )
    return new_id


__all__ = [
    "NEW",
    "EnrollOutcome",
    "MatchRow",
    "enroll_samples",
    "expand_photos",
    "match_photos",
    "open_gallery",
]
