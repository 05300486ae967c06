"""ReIDModel: a timm backbone with a classifier head over individuals and an L2-normalised
embedding head, trained together. One forward returns both, in every mode."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from reid.config import Config
from reid.errors import ReIDError
from reid.features.backbone import build_backbone

PHOTO_MEAN, PHOTO_STD = 0.45, 0.25  # target brightness and contrast of model.photo_norm=per_photo


class ReIDOutput(NamedTuple):
    embeddings: torch.Tensor  # (N, D) float32, L2-normalised
    logits: torch.Tensor  # (N, C) float32, classifier scores over the training individuals


class ReIDModel(nn.Module):
    """(N, 3, H, W) float RGB in [0, 1] -> :class:`ReIDOutput`.

    Normalisation (mean/std of the backbone's pretraining) lives inside the model as buffers,
    so a checkpoint carries it and every caller feeds the same [0, 1] tensors.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        *,
        embedding_dim: int = 512,
        dropout: float = 0.3,
        mean: tuple[float, float, float] = (0.5, 0.5, 0.5),
        std: tuple[float, float, float] = (0.5, 0.5, 0.5),
        photo_norm: str = "none",
        pooling: str = "avg",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.grid = pooling == "grid2x2"  # a Python flag: the traced graph takes one branch
        num_features = backbone.num_features * (4 if self.grid else 1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(num_features, num_classes)
        # BatchNorm after the projection keeps embedding scales comparable across dimensions,
        # the usual "BNNeck" trick from person re-ID.
        self.embedding = nn.Sequential(
            nn.Linear(num_features, embedding_dim, bias=False), nn.BatchNorm1d(embedding_dim)
        )
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        # a buffer, not a Python flag: it is in the state dict, hence in the fingerprint, and
        # in the exported copy
        self.register_buffer("per_photo", torch.tensor(float(photo_norm == "per_photo")))

    @property
    def num_classes(self) -> int:
        return self.classifier.out_features

    @property
    def embedding_dim(self) -> int:
        return self.embedding[0].out_features

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, F) pooled backbone features ((N, 4F) with the 2x2
        grid: the average of each quarter of the feature map, cell by cell per channel)."""
        x = self.normalise(images)
        if self.grid:
            fmap = self.backbone.forward_features(x)
            if fmap.dim() != 4:  # a transformer's tokens (N, T, C) have no quarters
                raise ReIDError(
                    f"model.pooling=grid2x2 needs a convolutional backbone with an (N, C, h, w) "
                    f"feature map; this one gives shape {tuple(fmap.shape)}: use model.pooling=avg."
                )
            return F.adaptive_avg_pool2d(fmap, 2).flatten(1)
        return self.backbone(x)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, 3, H, W) as the backbone expects it."""
        flat = images.flatten(1)
        m = flat.mean(1).view(-1, 1, 1, 1)
        s = flat.std(1).view(-1, 1, 1, 1).clamp_min(0.02)
        # per photo: brightness and contrast mapped to those of a typical well-exposed photo
        standardised = (images - m) / s * PHOTO_STD + PHOTO_MEAN
        images = images + self.per_photo * (standardised - images)
        return (images - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> ReIDOutput:
        feats = self.dropout(self.features(images))
        emb = self.embedding(feats).float()
        return ReIDOutput(F.normalize(emb, dim=1), self.classifier(feats).float())


def build_model(cfg: Config, num_classes: int, *, pretrained: str | None = None) -> ReIDModel:
    """Model from config; ``pretrained`` overrides the config's (checkpoints pass "none")."""
    backbone = build_backbone(cfg.model.backbone, pretrained or cfg.model.pretrained)
    data_cfg = backbone.pretrained_cfg or {}
    return ReIDModel(
        backbone,
        num_classes,
        embedding_dim=cfg.model.embedding_dim,
        dropout=cfg.model.dropout,
        photo_norm=cfg.model.photo_norm,
        pooling=cfg.model.pooling,
        mean=tuple(data_cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(data_cfg.get("std", (0.229, 0.224, 0.225))),
    )
