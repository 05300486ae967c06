"""The gallery directory on disk: SQLite database, inter-process lock and photo copies.

The database is the source of truth. Every write runs under an exclusive ``flock`` on
``gallery.lock`` inside one ``BEGIN IMMEDIATE`` transaction that also bumps the ``generation``
setting and appends to the audit log. Photo copies are renamed into place before the commit, so
a crash leaves at worst an unreferenced file, which the next write removes (it knows to look
because ``.write-in-progress`` was left behind).

Schema versions: 1 (the first); 2 adds ``local_features`` (keypoints + descriptors of each photo,
opaque bytes). :meth:`Store.open` upgrades an older gallery in place, under the lock and in one
transaction (:data:`MIGRATIONS`); its photos have no local features until ``reembed``.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import json
import os
import re
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from reid.gallery.errors import GalleryError
from reid.gallery.faults import crash_point

SCHEMA_VERSION = 2
DB_NAME = "gallery.sqlite"
LOCK_NAME = "gallery.lock"
IMAGES_DIR = "images"
WRITE_MARKER = ".write-in-progress"
TMP_PREFIX = ".tmp-"
AUDIT_ACTIONS = ("enroll", "rename", "merge", "remove", "calibrate", "reembed")

LOCAL_FEATURES_TABLE = """
CREATE TABLE IF NOT EXISTS local_features (
    image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    extractor_fingerprint TEXT NOT NULL,
    blob BLOB NOT NULL,
    nbytes INTEGER NOT NULL  -- len(blob), so that statistics need not read the blobs
)"""

MIGRATIONS: dict[int, tuple[str, ...]] = {1: (LOCAL_FEATURES_TABLE,)}
"""Statements that upgrade schema version ``v`` to ``v + 1`` (single statements: no script)."""

SCHEMA = f"""
CREATE TABLE individuals (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    notes TEXT NOT NULL DEFAULT ''
);
CREATE TABLE images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: ids are never reused after remove
    individual_id TEXT NOT NULL REFERENCES individuals(id) ON UPDATE CASCADE,
    sha256 TEXT NOT NULL UNIQUE,
    stored_path TEXT NOT NULL,
    source_path TEXT NOT NULL,
    date TEXT NOT NULL DEFAULT '',
    time TEXT NOT NULL DEFAULT '',
    location TEXT NOT NULL DEFAULT '',
    observer TEXT NOT NULL DEFAULT '',
    condition TEXT NOT NULL DEFAULT '',
    side TEXT NOT NULL DEFAULT '',
    sighting TEXT NOT NULL DEFAULT '',
    box TEXT,
    enrolled_at TEXT NOT NULL
);
CREATE INDEX images_individual ON images(individual_id);
CREATE TABLE embeddings (
    image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    model_fingerprint TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    user TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ({", ".join(repr(a) for a in AUDIT_ACTIONS)})),
    details TEXT NOT NULL
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
{LOCAL_FEATURES_TABLE};
"""


def utc_now() -> str:
    """The current UTC time as ISO 8601 with seconds, e.g. ``2024-05-31T09:12:44+00:00``."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def current_user(user: str | None) -> str:
    """``user`` if given, else the login name; "unknown" where the OS cannot tell."""
    if user:
        return user
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers; the audit row still needs a user
        return "unknown"


@contextlib.contextmanager
def file_lock(path: Path, *, exclusive: bool = True, blocking: bool = True) -> Iterator[bool]:
    """Hold ``flock`` on ``path``; yields False (holding nothing) if non-blocking and busy.

    The kernel drops the lock when the process dies, so a killed writer never wedges the gallery.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        flags = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(fd, flags if blocking else flags | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def connect(db_path: Path, *, create: bool = False) -> sqlite3.Connection:
    """Open the database in autocommit mode (we issue BEGIN ourselves) with a busy timeout."""
    mode = "rwc" if create else "rw"  # "rw" so that opening a wrong path never creates a file
    uri = f"file:{quote(str(db_path))}?mode={mode}"
    conn = sqlite3.connect(
        uri, uri=True, timeout=30.0, isolation_level=None, check_same_thread=False
    )
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = FULL")  # field laptops lose power; keep commits durable
    return conn


def get_setting(conn: sqlite3.Connection, key: str, default: str | None = None) -> str | None:
    """The text value of setting ``key``, or ``default``."""
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    return default if row is None else row[0]


def set_setting(conn: sqlite3.Connection, key: str, value: Any) -> None:
    """Store ``value`` (as text) under ``key``; ``None`` deletes the key."""
    if value is None:
        conn.execute("DELETE FROM settings WHERE key = ?", (key,))
    else:
        conn.execute(
            "INSERT INTO settings(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, str(value)),
        )


def _fsync_dir(directory: Path) -> None:
    """Make renames inside ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _safe_suffix(path: Path) -> str:
    """The photo's extension, lower-cased, kept so that image readers recognise the copy."""
    suffix = path.suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,10}", suffix) else ""


def _migrate(directory: Path, conn: sqlite3.Connection) -> None:
    """Upgrade the database to :data:`SCHEMA_VERSION` under the lock, in one transaction.

    The version is read again under the lock, so that of two processes opening an old gallery at
    once the second finds the work done. No audit row and no new generation: no data changes.
    """
    with file_lock(directory / LOCK_NAME):
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = int(get_setting(conn, "schema_version") or SCHEMA_VERSION)
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step]:
                    conn.execute(statement)
            if version < SCHEMA_VERSION:
                set_setting(conn, "schema_version", SCHEMA_VERSION)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise


@dataclass
class WriteTxn:
    """An open write: the caller fills ``details`` for the audit row and adds callbacks.

    ``after_commit`` callbacks run after the commit while the lock is still held (index update,
    deleting removed photo copies). ``new_files`` are deleted again if the write rolls back.
    """

    conn: sqlite3.Connection
    generation: int  # the generation this write produces (before + 1)
    details: dict[str, Any] = field(default_factory=dict)
    new_files: list[Path] = field(default_factory=list)
    after_commit: list[Callable[[], None]] = field(default_factory=list)


class Store:
    """One gallery directory: its database connection, lock and photo copies."""

    def __init__(self, directory: Path, conn: sqlite3.Connection) -> None:
        self.directory = directory
        self.conn = conn
        self.images_dir = directory / IMAGES_DIR

    @classmethod
    def create(cls, directory: Path, settings: dict[str, Any]) -> Store:
        """Make a new gallery at ``directory`` (which may exist but must hold no gallery)."""
        directory.mkdir(parents=True, exist_ok=True)
        db_path = directory / DB_NAME
        with file_lock(directory / LOCK_NAME):
            if db_path.exists():
                raise GalleryError(
                    f"{directory} is already a gallery; open it instead of creating it."
                )
            for stale in directory.glob(f"{TMP_PREFIX}*"):  # from an interrupted create
                stale.unlink(missing_ok=True)
            # Build the schema under a temporary name and rename it into place, so that a crash
            # during creation never leaves a half-made database that looks like a gallery.
            tmp_path = directory / f"{TMP_PREFIX}{uuid.uuid4().hex}.sqlite"
            conn = connect(tmp_path, create=True)
            try:
                conn.executescript(SCHEMA)
                for key, value in {"schema_version": SCHEMA_VERSION, **settings}.items():
                    set_setting(conn, key, value)
            finally:
                conn.close()
            os.replace(tmp_path, db_path)
            (directory / IMAGES_DIR).mkdir(exist_ok=True)
            _fsync_dir(directory)
        return cls.open(directory)

    @classmethod
    def open(cls, directory: Path) -> Store:
        """Open an existing gallery, or raise :class:`GalleryError` saying how to make one."""
        db_path = directory / DB_NAME
        if not db_path.is_file():
            raise GalleryError(
                f"{directory} is not a gallery (it has no {DB_NAME}); create it with "
                f"`reid gallery enroll {directory} ...` or Gallery.create()."
            )
        try:
            conn = connect(db_path)
            conn.execute("PRAGMA journal_mode = WAL")  # readers never wait for a writer
            version = get_setting(conn, "schema_version")
        except sqlite3.DatabaseError as exc:
            raise GalleryError(f"{db_path} is not a readable gallery database ({exc}).") from exc
        if version not in {str(v) for v in range(1, SCHEMA_VERSION + 1)}:
            conn.close()
            raise GalleryError(
                f"{directory} has gallery schema version {version}, which this toolkit "
                f"(schema {SCHEMA_VERSION}) cannot read; upgrade the toolkit."
            )
        if int(version) < SCHEMA_VERSION:
            try:
                _migrate(directory, conn)
            except (sqlite3.DatabaseError, OSError) as exc:
                conn.close()
                raise GalleryError(
                    f"{directory} has gallery schema version {version} and needs a one-time "
                    f"upgrade to version {SCHEMA_VERSION}, which failed ({exc}); open it once "
                    f"where the gallery folder is writable."
                ) from exc
        (directory / IMAGES_DIR).mkdir(exist_ok=True)
        return cls(directory, conn)

    def close(self) -> None:
        """Close the database connection."""
        self.conn.close()

    @property
    def lock_path(self) -> Path:
        """The file whose ``flock`` serialises writers (and index saves)."""
        return self.directory / LOCK_NAME

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: one consistent snapshot of the database (WAL)."""
        self.conn.execute("BEGIN")
        try:
            yield self.conn
        finally:
            self.conn.execute("COMMIT")

    def generation(self) -> int:
        """The generation counter; it changes with every committed write."""
        return int(get_setting(self.conn, "generation", "0"))

    @contextlib.contextmanager
    def write(self, action: str, user: str | None) -> Iterator[WriteTxn]:
        """Run one write under the lock in one transaction; see the module docstring."""
        marker = self.directory / WRITE_MARKER
        with file_lock(self.lock_path):
            interrupted = marker.exists()
            marker.touch()
            self.conn.execute("BEGIN IMMEDIATE")
            txn = WriteTxn(self.conn, self.generation() + 1)
            try:
                if interrupted:
                    self._clean_orphans()
                yield txn
                set_setting(self.conn, "generation", txn.generation)
                self.conn.execute(
                    "INSERT INTO audit(at, user, action, details) VALUES (?, ?, ?, ?)",
                    (utc_now(), current_user(user), action, json.dumps(txn.details)),
                )
                _fsync_dir(self.images_dir)
                crash_point("before_commit")
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                for path in txn.new_files:
                    path.unlink(missing_ok=True)
                marker.unlink(missing_ok=True)  # rolled back cleanly: nothing left to clean
                raise
            crash_point("after_commit")
            for callback in txn.after_commit:
                callback()
            marker.unlink(missing_ok=True)

    def _clean_orphans(self) -> None:
        """Delete photo copies no row refers to and temp files left by an interrupted write."""
        referenced = {row[0] for row in self.conn.execute("SELECT stored_path FROM images")}
        for path in self.images_dir.iterdir():
            if f"{IMAGES_DIR}/{path.name}" not in referenced and path.is_file():
                path.unlink(missing_ok=True)
        for path in self.directory.glob(f"{TMP_PREFIX}*"):  # index saves, database creation
            path.unlink(missing_ok=True)

    def copy_in(self, source: Path, txn: WriteTxn) -> tuple[str, Path]:
        """Copy ``source`` into ``images/`` under a temp name; returns (sha256 hex, temp path).

        Hashing while copying reads the photo once; the copy is fsynced so that the committed row
        never points at a file whose bytes are still only in the page cache.
        """
        tmp_path = self.images_dir / f"{TMP_PREFIX}{uuid.uuid4().hex}"
        digest = hashlib.sha256()
        txn.new_files.append(tmp_path)
        try:
            with open(source, "rb") as src, open(tmp_path, "wb") as dst:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    digest.update(chunk)
                    dst.write(chunk)
                dst.flush()
                os.fsync(dst.fileno())
        except OSError:
            tmp_path.unlink(missing_ok=True)
            raise
        return digest.hexdigest(), tmp_path

    def place(self, tmp_path: Path, sha256: str, source: Path, txn: WriteTxn) -> str:
        """Rename a copied photo to its final name; returns the stored path relative to the dir."""
        stored = f"{IMAGES_DIR}/{sha256}{_safe_suffix(source)}"
        final = self.directory / stored
        os.replace(tmp_path, final)
        txn.new_files.append(final)
        return stored

    def discard(self, tmp_path: Path) -> None:
        """Delete a temp copy that turned out not to be needed (a duplicate)."""
        tmp_path.unlink(missing_ok=True)
