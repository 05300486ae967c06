"""The field workflow: enroll labelled photos, match new ones, write match sheets.

photos -> (heads) -> embeddings (reid) -> gallery search -> re-rank (reid.matching) -> decide.
The CLI's ``enroll`` and ``match`` are thin wrappers around these functions, so a Python user
gets the same behaviour without copying any CLI code::

    rows = match_photos(gallery, photos, embedder, MatchOptions(top_k=3))
    write_match_sheets(rows, "sheets/", gallery)
"""

from __future__ import annotations

import getpass
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from reid.errors import ImageLoadError, ReIDError
from reid.features.embedder import Embedder
from reid.gallery import (
    EnrollReport,
    Gallery,
    GalleryError,
    ImageRecord,
    Match,
    validate_individual_id,
)
from reid.io.datasets import is_photo
from reid.matching.rerank import Evidence, Probe, Reranker, probe_key, rerank_and_decide
from reid.matching.sheets import write_match_sheets

if TYPE_CHECKING:
    from reid.detect.detector import HeadDetector
    from reid.matching.fused import ScorerChoice
    from reid.matching.local import LocalScorer


@dataclass
class EnrollOutcome:
    report: EnrollReport
    unreadable: list[ImageLoadError] = field(default_factory=list)
    bad_ids: list[tuple[Path, str]] = field(default_factory=list)  # (photo, why its id is refused)
    no_head: list[str] = field(default_factory=list)  # photos the detector left out, and why

    def summary(self) -> str:
        text = self.report.summary()
        text += "".join(f"; skipped {e.path}: {e.reason}" for e in self.unreadable)
        text += "".join(f"; skipped {line}" for line in self.no_head)
        return text + "".join(f"; skipped {path}: {why}" for path, why in self.bad_ids)


@dataclass
class MatchRow:
    """One query's answer: a photo, or one head in it when a detector cropped the photo.
    ``match`` is None when the photo could not be read or no head was found (``error`` says)."""

    path: Path
    match: Match | None
    error: str = ""
    enrolled_as: str = ""  # set when --enroll-new enrolled this photo as a new individual
    box: tuple[int, int, int, int] | None = None  # the region identified (detector crop)
    head: int = 0  # 1-based number of this head in its photo (0: no detector)
    heads: int = 0  # heads found in the photo
    confidence: float | None = None  # the detector's confidence in this head
    screen: dict[str, float] | None = None  # category probabilities from a screen run
    evidence: dict[int, Evidence] | None = None  # local re-ranking: image id -> why it scored
    vector: np.ndarray | None = None  # (D,) the query's embedding (None: not embedded)

    @property
    def label(self) -> str:
        from reid.detect.heads import query_label

        return query_label(self.path, self.head, self.heads)


def expand_photos(items: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders expanded to the images inside (sorted); missing paths -> error."""
    out: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            out += sorted(p for p in item.rglob("*") if is_photo(p))
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
            embedding_dim=embedder.loaded.embedding_dim,
            index_factory=index_factory,
        )
    gallery = Gallery.open(directory)
    try:
        gallery.check_model(embedder.fingerprint, embedder.loaded.embedding_dim)
    except GalleryError:
        gallery.close()
        raise
    return gallery


def enroll_samples(
    gallery: Gallery,
    samples: Sequence[ImageRecord],
    embedder: Embedder,
    *,
    observer: str = "",
    user: str | None = None,
    progress: bool = True,
    detector: HeadDetector | None = None,
    best: bool = False,
    local: tuple[LocalScorer, dict] | None = None,
) -> EnrollOutcome:
    """Embed and enroll labelled photos; unreadable photos and photos with an invalid individual
    id are reported by name, the rest goes on. Ids are checked before any embedding is done.

    With a ``detector`` each photo is cropped to its head (the box is stored with the record);
    a photo with no head, or with several unless ``best``, is reported and never enrolled.
    ``local``: (scorer, spec) from :func:`reid.matching.fused.scorer_spec`: each embedded
    photo's local features are extracted from the same region and stored with it (None for a
    photo they cannot be extracted from, which still enrolls)."""
    if local is not None:  # another extractor's features: refused before any work is done
        gallery.check_local(local[0].fingerprint)
    valid, bad_ids = [], []
    for s in samples:
        try:
            validate_individual_id(s.individual)
            valid.append(s)
        except GalleryError as exc:
            bad_ids.append((Path(s.path), str(exc)))
    samples = valid
    no_head: list[str] = []
    if detector is not None:
        from reid.detect.heads import crop_samples

        search = crop_samples(detector, samples, best=best, progress=progress)
        samples, no_head = search.samples, search.problems()
    result = embedder.embed_paths(
        [s.path for s in samples], [s.box for s in samples], progress=progress, desc="enrolling"
    )
    records = [samples[i] for i in result.indices]
    if observer:  # the command's --observer fills in photos whose manifest names nobody
        records = [r if r.observer else replace(r, observer=observer) for r in records]
    blobs = None
    if local is not None and records:
        from reid.matching.pairs import extract_all

        found = extract_all(local[0], records, progress=progress)
        blobs = [None if f is None else f.to_bytes() for f in found]
    report = gallery.enroll(
        records,
        result.embeddings,
        model_fingerprint=embedder.fingerprint,
        user=user or getpass.getuser(),
        local_features=blobs,
        local_fingerprint=local[0].fingerprint if local is not None else None,
        local_scorer=local[1] if local is not None else None,
    )
    return EnrollOutcome(report, result.failures, bad_ids, no_head)


@dataclass
class MatchOptions:
    """How :func:`match_photos` identifies photos; the defaults match whole photos, top 5."""

    top_k: int = 5  # candidate individuals per query
    enroll_new: bool = False  # enroll queries decided NEW as new individuals (needs a threshold)
    user: str | None = None  # name for the audit log of enroll_new (default: login)
    progress: bool = True
    detector: HeadDetector | None = None  # each head found becomes its own query
    best: bool = False  # with a detector: only the most confident head of each photo
    screener: Embedder | None = None  # a category run (e.g. native / hybrid): fills row.screen
    reranker: Reranker | None = None  # rescores the shortlist before deciding (None: cosine)
    threshold: float | None = None  # None: the gallery's calibrated threshold
    # auto | global | sift | xfeat | fused; None = auto: the roles `reid calibrate` measured
    # (see reid.matching.fused.choose_scorer), global without a fused calibration; ignored
    # when reranker is given
    scorer: str | None = None
    shortlist: int | None = None  # gallery photos a local re-ranker sees (None: calibrated)


def match_photos(
    gallery: Gallery,
    photos: Sequence[Path],
    embedder: Embedder,
    options: MatchOptions | None = None,
) -> list[MatchRow]:
    """Identify each photo: a known individual or NEW, one :class:`MatchRow` per query.

    Each query goes search (the gallery's cosine shortlist) -> ``options.reranker`` (if any)
    -> decide at the threshold, read once for the batch. With ``enroll_new``, NEW queries are
    enrolled one by one as new individuals, so a second photo of the same newcomer in the
    batch is matched to the first rather than becoming another new individual.

    With a ``detector``, each head found becomes its own query (only the most confident with
    ``best``), cropped by the detector's rule; a photo with no head gives one row whose error
    is "no head found". With a ``screener`` each matched row also gets its category
    probabilities (``row.screen``)."""
    from reid.detect.heads import head_queries

    opts, _ = resolve_scorer(gallery, options or MatchOptions())
    if opts.enroll_new and opts.threshold is None and gallery.threshold is None:
        raise ReIDError(
            f"Enrolling NEW photos needs a calibrated threshold: run `reid calibrate "
            f"{gallery.directory}` first, or every photo would be matched to its nearest "
            "individual."
        )
    queries = head_queries(opts.detector, [Path(p) for p in photos], best=opts.best,
                           progress=opts.progress)  # fmt: skip
    rows = [
        MatchRow(q.path, None, q.error, box=q.box, head=q.head, heads=q.heads,
                 confidence=q.confidence)
        for q in queries
    ]  # fmt: skip
    todo = [k for k, q in enumerate(queries) if not q.error]
    result = embedder.embed_paths(
        [queries[k].path for k in todo],
        [queries[k].box for k in todo],
        progress=opts.progress,
        desc="matching",
    )
    for i, err in zip(result.failed_indices, result.failures, strict=True):
        rows[todo[i]].error = err.reason
    done = [rows[todo[i]] for i in result.indices]
    probes = [Probe(r.path, v, r.box) for r, v in zip(done, result.embeddings, strict=True)]
    matches = identify_probes(gallery, probes, embedder.fingerprint, opts)
    for row, probe, match in zip(done, probes, matches, strict=True):
        row.vector = probe.vector
        if opts.enroll_new and match.is_new:  # an earlier newcomer of this batch may be it
            match = identify_probes(gallery, [probe], embedder.fingerprint, opts)[0]
            if match.is_new:
                row.enrolled_as, row.error = _enroll_new(
                    gallery, probe, embedder, opts.user, opts.reranker
                )
        row.match = match
        row.evidence = getattr(opts.reranker, "evidence", {}).get(probe_key(probe))
    if opts.screener is not None:
        _screen_rows([r for r in rows if r.match is not None], opts.screener, opts.progress)
    return rows


def resolve_scorer(gallery: Gallery, options: MatchOptions) -> tuple[MatchOptions, ScorerChoice]:
    """``options`` with the re-ranker and threshold of ``options.scorer`` filled in (unchanged
    when a re-ranker is given), and the choice made (its ``note`` says why, for people)."""
    from reid.matching.fused import ScorerChoice, choose_scorer

    if options.reranker is not None:
        return options, ScorerChoice(options.reranker.name, options.reranker, options.threshold)
    choice = choose_scorer(
        gallery, options.scorer, top_k=options.top_k, shortlist=options.shortlist
    )
    threshold = options.threshold if options.threshold is not None else choice.threshold
    return replace(options, reranker=choice.reranker, threshold=threshold), choice


def identify_probes(
    gallery: Gallery,
    probes: Sequence[Probe],
    model_fingerprint: str,
    options: MatchOptions,
) -> list[Match]:
    """Search the gallery for each probe, rescore with ``options.reranker``, decide at
    ``options.threshold`` (None: the gallery's calibrated threshold, read in the same snapshot
    as the search): the three matching steps, one :class:`Match` per probe."""
    if not probes:
        return []
    found, threshold = gallery.search_with_threshold(
        np.stack([p.vector for p in probes]),
        model_fingerprint=model_fingerprint,
        top_k=options.top_k,
    )
    if options.threshold is not None:
        threshold = options.threshold
    return rerank_and_decide(probes, found, threshold, options.reranker)


def _screen_rows(rows: Sequence[MatchRow], screener: Embedder, progress: bool) -> None:
    """Set each row's category probabilities (None where its photo could not be screened)."""
    from reid.explain.screen import screen_items

    answers = screen_items(screener, [r.path for r in rows], [r.box for r in rows],
                           progress=progress)  # fmt: skip
    for row, answer in zip(rows, answers, strict=True):
        row.screen = answer if isinstance(answer, dict) else None


def new_individual_id() -> str:
    """A fresh individual id: the time plus a random suffix, so two field laptops (or the web
    app and a laptop) making newcomers at the same moment never give two animals one id."""
    return f"ind-{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def _enroll_new(
    gallery: Gallery,
    probe: Probe,
    embedder: Embedder,
    user: str | None,
    reranker: Reranker | None = None,
) -> tuple[str, str]:
    """Enroll one NEW photo under a fresh id; returns (id, "") or ("", why it was not enrolled).

    The id comes from :func:`new_individual_id`. A local re-ranker's query features are stored
    with it, so that the newcomer can be re-ranked too."""
    new_id = new_individual_id()
    features = reranker.query_features(probe) if hasattr(reranker, "query_features") else None
    local_fp = getattr(getattr(reranker, "scorer", None), "fingerprint", None)
    report = gallery.enroll(
        [ImageRecord(path=probe.path, individual=new_id, box=probe.box)],
        probe.vector[None],
        model_fingerprint=embedder.fingerprint,
        user=user or getpass.getuser(),
        local_features=[features.to_bytes()] if features is not None and local_fp else None,
        local_fingerprint=local_fp if features is not None else None,
    )
    if report.added:
        return new_id, ""
    if report.duplicates:
        return (
            "",
            f"not enrolled: already in the gallery as {report.duplicates[0].existing_individual}",
        )
    return "", f"not enrolled: {report.failed[0].reason if report.failed else 'unknown reason'}"


__all__ = [
    "EnrollOutcome",
    "MatchOptions",
    "MatchRow",
    "enroll_samples",
    "expand_photos",
    "identify_probes",
    "match_photos",
    "new_individual_id",
    "open_gallery",
    "resolve_scorer",
    "write_match_sheets",
]
