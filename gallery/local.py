"""Local features of gallery photos: keypoints and descriptors of a local-feature extractor
(SIFT, XFeat ...) stored beside each photo's vector, for re-scoring candidates geometrically.

The gallery treats them as opaque bytes (their format is ``LocalFeatures.to_bytes()`` in
``reid.matching.local.features``, which the gallery never imports): one blob per photo in the
``local_features`` table, written in the same transaction as the photo's row (enroll, so that a
killed enroll leaves both or neither) and deleted with it (remove; SQLite's ``ON DELETE CASCADE``
as a second line). Rename and merge change individuals, never image ids, so blobs follow their
photos. Every stored blob comes from one extractor, whose fingerprint is the
``local_fingerprint`` setting; another extractor's features are refused until
``reid gallery reembed`` re-extracts them all (:func:`reextract`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reid.gallery import catalog
from reid.gallery.edits import Inserted, stored_photos
from reid.gallery.errors import GalleryError
from reid.gallery.records import Candidate
from reid.gallery.search import nearest_photos, prepare_queries, to_candidates
from reid.gallery.store import Store, WriteTxn, get_setting, set_setting

SETTING = "local_fingerprint"
FUSED_SETTING = "fused_calibration"  # a re-ranker's calibration, JSON (reid.matching.fused)
SPEC_SETTING = "local_scorer"  # JSON {"name": ..., "settings": {...}}: how to rebuild the scorer
_MAX_SQL_PARAMS = 900  # stay below SQLite's host-parameter limit on old builds

Blob = bytes | bytearray | memoryview
LocalFn = Callable[[list[Path], list[tuple[int, ...] | None]], Sequence[Blob | None]]
"""``local_fn(paths, boxes)``: one blob (or None: no features) per stored photo of a batch."""


@dataclass(frozen=True)
class LocalStats:
    """How much of the gallery has local features (of the current extractor)."""

    fingerprint: str | None  # the extractor's; None while no local features were ever stored
    num_with_features: int  # photos that have local features
    num_images: int  # photos in the gallery
    bytes_per_photo: float  # mean blob size over the photos that have them; 0.0 when none

    def as_dict(self) -> dict[str, Any]:
        """Plain values for ``Gallery.info()`` and JSON."""
        return asdict(self)


def mismatch_message(directory: Path, ours: str, theirs: str) -> str:
    """The one sentence that refuses another extractor's local features."""
    return (
        f"Gallery {directory} holds local features of extractor {ours!r} but these come from "
        f"extractor {theirs!r}; run `reid gallery reembed {directory}` with the {theirs!r} "
        f"extractor to re-extract every photo's local features, or use extractor {ours!r}."
    )


def check(conn: sqlite3.Connection, directory: Path, fingerprint: str | None) -> None:
    """GalleryError if the gallery holds another extractor's features (None: nothing to check)."""
    ours = get_setting(conn, SETTING)
    if fingerprint is not None and ours is not None and fingerprint != ours:
        raise GalleryError(mismatch_message(directory, ours, fingerprint))


def as_blob(blob: Blob | None, what: str) -> bytes | None:
    """``blob`` as bytes (None stays None); GalleryError for anything but non-empty bytes."""
    if blob is None:
        return None
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise GalleryError(
            f"Local features of {what} are a {type(blob).__name__}, not bytes; pass "
            f"LocalFeatures.to_bytes() (or None for a photo without local features)."
        )
    data = bytes(blob)
    if not data:
        raise GalleryError(f"Local features of {what} are empty bytes; pass None instead.")
    return data


def prepare(
    num_records: int, blobs: Sequence[Blob | None] | None, fingerprint: str | None
) -> list[bytes | None] | None:
    """Enroll's ``local_features`` as a list of bytes or None (one per record), or None when
    none were given; GalleryError for a missing fingerprint, a wrong count or a non-bytes blob."""
    if blobs is None:
        return None
    if not isinstance(fingerprint, str) or not fingerprint.strip():
        raise GalleryError(
            "enroll got local features without their extractor's fingerprint; pass "
            "local_fingerprint (the local scorer's .fingerprint) with them."
        )
    blobs = list(blobs)
    if len(blobs) != num_records:
        raise GalleryError(
            f"enroll got {num_records} photo records but {len(blobs)} local-feature blobs; "
            f"pass one blob (or None) per photo."
        )
    return [as_blob(b, f"photo {n}") for n, b in enumerate(blobs)]


def insert(
    txn: WriteTxn,
    directory: Path,
    done: Inserted,
    blobs: Sequence[bytes | None] | None,
    fingerprint: str | None,
    spec: Mapping[str, Any] | None = None,
) -> int:
    """Store the blobs of newly enrolled photos in the enroll's own transaction.

    Checks the fingerprint again under the lock (another process may have re-extracted in
    between). Photo ``done.image_ids[j]`` came from record ``done.positions[j]``; duplicates and
    failures got no id, so their blobs are dropped. The first stored blob fixes the gallery's
    extractor fingerprint, and ``spec`` (how to rebuild the extractor: ``{"name", "settings"}``,
    plain JSON) with it. Returns the number of blobs stored.
    """
    if blobs is None or fingerprint is None:
        return 0
    check(txn.conn, directory, fingerprint)
    first = get_setting(txn.conn, SETTING) is None
    stored = _insert_rows(txn, done.image_ids, done.positions, blobs, fingerprint)
    if stored and first and spec is not None:
        set_setting(txn.conn, SPEC_SETTING, json.dumps(dict(spec), sort_keys=True))
    return stored


def _insert_rows(
    txn: WriteTxn,
    image_ids: Sequence[int],
    positions: Sequence[int],
    blobs: Sequence[bytes | None],
    fingerprint: str,
) -> int:
    """Insert ``blobs[positions[j]]`` for ``image_ids[j]`` (None blobs skipped); returns count."""
    rows = [
        (int(image_id), fingerprint, blob, len(blob))
        for image_id, position in zip(image_ids, positions, strict=True)
        if (blob := blobs[position]) is not None
    ]
    txn.conn.executemany(
        "INSERT INTO local_features(image_id, extractor_fingerprint, blob, nbytes) "
        "VALUES (?, ?, ?, ?)",
        rows,
    )
    if rows and get_setting(txn.conn, SETTING) is None:
        set_setting(txn.conn, SETTING, fingerprint)
    txn.details.update(local_features=len(rows), local_fingerprint=fingerprint)
    return len(rows)


def read(conn: sqlite3.Connection, image_ids: Iterable[int]) -> dict[int, bytes]:
    """The stored blob of each given image id that has one (of the current extractor)."""
    fingerprint = get_setting(conn, SETTING)
    ids = sorted({int(i) for i in image_ids})
    out: dict[int, bytes] = {}
    if fingerprint is None:
        return out
    for begin in range(0, len(ids), _MAX_SQL_PARAMS):
        chunk = ids[begin : begin + _MAX_SQL_PARAMS]
        marks = ",".join("?" * len(chunk))
        out.update(
            conn.execute(
                "SELECT image_id, blob FROM local_features WHERE extractor_fingerprint = ? "
                f"AND image_id IN ({marks})",
                (fingerprint, *chunk),
            )
        )
    return out


def stats(conn: sqlite3.Connection) -> LocalStats:
    """Extractor fingerprint, photos with local features / all photos, mean bytes per photo."""
    fingerprint = get_setting(conn, SETTING)
    num_images = conn.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    count, mean = conn.execute(
        "SELECT COUNT(*), AVG(nbytes) FROM local_features WHERE extractor_fingerprint IS ?",
        (fingerprint,),
    ).fetchone()
    return LocalStats(fingerprint, int(count), int(num_images), float(mean or 0.0))


def extract_photos(
    local_fn: LocalFn,
    paths: list[Path],
    boxes: list[tuple[int, ...] | None],
    batch_size: int,
) -> list[bytes | None]:
    """Run ``local_fn(paths, boxes)`` in batches; one checked blob (or None) per photo."""
    out: list[bytes | None] = []
    for begin in range(0, len(paths), batch_size):
        batch = paths[begin : begin + batch_size]
        got = list(local_fn(batch, boxes[begin : begin + batch_size]))
        if len(got) != len(batch):
            raise GalleryError(
                f"The local-feature function returned {len(got)} results for {len(batch)} "
                f"photos; it must return one blob (or None) per photo."
            )
        out += [as_blob(b, f"stored photo {p}") for b, p in zip(got, batch, strict=True)]
    return out


def require_fingerprint(local_fn: LocalFn | None, fingerprint: str | None) -> None:
    """GalleryError unless a reembed's ``local_fn`` comes with a non-empty fingerprint."""
    if local_fn is not None and (not isinstance(fingerprint, str) or not fingerprint.strip()):
        raise GalleryError(
            "reembed got a local-feature function without its extractor's fingerprint; pass "
            "local_fingerprint (the local scorer's .fingerprint) with it."
        )


def reextract(
    txn: WriteTxn,
    directory: Path,
    local_fn: LocalFn | None,
    fingerprint: str | None,
    batch_size: int,
    spec: Mapping[str, Any] | None = None,
) -> int:
    """Replace every photo's local features by ``local_fn``'s, inside a reembed's transaction
    (see ``Gallery.reembed``); the extractor fingerprint becomes ``fingerprint`` and its
    rebuild ``spec`` (see :func:`insert`) replaces the old one. Returns the number of photos
    that got local features (0, changing nothing, when ``local_fn`` is None)."""
    if local_fn is None:
        return 0
    require_fingerprint(local_fn, fingerprint)
    assert fingerprint is not None  # for type checkers: require_fingerprint ensured it
    ids, paths, boxes = stored_photos(txn.conn, directory)
    blobs = extract_photos(local_fn, paths, boxes, batch_size)
    txn.details.update(
        old_local_fingerprint=get_setting(txn.conn, SETTING), new_local_fingerprint=fingerprint
    )
    txn.conn.execute("DELETE FROM local_features")
    stored = _insert_rows(txn, ids, range(len(ids)), blobs, fingerprint)
    set_setting(txn.conn, SETTING, fingerprint)
    set_setting(txn.conn, SPEC_SETTING, None if spec is None else json.dumps(dict(spec)))
    return stored


def check_generation(txn: WriteTxn, directory: Path, expected: int | None) -> None:
    """GalleryError unless the gallery is still at generation ``expected`` (None: no check):
    a re-ranker's calibration measured on a snapshot must not be stored over newer data."""
    if expected is not None and txn.generation - 1 != expected:
        raise GalleryError(
            f"Gallery {directory} changed while its fused calibration was measured "
            f"(generation {expected} -> {txn.generation - 1}); run `reid calibrate` again."
        )


def store_fused(txn: WriteTxn, fused: dict[str, Any] | None) -> None:
    """Store a re-ranker's calibration (``{}``: drop the stored one; None: keep it) in a
    calibrate transaction, stamped with its generation."""
    if fused is None:
        return
    value = json.dumps({**fused, "generation": txn.generation}) if fused else None
    set_setting(txn.conn, FUSED_SETTING, value)
    txn.details["fused"] = fused.get("summary") if fused else None


@dataclass(frozen=True)
class PairInputs:
    """A snapshot of the gallery for scoring photo pairs (a re-ranker's calibration).

    ``image_ids`` (N,) int64 ascending; ``vectors`` (N, D) float32 L2-normalised; ``labels``
    (N,) int individual index into ``names``; ``groups`` (N,) int sighting group (see
    ``catalog.load_calibration_inputs``); ``generation`` the snapshot's generation.
    """

    generation: int
    image_ids: np.ndarray
    vectors: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    names: list[str]


class LocalFeatureMethods:
    """The local-feature and re-ranking part of :class:`reid.gallery.core.Gallery`, mixed into
    it (it keeps ``core.py`` short); it relies on the gallery's ``_store``, ``_mutex``,
    ``_keeper``, ``directory`` and ``check_model``."""

    _store: Store
    _mutex: Any  # the gallery's threading.RLock
    _keeper: Any  # the gallery's IndexKeeper
    directory: Path
    check_model: Callable[..., None]

    @property
    def local_fingerprint(self) -> str | None:
        """Fingerprint of the extractor whose local features the gallery holds (None: none)."""
        return get_setting(self._store.conn, SETTING)

    @property
    def local_scorer_spec(self) -> dict[str, Any] | None:
        """How the stored local features were extracted: ``{"name": "sift", "settings": {...}}``
        as given at enroll (None when not recorded)."""
        value = get_setting(self._store.conn, SPEC_SETTING)
        return None if value is None else dict(json.loads(value))

    @property
    def fused_calibration(self) -> dict[str, Any] | None:
        """The stored calibration of the fused re-ranker (plain JSON data written by
        ``reid calibrate``, read by ``reid.matching.fused``), or None."""
        value = get_setting(self._store.conn, FUSED_SETTING)
        return None if value is None else dict(json.loads(value))

    def search_photos(
        self, embeddings: np.ndarray, *, model_fingerprint: str, k: int = 50
    ) -> list[list[Candidate]]:
        """The ``k`` nearest gallery *photos* of each query vector (a re-ranker's shortlist).

        Args:
            embeddings: (Q, D) or (D,) float32 query embeddings (normalised here).
        Returns:
            per query, up to ``k`` :class:`Candidate` (one per photo, so an individual may
            appear several times), best cosine first.
        """
        queries = prepare_queries(embeddings, k, "search_photos")
        with self._mutex:
            with self._store.read() as conn:
                self.check_model(model_fingerprint, queries.shape[1])
                ranked = nearest_photos(self._keeper.view(conn), queries, int(k))
                paths = catalog.stored_paths(conn, [c[2] for r in ranked for c in r])
            self._keeper.save_if_pending()
        return to_candidates(ranked, lambda image_id: self.directory / paths[image_id])

    def pair_inputs(self) -> PairInputs:
        """Everything a pair calibration reads, from one snapshot (see :class:`PairInputs`)."""
        with self._mutex, self._store.read() as conn:
            dim = int(get_setting(conn, "embedding_dim", "0"))
            ids, _, _ = catalog.load_labels(conn)
            vectors, labels, groups, names = catalog.load_calibration_inputs(conn, dim)
            generation = int(get_setting(conn, "generation", "0"))
        return PairInputs(generation, ids, vectors, labels, groups, names)

    def _prepare_local(
        self, num_records: int, blobs: Sequence[Blob | None] | None, fingerprint: str | None
    ) -> list[bytes | None] | None:
        """Enroll's local features checked before the write (:func:`prepare`, :func:`check`)."""
        prepared = prepare(num_records, blobs, fingerprint)
        if prepared is not None:
            self.check_local(str(fingerprint))
        return prepared

    def check_local(self, fingerprint: str) -> None:
        """Raise :class:`GalleryError` if the gallery holds another extractor's local features.

        A gallery without local features accepts any extractor; :meth:`local_stats` tells how
        many photos have features.
        """
        check(self._store.conn, self._store.directory, fingerprint)

    def local_features(self, image_ids: Iterable[int]) -> dict[int, bytes]:
        """The stored local-feature blob of each given photo; photos without one are absent.

        Decode a blob with ``LocalFeatures.from_bytes`` (``reid.matching.local.features``).
        """
        with self._mutex, self._store.read() as conn:
            return read(conn, image_ids)

    def local_stats(self) -> LocalStats:
        """Extractor fingerprint, photos with local features / all, mean bytes per photo."""
        with self._mutex, self._store.read() as conn:
            return stats(conn)
