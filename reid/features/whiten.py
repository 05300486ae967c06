"""Learned discriminative whitening of pooled features, installed as the embedding head.

Radenović, Tolias & Chum (ECCV 2016; TPAMI 2019, "Fine-tuning CNN image retrieval with no
human annotation"): from labelled photos, whiten the features by the scatter of differences
between photos of the *same* individual (what varies with pose, light and background), then
rotate so the remaining axes are ordered by how much they separate *different* individuals, and
keep the first ``dim``. It is a closed-form linear map, fitted in seconds from a few hundred
photos. On nyala antelopes the model never trained on (three LOIO splits), whitening the frozen
ImageNet features raised AUROC 0.52 -> 0.61, 0.52 -> 0.57 and 0.49 -> 0.55 and mAP by 0.019,
0.016 and 0.000, while rank-1 moved +0.03, -0.02 and -0.02 (a few of ~250 queries: noise)
(benchmarks/results/loio_nyala_fast_lpft*.md); linear heads trained by gradient descent with
triplet, ArcFace or supervised-contrastive losses on the same features did not beat the frozen
features (benchmarks/results/probe_nyala.md).

``fit_whitening(features, labels, dim)`` -> :class:`Whitening`; ``install(model, whitening)``
writes it into a :class:`~reid.features.model.ReIDModel`'s embedding head (its Linear and BatchNorm
layers), so checkpoints, the exported copy, galleries and every caller use it unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from reid.errors import ReIDError


@dataclass
class Whitening:
    mean: np.ndarray  # (F,) float32, the training features' mean
    projection: np.ndarray  # (F, D) float32: embedding = (features - mean) @ projection
    num_photos: int
    num_pairs: int  # photo pairs of one identity the within-identity scatter was measured on
    rank: int  # dimensions the training features span (columns past min(rank, D) are zero)

    def apply(self, features: np.ndarray) -> np.ndarray:
        """(N, F) -> (N, D) whitened, not normalised."""
        return (features - self.mean) @ self.projection


def fit_whitening(
    features: np.ndarray, labels: Sequence, dim: int, shrinkage: float = 0.1
) -> Whitening:
    """Fit learned whitening on ``features`` (N, F) with identities ``labels`` (N,).

    ``shrinkage`` adds that fraction of the within-identity scatter's mean eigenvalue to every
    eigenvalue before inverting it: with a few photos per identity the scatter is estimated
    from little data and its smallest directions are noise that plain inversion would amplify.
    Directions the training features do not span get weight 0; if they span fewer than ``dim``
    dimensions, the last columns are zero (those embedding values are always 0).
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=object)
    _check_inputs(x, y, shrinkage)
    mean = x.mean(0)
    z = x - mean
    # the span of the training features: all the whitening can learn about (N is often < F)
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    basis = vt[s > s[0] * 1e-6].T if len(s) and s[0] > 0 else vt[:0].T  # (F, r)
    zb = z @ basis
    scatter, pairs = _within_identity_scatter(zb, y)
    if pairs == 0 or basis.shape[1] == 0:
        raise ReIDError(
            "Whitening needs at least one identity with 2 or more photos (it learns what "
            f"varies between photos of one animal); the {len(y)} training photos have none."
        )
    if np.trace(scatter) <= 0:
        raise ReIDError(
            "Whitening found no difference at all between photos of the same animal (are the "
            "photos duplicates?): it needs different photos of each animal."
        )
    scatter /= pairs
    r = scatter.shape[0]
    scatter += shrinkage * np.trace(scatter) / r * np.eye(r)
    w, v = np.linalg.eigh(scatter)
    white = v / np.sqrt(w)  # (r, r): the within-identity scatter becomes the identity
    zw = zb @ white
    w2, v2 = np.linalg.eigh(zw.T @ zw / len(zw))  # spread of all photos, whitened
    order = np.argsort(w2)[::-1][:dim]
    projection = np.zeros((x.shape[1], dim))
    projection[:, : len(order)] = basis @ white @ v2[:, order]
    return Whitening(mean.astype(np.float32), projection.astype(np.float32), len(x), pairs, r)


def _check_inputs(x: np.ndarray, y: np.ndarray, shrinkage: float) -> None:
    """One feature row per label, finite features, a positive shrinkage."""
    if x.ndim != 2 or len(x) != len(y):
        raise ReIDError(
            f"Whitening needs one feature row per label; got features of shape {x.shape} "
            f"and {len(y)} labels."
        )
    if not np.isfinite(x).all():
        raise ReIDError("Whitening got non-finite features: the model produced NaN or inf.")
    if not (math.isfinite(shrinkage) and shrinkage > 0):
        raise ReIDError(f"Whitening shrinkage must be a positive number; got {shrinkage}.")


def _within_identity_scatter(zb: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, int]:
    """(r, r) sum over pairs (i, j) of one identity of (z_i - z_j)(z_i - z_j)^T for centred
    features ``zb`` (N, r), and the number of such pairs; computed as n_c * sum_i (z_i - m_c)
    (z_i - m_c)^T per identity c with n_c photos."""
    scatter = np.zeros((zb.shape[1], zb.shape[1]))
    pairs = 0
    for c in dict.fromkeys(y.tolist()):
        rows = zb[y == c]
        n = len(rows)
        if n < 2:
            continue
        d = rows - rows.mean(0)
        scatter += n * (d.T @ d)
        pairs += n * (n - 1) // 2
    return scatter, pairs


def install(
    model: torch.nn.Module, whitening: Whitening, features: np.ndarray | None = None
) -> None:
    """Write ``whitening`` into ``model.embedding`` (Linear(F, D, bias=False), BatchNorm1d(D)):
    in eval mode it then computes (features - mean) @ projection exactly.

    With the training ``features`` (N, F), the BatchNorm also gets their per-dimension spread
    as its running variance and the matching scale, so that in training mode, which
    standardises each dimension by the batch, it still gives about the same vectors: the head
    can then start fine-tuning from the whitening instead of from random weights.
    """
    linear, norm = model.embedding[0], model.embedding[1]
    f, d = whitening.projection.shape
    if (linear.in_features, linear.out_features) != (f, d):
        raise ReIDError(
            f"The whitening maps {f} features to {d} dimensions but the model's embedding head "
            f"maps {linear.in_features} to {linear.out_features}: fit it on this model's "
            "features with model.embedding_dim dimensions."
        )
    proj = torch.from_numpy(whitening.projection)
    with torch.no_grad():
        linear.weight.copy_(proj.T)
        norm.running_mean.copy_(torch.from_numpy(whitening.mean) @ proj)
        norm.bias.zero_()
        if features is None:
            norm.running_var.fill_(1.0 - norm.eps)  # (x - m) / sqrt(var + eps) = x - m
            norm.weight.fill_(1.0)
        else:  # (x - m) / sqrt(var + eps) * sqrt(var + eps) = x - m, var from the photos
            var = torch.from_numpy(whitening.apply(features).var(0).astype(np.float32))
            norm.running_var.copy_(var)
            norm.weight.copy_((var + norm.eps).sqrt())
