"""Heads fitted on frozen pooled features: the learned whitening of the embedding head
(``model.whitening=learned``, ``train.head_init=whitening``) and the probe that starts the
classifier and the loss's class centres on the pretrained features."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from reid.config import Config
from reid.device import to_tensor_batch
from reid.features.model import ReIDModel, ReIDOutput
from reid.training.data import TrainData
from reid.training.losses import ReIDLoss, imprint_centres

if TYPE_CHECKING:  # reid.features.whiten is imported only by runs that use it
    from reid.features.whiten import Whitening


@torch.no_grad()
def pooled_features(
    model: ReIDModel, images: Sequence[np.ndarray], device: torch.device, batch_size: int,
    progress: bool = False,
) -> np.ndarray:  # fmt: skip
    """(S, S, 3) uint8 photos -> (N, F) float32 pooled backbone features, eval mode."""
    model.eval()
    out = []
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, desc="features", disable=not progress, leave=False, unit="batch"):
        batch = to_tensor_batch(np.stack(images[start : start + batch_size])).to(device)
        out.append(model.features(batch).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.classifier.in_features), np.float32)


def fit_training_whitening(
    model: ReIDModel, cfg: Config, data: TrainData, device: torch.device, progress: bool
) -> tuple[np.ndarray, Whitening]:
    """Pooled features (N, F) of the unaugmented training photos, and the learned whitening
    fitted on them with their identities."""
    from reid.features.whiten import fit_whitening

    feats = pooled_features(model, data.train.images, device, cfg.train.batch_size, progress)
    labels = [data.classes[i] for i in data.train.labels]
    w = fit_whitening(feats, labels, cfg.model.embedding_dim, cfg.model.whitening_shrinkage)
    return feats, w


def probe_heads(
    model: ReIDModel, loss_fn: ReIDLoss, cfg: Config, data: TrainData, device: torch.device,
    progress: bool, log: Callable[[str], None], steps: int = 200,
) -> None:  # fmt: skip
    """train.head_init=whitening: the embedding head becomes the learned whitening of the
    pretrained features of the (unaugmented) training photos; ArcFace class centres start at
    their classes' mean embeddings; then the classifier and the loss's own parameters learn on
    those fixed features (full batch, Adam)."""
    from reid.features.whiten import install

    feats, w = fit_training_whitening(model, cfg, data, device, progress)
    install(model, w, feats)
    x = torch.from_numpy(feats).to(device)
    y = torch.tensor(data.train.labels, device=device)
    with torch.no_grad():
        emb = torch.nn.functional.normalize(model.embedding(x).float(), dim=1)
    opt = torch.optim.Adam(
        [{"params": model.classifier.parameters(), "lr": 1e-3},  # Adam's usual rate
         {"params": loss_fn.parameters(), "lr": cfg.loss.lr}],
    )  # fmt: skip
    has_params = any(True for _ in loss_fn.parameters())
    imprinted = imprint_centres(loss_fn.metric, emb, y)
    first = last = None
    for _ in range(steps):
        logits = model.classifier(x).float()
        if has_params:  # ArcFace centres learn on the fixed embeddings
            loss = loss_fn(ReIDOutput(emb, logits), y)["loss"]
        else:  # triplet: a constant on fixed embeddings, and its miner over N photos is N^3
            loss = loss_fn.ce(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        last = float(loss.detach())
        first = last if first is None else first
    log(
        f"heads fitted on the pretrained features: whitening to {cfg.model.embedding_dim} "
        f"dimensions; {'class centres imprinted; ' if imprinted else ''}classifier and loss "
        f"parameters: loss {first:.3f} -> {last:.3f} in {steps} steps"
    )
