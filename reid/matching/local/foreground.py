"""Keeping the local features that lie on the animal: a foreground mask from the model's own
attention.

Where photos are taken at fixed spots (camera traps, a pool visited every survey), the ground,
rocks and bushes behind two different animals match each other as well as two sightings of one
animal do: verified correspondences then measure "same place", not "same individual". The
detector's head crop removes most background for salamanders; for photos without a detector
(nyala flanks, whole-body shots) the model's own feature map says where the animal is: an
ImageNet-trained backbone responds most strongly on objects, weakly on ground and sky.

:func:`attention_maps` is the mean positive activation of the backbone's last spatial feature
map (the map Grad-CAM uses, without a class: nothing to choose, no gradient), scaled to [0, 1]
per photo; :func:`keep_foreground` drops the keypoints outside the ``keep`` most attended
fraction of the photo. The model sees the whole region stretched to a square (as it embeds it),
so a keypoint at (x, y) of a (W, H) region reads the map at (x / W, y / H) of its extent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from reid.matching.local.features import LocalFeatures

if TYPE_CHECKING:
    from torch import nn

DEFAULT_KEEP = 0.5  # fraction of the photo kept; nyala flanks: the body is 30-60 % of a photo


def attention_maps(model: nn.Module, images: np.ndarray, *, batch_size: int = 16) -> np.ndarray:
    """The backbone's attention on each image: (N, h, w) float32 in [0, 1] (the mean positive
    activation of the last spatial feature map, min-max scaled per image).

    ``images``: (N, S, S, 3) uint8 RGB, each photo region stretched to the model's input size
    (:func:`reid.io.images.prepare_image`); ``model``: a network whose backbone has a spatial
    map at that size (any timm backbone; :func:`reid.explain.gradcam.last_feature_layer`).
    """
    import torch

    from reid.device import to_tensor_batch
    from reid.explain.gradcam import last_feature_layer

    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"attention_maps wants (N, S, S, 3) images, got {images.shape}")
    layer = last_feature_layer(model, int(images.shape[1]))
    found: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: found.append(out.detach()))
    device = next(model.parameters()).device
    maps = []
    try:
        with torch.no_grad():
            for begin in range(0, len(images), batch_size):
                found.clear()
                model(to_tensor_batch(images[begin : begin + batch_size]).to(device))
                heat = found[-1].clamp(min=0).mean(dim=1)  # (B, h, w)
                low = heat.amin(dim=(1, 2), keepdim=True)
                high = heat.amax(dim=(1, 2), keepdim=True)
                maps.append(((heat - low) / (high - low).clamp(min=1e-12)).cpu().numpy())
    finally:
        handle.remove()
    return np.concatenate(maps).astype(np.float32) if maps else np.zeros((0, 1, 1), np.float32)


def heat_at(heat: np.ndarray, xy: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear reading of ``heat`` (h, w) at points ``xy`` (M, 2) in pixels of a region of
    ``size`` (width, height) that the map spans: (M,) float32."""
    h, w = heat.shape
    width, height = size
    u = np.clip(xy[:, 0] / max(width, 1) * w - 0.5, 0, w - 1)
    v = np.clip(xy[:, 1] / max(height, 1) * h - 0.5, 0, h - 1)
    u0, v0 = np.floor(u).astype(int), np.floor(v).astype(int)
    u1, v1 = np.minimum(u0 + 1, w - 1), np.minimum(v0 + 1, h - 1)
    fu, fv = u - u0, v - v0
    top = heat[v0, u0] * (1 - fu) + heat[v0, u1] * fu
    bottom = heat[v1, u0] * (1 - fu) + heat[v1, u1] * fu
    return (top * (1 - fv) + bottom * fv).astype(np.float32)


def keep_foreground(
    features: LocalFeatures,
    heat: np.ndarray,
    keep: float = DEFAULT_KEEP,
    max_keypoints: int | None = None,
) -> LocalFeatures:
    """``features`` without the keypoints that lie outside the ``keep`` (0-1] most attended
    fraction of the region, then (``max_keypoints``) only the strongest that many of those: an
    extractor asked for more keypoints than usual keeps its usual budget on the animal.
    ``heat``: (h, w) attention over the region ``features.size``."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], not {keep}")
    inside = np.ones(len(features), dtype=bool)
    if keep < 1 and len(features) and heat.max() > heat.min():  # a flat map tells nothing
        level = np.quantile(heat, 1 - keep)
        value = heat_at(heat, features.keypoints, features.size)
        inside = (value >= level) & (value > heat.min())  # the least attended level never counts
    if max_keypoints is not None and inside.sum() > max_keypoints:
        strongest = np.argsort(-np.where(inside, features.scores, -np.inf), kind="stable")
        inside = np.zeros(len(features), dtype=bool)
        inside[strongest[:max_keypoints]] = True
    if inside.all():
        return features
    views = None if features.views is None else features.views[inside]
    return replace(
        features,
        keypoints=features.keypoints[inside],
        descriptors=features.descriptors[inside],
        scores=features.scores[inside],
        views=views,
    )


def masked_all(
    features: Sequence[LocalFeatures | None],
    heat_of: Callable[[list[int]], np.ndarray],
    keep: float = DEFAULT_KEEP,
    max_keypoints: int | None = None,
) -> list[LocalFeatures | None]:
    """:func:`keep_foreground` over a list (None stays None); ``heat_of(rows)`` gives the
    (len(rows), h, w) maps of the photos at those positions."""
    rows = [i for i, f in enumerate(features) if f is not None]
    maps = heat_of(rows) if rows else np.zeros((0, 1, 1), np.float32)
    out: list[LocalFeatures | None] = list(features)
    for i, heat in zip(rows, maps, strict=True):
        out[i] = keep_foreground(features[i], heat, keep, max_keypoints)
    return out


__all__ = [
    "DEFAULT_KEEP",
    "attention_maps",
    "heat_at",
    "keep_foreground",
    "masked_all",
]
