"""Training loss: cross-entropy on the classifier plus a metric-learning loss on the embeddings."""

from __future__ import annotations

import torch
from pytorch_metric_learning import distances, losses, miners
from torch import nn

from reid.config import LossConfig
from reid.model import ReIDOutput


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
