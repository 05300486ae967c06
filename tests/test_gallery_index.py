"""The FAISS wrapper against brute-force numpy (gallery/index.py)."""

from __future__ import annotations

import numpy as np
import pytest

from reid.gallery import GalleryError, VectorIndex
from reid.gallery.index import check_factory
from reid.gallery.synthetic import clustered_embeddings, random_unit_vectors


def brute_force(gallery: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = queries @ gallery.T
    rows = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, rows, axis=1), rows


def test_flat_search_equals_brute_force():
    gallery = random_unit_vectors(500, 32, seed=1)
    queries = random_unit_vectors(20, 32, seed=2)
    index = VectorIndex.build(gallery, np.arange(100, 600))
    sims, rows = index.search(queries, 10)
    want_sims, want_rows = brute_force(gallery, queries, 10)
    np.testing.assert_allclose(sims, want_sims, atol=1e-5)
    assert (rows[:, 0] == want_rows[:, 0]).all()
    assert (index.image_ids[rows[:, 0]] == 100 + want_rows[:, 0]).all()


def test_k_is_capped_at_the_index_size_and_empty_index_answers_nothing():
    index = VectorIndex.build(random_unit_vectors(3, 8), np.arange(3))
    sims, rows = index.search(random_unit_vectors(2, 8, seed=5), 10)
    assert sims.shape == rows.shape == (2, 3)
    empty = VectorIndex.build(np.zeros((0, 8), np.float32), np.zeros(0, np.int64))
    assert empty.search(random_unit_vectors(2, 8), 5)[1].shape == (2, 0)


@pytest.mark.parametrize("factory", ["HNSW32", "IVF16,Flat"])
def test_approximate_index_reaches_high_recall_against_flat(factory):
    # Clustered like real embeddings: approximate indexes are built for that structure.
    gallery, _ = clustered_embeddings(200, 5, 32, noise=0.5, seed=3)
    queries = gallery[::10] + 0.05 * random_unit_vectors(100, 32, seed=4)
    index = VectorIndex.build(gallery, np.arange(len(gallery)), factory=factory)
    assert not index.is_fallback
    _, rows = index.search(queries, 1)
    _, want = brute_force(gallery, queries.astype(np.float32), 1)
    assert np.mean(rows[:, 0] == want[:, 0]) >= 0.95


def test_untrainable_factory_falls_back_to_flat_and_says_so():
    gallery = random_unit_vectors(50, 16)
    index = VectorIndex.build(gallery, np.arange(50), factory="IVF256,Flat")
    assert index.is_fallback and "exact flat search" in index.describe()["note"]
    _, rows = index.search(gallery[:5], 1)
    assert rows[:, 0].tolist() == [0, 1, 2, 3, 4]


def test_save_load_gives_identical_answers(tmp_path):
    gallery = random_unit_vectors(300, 16, seed=7)
    index = VectorIndex.build(gallery, np.arange(300) * 2)
    index.generation, index.fingerprint = 5, "model-a"
    index.save(tmp_path)
    loaded = VectorIndex.load(tmp_path)
    assert loaded is not None and loaded.generation == 5 and loaded.fingerprint == "model-a"
    queries = random_unit_vectors(10, 16, seed=8)
    for got, want in zip(loaded.search(queries, 5), index.search(queries, 5), strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(loaded.image_ids, index.image_ids)
    assert not list(tmp_path.glob(".tmp-*"))


def test_load_returns_none_for_missing_or_inconsistent_files(tmp_path):
    assert VectorIndex.load(tmp_path) is None
    index = VectorIndex.build(random_unit_vectors(10, 8), np.arange(10))
    index.save(tmp_path)
    np.save(tmp_path / "index_ids.npy", np.arange(9))  # torn: ids from another state
    assert VectorIndex.load(tmp_path) is None


def test_bad_factory_is_a_gallery_error():
    with pytest.raises(GalleryError, match="not understood by faiss"):
        check_factory("NoSuchIndex", 16)


def test_gpu_copy_is_used_when_faiss_sees_a_gpu(monkeypatch):
    # No GPU on CI: stand in for faiss's GPU cloner with a CPU clone and check the plumbing.
    import faiss

    clones = []

    def fake_to_gpus(index):
        clones.append(index)
        return faiss.clone_index(index)

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", fake_to_gpus)
    gallery = random_unit_vectors(100, 16, seed=3)
    index = VectorIndex.build(gallery, np.arange(100))
    sims, rows = index.search(gallery[:3], 2)
    assert index.device == "gpu (1)" and len(clones) == 1
    assert rows[:, 0].tolist() == [0, 1, 2]
    index.add(random_unit_vectors(1, 16, seed=4), np.array([100]))
    index.search(gallery[:1], 1)
    assert len(clones) == 2  # re-cloned after the CPU index grew


def test_index_type_without_gpu_version_stays_on_cpu(monkeypatch):
    import faiss

    def refuse(index):
        raise RuntimeError("This index type is not implemented on GPU.")

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", refuse)
    index = VectorIndex.build(random_unit_vectors(50, 8), np.arange(50), factory="HNSW16")
    _, rows = index.search(random_unit_vectors(2, 8, seed=1), 1)
    assert rows.shape == (2, 1)
    assert index.device.startswith("cpu (GPU copy failed: This index type")
