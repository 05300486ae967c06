"""Training loss: cross-entropy on the classifier plus a metric-learning loss on the embeddings."""

from __future__ import annotations

import torch
from pytorch_metric_learning import distances, losses, miners
from torch import nn

from reid.config import LossConfig
from reid.features.model import ReIDOutput


class ReIDLoss(nn.Module):
    """``CE(logits) + metric_weight * metric(embeddings)``.

    The metric loss may own parameters (ArcFace class centres): they are in this module's
    ``parameters()`` and ``state_dict()``, so the optimiser trains them and checkpoints keep them.
    """

    def __init__(
        self, metric: nn.Module, miner: nn.Module | None = None, metric_weight: float = 1.0
    ):
        super().__init__()
        self.metric = metric
        self.miner = miner
        self.metric_weight = metric_weight
        self.ce = nn.CrossEntropyLoss()

    def forward(self, out: ReIDOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Returns {"loss", "ce", "metric"} scalar tensors."""
        ce = self.ce(out.logits, labels)
        emb = out.embeddings.float()
        pairs = self.miner(emb, labels) if self.miner is not None else None
        metric = self.metric(emb, labels, pairs) if pairs is not None else self.metric(emb, labels)
        return {
            "loss": ce + self.metric_weight * metric,
            "ce": ce.detach(),
            "metric": metric.detach(),
        }


def build_loss(cfg: LossConfig, num_classes: int, embedding_dim: int) -> ReIDLoss:
    if cfg.metric == "arcface":
        metric = losses.ArcFaceLoss(
            num_classes=num_classes,
            embedding_size=embedding_dim,
            margin=cfg.margin_deg,
            scale=cfg.scale,
        )
        return ReIDLoss(metric, metric_weight=cfg.metric_weight)
    if cfg.metric == "subcenter_arcface":
        metric = losses.SubCenterArcFaceLoss(
            num_classes=num_classes,
            embedding_size=embedding_dim,
            margin=cfg.margin_deg,
            scale=cfg.scale,
            sub_centers=cfg.sub_centers,
        )
        return ReIDLoss(metric, metric_weight=cfg.metric_weight)
    distance = distances.CosineSimilarity()
    metric = losses.TripletMarginLoss(margin=cfg.triplet_margin, distance=distance)
    miner = miners.TripletMarginMiner(
        margin=cfg.triplet_margin, type_of_triplets="semihard", distance=distance
    )
    return ReIDLoss(metric, miner=miner, metric_weight=cfg.metric_weight)


@torch.no_grad()
def imprint_centres(metric: nn.Module, embeddings: torch.Tensor, labels: torch.Tensor) -> bool:
    """Set an ArcFace-style loss's class centres to its classes' mean embeddings ("weight
    imprinting", Qi et al. 2018), so that a head fitted on fixed features starts at the
    solution, not at random centres that gradient steps at a fine-tuning rate barely move.

    ``metric.W`` is (D, C * sub_centers), a class's sub-centres side by side; embeddings (N, D),
    labels (N,) in [0, C). Each sub-centre gets its class mean plus a little noise (identical
    sub-centres would never separate, and a centre exactly on a one-photo class's embedding
    makes ArcFace's gradient infinite); classes with no embedding keep their centres. Returns
    False (and changes nothing) for a loss without centres.
    """
    w = getattr(metric, "W", None)
    if not isinstance(w, torch.Tensor) or w.ndim != 2 or w.shape[0] != embeddings.shape[1]:
        return False
    sub = int(getattr(metric, "sub_centers", 1))
    num_classes = w.shape[1] // sub
    emb = nn.functional.normalize(embeddings.float(), dim=1)
    sums = torch.zeros(num_classes, emb.shape[1], device=emb.device).index_add_(0, labels, emb)
    present = torch.bincount(labels, minlength=num_classes) > 0
    means = nn.functional.normalize(sums, dim=1)
    centres = w.detach().t().reshape(num_classes, sub, -1).clone()
    norm = w.norm(dim=0).mean()
    # ~1 degree off the mean: a class of one photo would otherwise sit at cosine exactly 1,
    # where ArcFace's arccos has an infinite gradient (NaN losses from the first step)
    noise = 0.02 * norm / emb.shape[1] ** 0.5 * torch.randn_like(centres)
    centres[present] = (means[:, None, :] * norm + noise)[present]
    w.copy_(centres.reshape(num_classes * sub, -1).t().to(w.dtype))
    return True
