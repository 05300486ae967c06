"""Keeps a gallery's FAISS index in step with its database.

The index is a cache of the database stamped with the ``generation`` it reflects. A write, after
its commit and still holding the lock, grows, re-stamps or rebuilds the index and saves it. A
reader whose snapshot's generation differs from the cached or saved index (a crash between commit
and save, a deleted or damaged index file, another process's write) rebuilds it from the rows in
its snapshot, and saves it when no writer holds the lock.
"""

from __future__ import annotations

import sqlite3

import numpy as np

from reid.gallery import catalog
from reid.gallery.index import VectorIndex, training_size
from reid.gallery.search import SearchView
from reid.gallery.store import Store, file_lock, get_setting


class IndexKeeper:
    """The current :class:`SearchView` of one gallery, loaded or rebuilt on demand."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._view: SearchView | None = None
        self._save_pending = False
        self.rebuilds = 0  # how many times the index was rebuilt from rows (for tests, info)

    def view(self, conn: sqlite3.Connection) -> SearchView:
        """The view for the snapshot in ``conn``: cached, loaded from disk, or rebuilt."""
        generation = int(get_setting(conn, "generation", "0"))
        if self._view is not None and self._view.index.generation == generation:
            return self._view
        ids, labels, names = catalog.load_labels(conn)
        index = self._index_at(conn, generation)
        if index is None or not np.array_equal(index.image_ids, ids):
            index = self._build(conn, generation)
            self._save_pending = True
        self._view = SearchView(index, labels, names)
        return self._view

    def after_write(
        self,
        generation: int,
        added: tuple[np.ndarray, np.ndarray] | None = None,
        *,
        rebuild: bool = False,
    ) -> VectorIndex:
        """After a commit (write lock held): bring the saved index to ``generation``.

        Grows the previous generation's index by ``added`` (image ids (M,) int64, vectors (M, D)
        float32) when it is at hand, re-stamps it when no vector changed (rename, merge,
        calibrate), and rebuilds from the database otherwise (remove, reembed, or no index).
        """
        conn = self._store.conn
        previous = None if rebuild else self._index_at(conn, generation - 1)
        if previous is not None and added is not None and previous.is_fallback:
            if previous.ntotal + len(added[0]) >= training_size(previous.factory):
                previous = None  # enough vectors now to train the requested index type
        if previous is None:
            with self._store.read() as snapshot:
                index = self._build(snapshot, generation)
            index.save(self._store.directory)
        else:
            index = previous
            index.generation = generation
            if added is not None and len(added[0]):
                index.add(added[1], added[0])
                index.save(self._store.directory)
            elif not index.save_generation(self._store.directory, generation - 1):
                index.save(self._store.directory)
        with self._store.read() as snapshot:
            _, labels, names = catalog.load_labels(snapshot)
        self._view = SearchView(index, labels, names)
        self._save_pending = False
        return index

    def save_if_pending(self) -> None:
        """Save an index a reader rebuilt, unless a writer holds the lock (it will save)."""
        if not self._save_pending or self._view is None:
            return
        self._save_pending = False
        with file_lock(self._store.lock_path, blocking=False) as acquired:
            if acquired and self._store.generation() == self._view.index.generation:
                self._view.index.save(self._store.directory)

    def _index_at(self, conn: sqlite3.Connection, generation: int) -> VectorIndex | None:
        """The index reflecting ``generation``: the cached one, else the saved one, else None."""
        if self._view is not None and self._view.index.generation == generation:
            return self._view.index
        index = VectorIndex.load(self._store.directory)
        if (
            index is None
            or index.generation != generation
            or index.fingerprint != get_setting(conn, "model_fingerprint")
            or index.factory != get_setting(conn, "index_factory")
            or index.dim != int(get_setting(conn, "embedding_dim", "0"))
        ):
            return None
        return index

    def _build(self, conn: sqlite3.Connection, generation: int) -> VectorIndex:
        """Build the index from the database rows visible in ``conn``."""
        ids, vectors = catalog.load_vectors(conn, int(get_setting(conn, "embedding_dim", "0")))
        index = VectorIndex.build(
            vectors,
            ids,
            factory=str(get_setting(conn, "index_factory", "Flat")),
            search_params=str(get_setting(conn, "search_params", "")),
        )
        index.generation = generation
        index.fingerprint = str(get_setting(conn, "model_fingerprint"))
        self.rebuilds += 1
        return index
