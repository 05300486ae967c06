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

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from reid.gallery.edits import Inserted, stored_photos
from reid.gallery.errors import GalleryError
from reid.gallery.store import Store, WriteTxn, get_setting, set_setting

SETTING = "local_fingerprint"
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
) -> int:
    """Store the blobs of newly enrolled photos in the enroll's own transaction.

    Checks the fingerprint again under the lock (another process may have re-extracted in
    between). Photo ``done.image_ids[j]`` came from record ``done.positions[j]``; duplicates and
    failures got no id, so their blobs are dropped. The first stored blob fixes the gallery's
    extractor fingerprint. Returns the number of blobs stored.
    """
    if blobs is None or fingerprint is None:
        return 0
    check(txn.conn, directory, fingerprint)
    return _insert_rows(txn, done.image_ids, done.positions, blobs, fingerprint)


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
) -> int:
    """Replace every photo's local features by ``local_fn``'s, inside a reembed's transaction
    (see ``Gallery.reembed``); the extractor fingerprint becomes ``fingerprint``. Returns the
    number of photos that got local features (0, changing nothing, when ``local_fn`` is None)."""
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
    return stored


class LocalFeatureMethods:
    """The local-feature part of :class:`reid.gallery.core.Gallery`, mixed into it (it keeps
    ``core.py`` short); it relies on the gallery's ``_store`` and ``_mutex``."""

    _store: Store
    _mutex: Any  # the gallery's threading.RLock

    @property
    def local_fingerprint(self) -> str | None:
        """Fingerprint of the extractor whose local features the gallery holds (None: none)."""
        return get_setting(self._store.conn, SETTING)

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
