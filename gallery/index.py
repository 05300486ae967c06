"""FAISS index over a gallery's vectors: build, search, save and load.

Vectors are L2-normalised float32 and the metric is inner product, so a search score is a cosine
similarity. ``"Flat"`` (exact search) is the default; any faiss factory string works (e.g.
``"IVF256,Flat"``, ``"HNSW32"``). A factory that needs training and has too few vectors falls back
to exact flat search and says so in :meth:`VectorIndex.describe`. When faiss sees a GPU, searches
run on a GPU copy; the CPU index stays the one that is saved and grown.

On disk: ``index.faiss``, ``index_ids.npy`` (the image id of each row) and ``index_meta.json``
(the database generation they reflect), each written to a temp file and renamed into place,
metadata last, under ``index.lock`` so that readers never load a half-replaced set.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from reid.gallery.errors import GalleryError
from reid.gallery.faults import crash_point
from reid.gallery.store import TMP_PREFIX, file_lock

INDEX_NAME = "index.faiss"
IDS_NAME = "index_ids.npy"
META_NAME = "index_meta.json"
INDEX_LOCK_NAME = "index.lock"
GPU_MAX_K = 2048  # faiss GPU k-selection limit; larger k is answered on the CPU copy
POINTS_PER_CENTROID = 39  # faiss's own minimum before it warns that k-means is under-trained


def check_factory(factory: str, dim: int, search_params: str = "") -> None:
    """Raise :class:`GalleryError` if faiss cannot build ``factory`` or apply ``search_params``."""
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise GalleryError(
            f"Index factory {factory!r} is not understood by faiss; use e.g. 'Flat', "
            f"'IVF256,Flat' or 'HNSW32' ({str(exc).splitlines()[-1][-120:]})."
        ) from exc
    _apply_params(index, search_params or default_search_params(factory))


def training_size(factory: str) -> int:
    """How many vectors ``factory`` needs before training is worthwhile (0: no training)."""
    needed = 0
    match = re.search(r"IVF(\d+)", factory)
    if match:
        needed = POINTS_PER_CENTROID * int(match.group(1))
    if "PQ" in factory:  # 8-bit product quantiser codebooks have 256 centroids each
        needed = max(needed, POINTS_PER_CENTROID * 256)
    return needed


def default_search_params(factory: str) -> str:
    """Search-time parameters that favour recall: faiss's own defaults (nprobe=1) do not."""
    match = re.search(r"IVF(\d+)", factory)
    if match:
        nlist = int(match.group(1))
        return f"nprobe={min(nlist, max(16, nlist // 8))}"
    if "HNSW" in factory:
        return "efSearch=128"
    return ""


def _apply_params(index: faiss.Index, params: str) -> None:
    if not params:
        return
    try:
        faiss.ParameterSpace().set_index_parameters(index, params)
    except RuntimeError as exc:
        raise GalleryError(
            f"Search parameters {params!r} do not apply to this index; use e.g. 'nprobe=32' for "
            f"IVF or 'efSearch=128' for HNSW."
        ) from exc


class VectorIndex:
    """A CPU faiss index plus the image id of each of its rows (ascending, int64)."""

    def __init__(
        self,
        cpu_index: faiss.Index,
        image_ids: np.ndarray,
        *,
        factory: str,
        search_params: str,
        note: str = "",
    ) -> None:
        self.cpu_index = cpu_index
        self.image_ids = np.ascontiguousarray(image_ids, dtype=np.int64)
        self.factory = factory
        self.search_params = search_params
        self.note = note
        self._gpu_index: Any = None
        self._gpu_error = ""
        self.generation = -1  # the database generation this index reflects (set by the owner)
        self.fingerprint = ""

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        image_ids: np.ndarray,
        *,
        factory: str = "Flat",
        search_params: str = "",
    ) -> VectorIndex:
        """Index ``vectors`` (N, D) float32, L2-normalised, whose rows are ``image_ids`` (N,)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        dim = vectors.shape[1]
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
        note = ""
        if not index.is_trained:
            needed = training_size(factory)
            if len(vectors) < max(needed, 1):
                note = (
                    f"{factory!r} needs at least {needed} vectors to train and the gallery has "
                    f"{len(vectors)}, so it uses exact flat search until it grows"
                )
                index = faiss.IndexFlatIP(dim)
            else:
                index.train(vectors)
        params = search_params or default_search_params(factory)
        if not note:
            _apply_params(index, params)
        if len(vectors):
            index.add(vectors)
        return cls(index, image_ids, factory=factory, search_params=params, note=note)

    def set_search_params(self, params: str) -> None:
        """Apply faiss search parameters (e.g. "nprobe=32", "efSearch=128") from now on."""
        if not self.is_fallback:
            _apply_params(self.cpu_index, params)
            self.search_params = params
            self._gpu_index = None  # cloned again, with the new parameters, at the next search

    @property
    def ntotal(self) -> int:
        """Number of indexed vectors."""
        return int(self.cpu_index.ntotal)

    @property
    def dim(self) -> int:
        """Vector dimension D."""
        return int(self.cpu_index.d)

    @property
    def is_fallback(self) -> bool:
        """True when the factory could not be trained yet and flat search stands in for it."""
        return bool(self.note)

    def add(self, vectors: np.ndarray, image_ids: np.ndarray) -> None:
        """Append ``vectors`` (M, D) float32 whose ids are all larger than the existing ones."""
        if len(vectors) == 0:
            return
        self.cpu_index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self.image_ids = np.concatenate([self.image_ids, np.asarray(image_ids, np.int64)])
        self._gpu_index = None  # the GPU copy is stale; cloned again at the next search

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar rows per query.

        Args:
            queries: (Q, D) float32, L2-normalised.
            k: neighbours wanted; capped at the index size.
        Returns:
            sims (Q, k') float32 cosine similarities, best first, and rows (Q, k') int64 row
            numbers into :attr:`image_ids` (-1 where the index returned fewer), k' = min(k, N).
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(int(k), self.ntotal)
        if k <= 0 or len(queries) == 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        gpu_index = self._gpu() if k <= GPU_MAX_K else None
        index = gpu_index if gpu_index is not None else self.cpu_index
        sims, rows = index.search(queries, k)
        return sims, rows

    def _gpu(self) -> Any:
        """A GPU copy of the index when faiss sees a GPU and supports this index type there."""
        if self._gpu_index is None and not self._gpu_error and faiss.get_num_gpus() > 0:
            try:
                self._gpu_index = faiss.index_cpu_to_all_gpus(self.cpu_index)
            except (RuntimeError, AttributeError) as exc:  # e.g. HNSW has no GPU version
                self._gpu_error = str(exc).splitlines()[-1][-160:] or type(exc).__name__
        return self._gpu_index

    @property
    def device(self) -> str:
        """Where searches run: "cpu" or "gpu (N)"; the reason when a GPU could not be used."""
        num_gpus = faiss.get_num_gpus()
        if num_gpus and self._gpu_index is None and not self._gpu_error:
            self._gpu()
        if self._gpu_index is not None:
            return f"gpu ({num_gpus})"
        if self._gpu_error:
            return f"cpu (GPU copy failed: {self._gpu_error})"
        return "cpu"

    def describe(self) -> dict[str, Any]:
        """Type, size, device, factory, search parameters and any fallback note."""
        return {
            "type": type(self.cpu_index).__name__,
            "factory": self.factory,
            "search_params": "" if self.is_fallback else self.search_params,
            "ntotal": self.ntotal,
            "device": self.device,
            "note": self.note,
        }

    def save(self, directory: Path) -> None:
        """Write the index, ids and metadata atomically (temp + rename, metadata last)."""
        with file_lock(directory / INDEX_LOCK_NAME):
            tag = uuid.uuid4().hex
            tmp_index = directory / f"{TMP_PREFIX}{tag}-{INDEX_NAME}"
            faiss.write_index(self.cpu_index, str(tmp_index))
            _fsync_file(tmp_index)
            os.replace(tmp_index, directory / INDEX_NAME)
            crash_point("index_partial")
            tmp_ids = directory / f"{TMP_PREFIX}{tag}-{IDS_NAME}"
            with open(tmp_ids, "wb") as fh:
                np.save(fh, self.image_ids)
            os.replace(tmp_ids, directory / IDS_NAME)
            self._write_meta(directory, tag)

    def save_generation(self, directory: Path, previous: int) -> bool:
        """Re-stamp saved files whose vectors did not change (rename, merge) with the new
        :attr:`generation`; False (nothing written) if the files on disk are not ``previous``."""
        with file_lock(directory / INDEX_LOCK_NAME):
            meta = _read_meta(directory)
            if meta is None or meta.get("generation") != previous:
                return False
            self._write_meta(directory, uuid.uuid4().hex)
        return True

    def _write_meta(self, directory: Path, tag: str) -> None:
        meta = {
            "generation": self.generation,
            "fingerprint": self.fingerprint,
            "factory": self.factory,
            "search_params": self.search_params,
            "note": self.note,
            "ntotal": self.ntotal,
            "dim": self.dim,
        }
        tmp_meta = directory / f"{TMP_PREFIX}{tag}-{META_NAME}"
        tmp_meta.write_text(json.dumps(meta))
        _fsync_file(tmp_meta)
        os.replace(tmp_meta, directory / META_NAME)

    @classmethod
    def load(cls, directory: Path) -> VectorIndex | None:
        """The saved index, or None when it is missing, unreadable or self-inconsistent."""
        try:
            with file_lock(directory / INDEX_LOCK_NAME, exclusive=False):
                meta = _read_meta(directory)
                if meta is None:
                    return None
                cpu_index = faiss.read_index(str(directory / INDEX_NAME))
                image_ids = np.load(directory / IDS_NAME)
        except (OSError, RuntimeError, ValueError):
            return None  # the caller rebuilds from the database, which is the source of truth
        if not (cpu_index.ntotal == len(image_ids) == meta.get("ntotal")):
            return None
        index = cls(
            cpu_index,
            image_ids,
            factory=meta.get("factory", ""),
            search_params=meta.get("search_params", ""),
            note=meta.get("note", ""),
        )
        if not index.is_fallback:
            _apply_params(cpu_index, index.search_params)  # not all parameters are serialised
        index.generation = int(meta.get("generation", -1))
        index.fingerprint = str(meta.get("fingerprint", ""))
        return index


def _read_meta(directory: Path) -> dict[str, Any] | None:
    try:
        return json.loads((directory / META_NAME).read_text())
    except (OSError, ValueError):
        return None


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())
