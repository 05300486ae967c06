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
