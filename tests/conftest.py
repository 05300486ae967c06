"""Shared fixtures: small synthetic data made in tmp_path, a tiny CPU config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reid.config import Config, load_config

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
TINY_CONFIG = REPO / "configs" / "tiny.yaml"

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_cfg() -> Config:
    return load_config(TINY_CONFIG)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """4 synthetic salamanders x 8 photos over 2 dates, 64 px; returns the manifest path."""
    from reid.synthetic.salamanders import synthesize

    out = tmp_path_factory.mktemp("tiny_data")
    return synthesize(out, 4, 8, seed=3, size=64, num_dates=2, progress=False)


@pytest.fixture(scope="session")
def tiny_run(tiny_cfg, tiny_data, tmp_path_factory) -> Path:
    """A run directory trained for 2 epochs on tiny_data."""
    from reid.io.datasets import read_dataset
    from reid.training.loop import train

    out = tmp_path_factory.mktemp("tiny_run")
    train(tiny_cfg, read_dataset(tiny_data), out, progress=False, log=lambda _: None)
    return out


@pytest.fixture(scope="session")
def web_gallery(tiny_run, tiny_data, tmp_path_factory) -> dict:
    """A calibrated gallery (with SIFT features) of tiny_data's first-date photos, for the web
    app's tests; ``known`` is a later photo of an enrolled individual that the tiny model names
    right, ``unknown`` a photo of an individual never enrolled. Copy ``dir`` before writing."""
    from reid.features.embedder import Embedder
    from reid.gallery import Gallery
    from reid.io.datasets import read_dataset
    from reid.matching.fused import scorer_spec
    from reid.pipeline import MatchOptions, enroll_samples, match_photos, open_gallery
    from reid.synthetic.salamanders import synthesize

    out = tmp_path_factory.mktemp("web_gallery")
    samples = read_dataset(tiny_data)
    first = min(s.date for s in samples)
    enrolled = [s for s in samples if s.date == first]
    later = [s for s in samples if s.date != first]
    embedder = Embedder.from_run(tiny_run, "cpu")
    with open_gallery(out / "gallery", embedder, create=True) as g:
        enroll_samples(g, enrolled, embedder, progress=False, local=scorer_spec("sift"))
    with Gallery.open(out / "gallery") as g:
        g.calibrate(target_fmr=0.1)
        rows = match_photos(g, [s.path for s in later], embedder,
                            MatchOptions(progress=False, scorer="global"))  # fmt: skip
    known = next(s for s, r in zip(later, rows, strict=True)
                 if r.match.decision == s.individual)  # fmt: skip
    newcomer = synthesize(out / "new", 1, 1, seed=5, size=64, first_index=9, progress=False)
    unknown = next((newcomer.parent / "images").rglob("*.jpg"))
    return {"dir": out / "gallery", "run": tiny_run, "known": known.path,
            "known_individual": known.individual, "unknown": unknown}  # fmt: skip
