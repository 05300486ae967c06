"""Training losses: ArcFace class centres imprinted from embeddings."""

from __future__ import annotations

import torch

from reid.config import LossConfig
from reid.features.model import ReIDOutput
from reid.training.losses import build_loss, imprint_centres


def _clusters(classes: int = 12, per: int = 5, dim: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(classes, dim, generator=g), dim=1)
    labels = torch.arange(classes).repeat_interleave(per)
    emb = centres[labels] + 0.1 * torch.randn(len(labels), dim, generator=g)
    return emb, labels


def _class_means(emb, labels, classes: int = 12):
    unit = torch.nn.functional.normalize(emb, dim=1)
    return torch.nn.functional.normalize(
        torch.stack([unit[labels == c].mean(0) for c in range(classes)]), dim=1
    )


def _metric_loss(loss, emb, labels) -> float:
    logits = torch.zeros(len(labels), 1 + int(labels.max()))
    return float(loss(ReIDOutput(emb, logits), labels)["metric"])


def test_imprinted_arcface_centres_sit_on_their_class_means():
    emb, labels = _clusters()
    means = _class_means(emb, labels)
    loss = build_loss(LossConfig(metric="arcface"), 12, 16)
    random_start = _metric_loss(loss, emb, labels)
    assert imprint_centres(loss.metric, emb, labels)
    w = torch.nn.functional.normalize(loss.metric.W.t(), dim=1)
    assert (w * means).sum(1).min() > 0.999  # each class centre on its photos' mean
    # random centres leave the margin loss far from its optimum; imprinted ones near it
    assert _metric_loss(loss, emb, labels) < 0.2 * random_start


def test_imprinted_sub_centres_share_their_class_mean_but_are_not_identical():
    emb, labels = _clusters()
    means = _class_means(emb, labels)
    loss = build_loss(LossConfig(metric="subcenter_arcface", sub_centers=3), 12, 16)
    assert imprint_centres(loss.metric, emb, labels)
    w = torch.nn.functional.normalize(loss.metric.W.t(), dim=1).reshape(12, 3, 16)
    assert (w * means[:, None, :]).sum(-1).min() > 0.99
    assert not torch.equal(w[:, 0], w[:, 1])


def test_classes_without_photos_keep_their_centres_and_triplet_has_none():
    emb, labels = _clusters()
    loss = build_loss(LossConfig(metric="arcface"), 14, 16)  # classes 12 and 13: no photos
    before = loss.metric.W.detach().clone()
    imprint_centres(loss.metric, emb, labels)
    assert torch.equal(loss.metric.W[:, 12:], before[:, 12:])
    assert not torch.equal(loss.metric.W[:, :12], before[:, :12])
    triplet = build_loss(LossConfig(metric="triplet"), 12, 16)
    assert imprint_centres(triplet.metric, emb, labels) is False


def test_a_class_of_one_photo_trains_without_nan_after_imprinting():
    emb, labels = _clusters(classes=6, per=1)  # every class a single photo
    loss = build_loss(LossConfig(metric="arcface"), 6, 16)
    imprint_centres(loss.metric, emb, labels)
    emb = emb.clone().requires_grad_(True)
    total = loss(ReIDOutput(emb, torch.zeros(6, 6)), labels)["loss"]
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(emb.grad).all()
    assert torch.isfinite(loss.metric.W.grad).all()
