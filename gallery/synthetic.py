"""Synthetic gallery data for tests and benchmarks: fake photo files and clustered embeddings.

The gallery only hashes and copies photo files, so a few random bytes stand in for a photo.
Embeddings are clusters on the unit sphere whose spread (``noise``) sets how hard identification
is, so the right answers can be written down.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reid.gallery.openset import l2_normalize
from reid.gallery.records import ImageRecord


def random_unit_vectors(num: int, dim: int, seed: int = 0) -> np.ndarray:
    """(num, dim) float32, L2-normalised, isotropic."""
    rng = np.random.default_rng(seed)
    return l2_normalize(rng.standard_normal((num, dim), dtype=np.float32))[0]


def clustered_embeddings(
    num_individuals: int, per_individual: int, dim: int, *, noise: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Photos of individuals as noisy copies of a per-individual centre.

    Returns:
        vectors (num_individuals * per_individual, dim) float32, L2-normalised, grouped by
        individual, and labels (same length,) int64 individual index.
    """
    rng = np.random.default_rng(seed)
    centres = random_unit_vectors(num_individuals, dim, seed=seed + 1)
    labels = np.repeat(np.arange(num_individuals), per_individual)
    # Per-coordinate noise of noise/sqrt(dim) puts photos at distance ~noise from their centre.
    scale = noise / np.sqrt(dim)
    vectors = centres[labels] + scale * rng.standard_normal((len(labels), dim)).astype(np.float32)
    return l2_normalize(vectors)[0], labels


def fake_photos(directory: Path, num: int, *, seed: int = 0, suffix: str = ".jpg") -> list[Path]:
    """``num`` small files of distinct random bytes in ``directory`` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for n in range(num):
        path = directory / f"photo_{seed}_{n:05d}{suffix}"
        path.write_bytes(rng.bytes(24) + n.to_bytes(8, "little"))  # distinct even if rng repeats
        paths.append(path)
    return paths


def records_for(
    paths: list[Path], labels: np.ndarray, *, prefix: str = "ind", sightings: int = 0
) -> list[ImageRecord]:
    """One :class:`ImageRecord` per photo; ``sightings`` > 0 spreads each individual's photos
    round-robin over that many sighting ids (0: no sighting recorded)."""
    records = []
    for n, (path, label) in enumerate(zip(paths, labels, strict=True)):
        sighting = f"{prefix}{label}-s{n % sightings}" if sightings else ""
        records.append(ImageRecord(path, f"{prefix}{int(label):03d}", sighting=sighting))
    return records
