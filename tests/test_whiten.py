"""Learned whitening: it finds identity under large within-animal variation, carries over to
identities it never saw, installs exactly into the embedding head, and refuses what it cannot
fit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reid.errors import ReIDError
from reid.features.checkpoint import load_checkpoint
from reid.features.whiten import fit_whitening, install


def _animals(rng: np.random.Generator, n_ids: int, per: int, offset: int = 0):
    """Features where identity is a modest signal in 8 dims and each photo adds strong
    nuisance (pose, light) in 8 others, plus a large offset shared by every photo (the 'all
    nyalas look alike' component): (n_ids * per, 16) features and their labels."""
    ident = rng.normal(0, 1.0, (n_ids, 8))
    x, y = [], []
    for i in range(n_ids):
        for _ in range(per):
            nuisance = rng.normal(0, 3.0, 8)
            x.append(np.concatenate([ident[i] + rng.normal(0, 0.15, 8), nuisance]) + 10.0)
            y.append(f"id{offset + i}")
    return np.array(x), np.array(y)


def _rank1(feats: np.ndarray, labels: np.ndarray) -> float:
    v = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    sims = v @ v.T
    np.fill_diagonal(sims, -np.inf)
    return float((labels[sims.argmax(1)] == labels).mean())


def test_whitening_finds_identity_in_animals_it_never_saw():
    rng = np.random.default_rng(0)
    x_train, y_train = _animals(rng, 30, 4)
    x_new, y_new = _animals(rng, 20, 3, offset=100)  # never seen by the fit
    w = fit_whitening(x_train, y_train, dim=8)
    raw, whitened = _rank1(x_new, y_new), _rank1(w.apply(x_new), y_new)
    assert raw < 0.3  # nuisance and the shared offset swamp identity in plain cosine
    assert whitened > 0.85
    assert w.num_pairs == 30 * 6 and w.rank == 16 and w.projection.shape == (16, 8)


def test_few_photos_per_animal_still_give_a_finite_fit_and_shrinkage_is_checked():
    rng = np.random.default_rng(1)
    x, y = _animals(rng, 8, 2)  # 8 pairs for a 16-d scatter: singular without shrinkage
    w = fit_whitening(x, y, dim=4, shrinkage=0.1)
    assert np.isfinite(w.projection).all()
    with pytest.raises(ReIDError, match="shrinkage must be a positive number"):
        fit_whitening(x, y, dim=4, shrinkage=0.0)


def test_dimensions_beyond_what_the_photos_span_are_zero():
    rng = np.random.default_rng(2)
    x, y = _animals(rng, 3, 2)  # 6 photos span at most 5 dimensions once centred
    w = fit_whitening(x, y, dim=8)
    assert w.rank == 5
    assert np.abs(w.projection[:, 5:]).max() == 0
    assert np.abs(w.projection[:, :5]).max(0).min() > 0  # every spanned column is used


def test_whitening_refuses_what_it_cannot_fit():
    x = np.random.default_rng(3).normal(size=(5, 8))
    with pytest.raises(ReIDError, match="2 or more photos"):
        fit_whitening(x, ["a", "b", "c", "d", "e"], dim=4)  # no animal photographed twice
    with pytest.raises(ReIDError, match="one feature row per label"):
        fit_whitening(x, ["a", "a"], dim=4)
    twins = np.repeat(x[:3], 2, axis=0)  # each animal's two photos are the same file
    with pytest.raises(ReIDError, match="duplicates"):
        fit_whitening(twins, ["a", "a", "b", "b", "c", "c"], dim=4)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ReIDError, match="non-finite"):
        fit_whitening(bad, ["a", "a", "b", "b", "c"], dim=4)


def test_installed_head_computes_the_whitening_exactly(tiny_cfg):
    from reid.features.model import build_model

    model = build_model(tiny_cfg, 3).eval()
    images = torch.rand(12, 3, 64, 64)
    with torch.no_grad():
        feats = model.features(images).numpy()
    w = fit_whitening(feats, np.repeat(["a", "b", "c"], 4), dim=tiny_cfg.model.embedding_dim)
    install(model, w)
    with torch.no_grad():
        emb = model(images).embeddings.numpy()
    expected = F.normalize(torch.from_numpy(w.apply(feats)), dim=1).numpy()
    np.testing.assert_allclose(emb, expected, atol=1e-4)
    narrow = fit_whitening(feats, np.repeat(["a", "b", "c"], 4), dim=8)
    with pytest.raises(ReIDError, match="embedding head maps"):
        install(model, narrow)


def test_training_with_learned_whitening_saves_it_in_the_checkpoint(tiny_cfg, tiny_data, tmp_path):
    from reid.config import from_dict, to_dict
    from reid.features.embedder import Embedder
    from reid.features.export import OnnxModel
    from reid.io.datasets import read_dataset
    from reid.training.loop import train

    cfg = from_dict(to_dict(tiny_cfg))
    cfg.model.whitening = "learned"
    cfg.train.export_onnx = True
    samples = read_dataset(tiny_data)
    logs: list[str] = []
    result = train(cfg, samples, tmp_path / "run", progress=False, log=logs.append)
    assert any("learned whitening" in m for m in logs)
    loaded = load_checkpoint(result.run_dir)
    info = loaded.extra["whitening"]
    assert info["photos"] == result.num_train and info["pairs"] > 0
    # the saved head computes the whitening of the pooled features: the embedding of a photo
    # equals its centred features times the installed projection, normalised
    model = loaded.model
    images = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        feats = model.features(images)
        lin, bn = model.embedding[0], model.embedding[1]
        expected = F.normalize(feats @ lin.weight.T - bn.running_mean, dim=1)
        assert torch.allclose(model(images).embeddings, expected, atol=1e-4)
    # the exported copy was written from the whitened checkpoint: both give the same embeddings
    fast = Embedder.from_run(result.run_dir, device="cpu")
    assert isinstance(fast.loaded.model, OnnxModel)
    plain = Embedder(loaded, device="cpu")
    arr = (np.random.default_rng(0).random((2, 64, 64, 3)) * 255).astype(np.uint8)
    np.testing.assert_allclose(fast.embed_arrays(arr)[0], plain.embed_arrays(arr)[0], atol=1e-4)
    assert fast.fingerprint == plain.fingerprint


def test_installed_with_features_the_head_gives_the_same_vectors_in_training_mode(tiny_cfg):
    from reid.features.model import build_model

    model = build_model(tiny_cfg, 3).eval()
    images = torch.rand(24, 3, 64, 64)
    with torch.no_grad():
        feats = model.features(images)
    w = fit_whitening(feats.numpy(), np.repeat(list("abcdef"), 4), tiny_cfg.model.embedding_dim)
    install(model, w, feats.numpy())
    with torch.no_grad():
        evaluated = model.embedding(feats)
        model.embedding.train()  # standardises each dimension by the batch, then rescales
        trained = model.embedding(feats)
    np.testing.assert_allclose(evaluated.numpy(), w.apply(feats.numpy()), atol=1e-4)
    # the batch here is the fitting set: training mode gives the same vectors (up to eps)
    np.testing.assert_allclose(trained.numpy(), evaluated.numpy(), rtol=1e-3, atol=1e-3)
    install(model, w)  # without features: the plain exact form, whose training mode differs
    with torch.no_grad():
        assert not torch.allclose(model.embedding(feats), evaluated, atol=1e-2)


def test_head_init_whitening_fits_the_heads_before_fine_tuning(tiny_cfg, tiny_data, tmp_path):
    from reid.config import from_dict, to_dict
    from reid.io.datasets import read_dataset
    from reid.training.loop import train

    cfg = from_dict(to_dict(tiny_cfg))
    cfg.train.head_init = "whitening"
    cfg.train.epochs = 1
    logs: list[str] = []
    train(cfg, read_dataset(tiny_data), tmp_path / "run", progress=False, log=logs.append)
    line = next(m for m in logs if m.startswith("heads fitted"))
    assert "class centres imprinted" in line
    first, last = (float(v) for v in line.split("loss ")[-1].split(" in")[0].split(" -> "))
    assert last < 0.9 * first  # the classifier and ArcFace centres learned on fixed features


def test_resuming_a_finished_whitened_run_keeps_its_model(tiny_cfg, tiny_data, tmp_path):
    from reid.config import from_dict, to_dict
    from reid.io.datasets import read_dataset
    from reid.training.loop import train

    cfg = from_dict(to_dict(tiny_cfg))
    cfg.model.whitening = "learned"
    cfg.train.epochs = 1
    samples = read_dataset(tiny_data)
    train(cfg, samples, tmp_path / "run", progress=False, log=lambda _: None)
    before = load_checkpoint(tmp_path / "run").fingerprint
    logs: list[str] = []
    train(cfg, samples, tmp_path / "run", resume=True, progress=False, log=logs.append)
    # nothing left to train: the whitened model (and galleries enrolled with it) stay valid
    assert load_checkpoint(tmp_path / "run").fingerprint == before
    assert not any("learned whitening" in m for m in logs)


def test_head_init_with_a_triplet_loss_fits_the_classifier_alone(tiny_cfg, tiny_data, tmp_path):
    from reid.config import from_dict, to_dict
    from reid.io.datasets import read_dataset
    from reid.training.loop import train

    cfg = from_dict(to_dict(tiny_cfg))
    cfg.train.head_init, cfg.loss.metric, cfg.train.epochs = "whitening", "triplet", 1
    logs: list[str] = []
    train(cfg, read_dataset(tiny_data), tmp_path / "run", progress=False, log=logs.append)
    line = next(m for m in logs if m.startswith("heads fitted"))
    first, last = (float(v) for v in line.split("loss ")[-1].split(" in")[0].split(" -> "))
    assert last < 0.5 * first  # cross-entropy alone on fixed features falls fast


def test_whitening_without_two_photos_of_any_animal_is_refused_before_training(
    tiny_cfg, tiny_data, tmp_path
):
    from reid.config import from_dict, to_dict
    from reid.io.datasets import read_dataset
    from reid.training.loop import train

    cfg = from_dict(to_dict(tiny_cfg))
    cfg.model.whitening, cfg.data.val_fraction = "learned", 0.0
    one_each = list({s.individual: s for s in read_dataset(tiny_data)}.values())
    with pytest.raises(ReIDError, match="no animal has 2 training photos"):
        train(cfg, one_each, tmp_path / "run", progress=False, log=lambda _: None)
    assert not (tmp_path / "run" / "model.pt").exists()
