"""A foreground mask from the model's attention keeps the keypoints on the object."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from reid.matching.local import LocalFeatures
from reid.matching.local.foreground import attention_maps, heat_at, keep_foreground, masked_all


class _Brightness(nn.Module):
    """A 'backbone' whose feature map is each 8x8 block's brightness (positive weights)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 8, stride=8, bias=False), nn.ReLU())
        nn.init.constant_(self.backbone[0].weight, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x).mean(dim=(2, 3))


def _features(xy: list[tuple[float, float]], size=(64, 64)) -> LocalFeatures:
    n = len(xy)
    return LocalFeatures(
        np.asarray(xy, np.float32).reshape(n, 2),
        np.arange(n * 4, dtype=np.uint8).reshape(n, 4),
        np.linspace(1, 0, n).astype(np.float32),
        size,
        np.zeros(n, np.uint8),
    )


def test_attention_follows_the_bright_object_and_masks_the_rest():
    images = np.zeros((2, 64, 64, 3), np.uint8)
    images[0, :24, :24] = 255  # object top left
    images[1, 40:, 40:] = 255  # object bottom right
    maps = attention_maps(_Brightness().eval(), images, batch_size=1)
    assert maps.shape == (2, 8, 8)
    assert maps.min() >= 0 and maps.max() <= 1
    assert maps[0, 0, 0] == 1 and maps[0, -1, -1] == 0
    assert maps[1, -1, -1] == 1 and maps[1, 0, 0] == 0
    # a 128x64 region (the photo stretched to the square the model saw): the map spans it
    feats = _features([(10, 5), (120, 60), (20, 10), (100, 50)], size=(128, 64))
    kept = keep_foreground(feats, maps[0], keep=0.25)
    assert kept.keypoints.tolist() == [[10, 5], [20, 10]]
    assert kept.views.shape == (2,) and len(kept.descriptors) == 2 and len(kept.scores) == 2
    assert keep_foreground(feats, maps[0], keep=1.0) is feats


def test_heat_at_reads_cell_centres_and_interpolates():
    heat = np.array([[0.0, 1.0], [0.0, 1.0]], np.float32)
    xy = np.array([[25, 25], [75, 25], [50, 50], [0, 0], [100, 100]], np.float32)
    got = heat_at(heat, xy, (100, 100))
    assert got.tolist() == pytest.approx([0.0, 1.0, 0.5, 0.0, 1.0])


def test_keep_foreground_refuses_a_bad_fraction_and_masked_all_keeps_none():
    feats = _features([(1, 1)])
    with pytest.raises(ValueError, match="keep"):
        keep_foreground(feats, np.ones((2, 2), np.float32), keep=0)
    asked: list[list[int]] = []

    def heat_of(rows: list[int]) -> np.ndarray:
        asked.append(rows)
        return np.ones((len(rows), 2, 2), np.float32)

    out = masked_all([None, feats], heat_of, keep=0.5)
    assert out[0] is None and len(out[1]) == 1
    assert asked == [[1]]


def test_keep_foreground_keeps_the_strongest_budget_on_the_object():
    heat = np.zeros((8, 8), np.float32)
    heat[:4] = 1.0  # the top half is the object
    xy = [(10, 5), (10, 50), (20, 10), (30, 20), (50, 60)]  # 3 on the object
    feats = _features(xy)  # scores strongest first: 1.0, 0.75, 0.5, 0.25, 0.0
    kept = keep_foreground(feats, heat, keep=0.5, max_keypoints=2)
    assert kept.keypoints.tolist() == [[10, 5], [20, 10]]
    assert len(keep_foreground(feats, heat, keep=1.0, max_keypoints=2)) == 2
