"""Head crops from detected boxes, by the study's rule.

The study cropped a square-ish region centred on the detected head and sized like it, so the crop
holds the head spots with little background; identification was worse on uncropped photos. A
box is ``(x1, y1, x2, y2)`` in pixels of the photo as it is displayed (EXIF rotation applied),
with x1 < x2 and y1 < y2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from reid.errors import ReIDError

Box = tuple[int, int, int, int]  # (x1, y1, x2, y2) pixels


def crop_box(box: Sequence[float], width: int, height: int, margin: float = 0.1) -> Box:
    """The square region centred on ``box``, side ``max(w, h) * (1 + margin)``, clipped to a
    ``width`` x ``height`` photo (so at a border it is the part of that square inside the photo:
    square-ish, never padded, never shifted off the head's centre).

    Returns integer (x1, y1, x2, y2) with 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height.
    Raises ReIDError for a box with no area or wholly outside the photo.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1:
        raise ReIDError(f"Box {tuple(box)} has no area: give x1 < x2 and y1 < y2 in pixels.")
    if margin < 0:
        raise ReIDError(f"Crop margin {margin} is negative: give 0 (the box's size) or more.")
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half = max(x2 - x1, y2 - y1) * (1 + margin) / 2
    left, top = max(0, math.floor(cx - half)), max(0, math.floor(cy - half))
    right, bottom = min(width, math.ceil(cx + half)), min(height, math.ceil(cy + half))
    if right <= left or bottom <= top:
        raise ReIDError(f"Box {tuple(box)} lies outside the {width}x{height} photo.")
    return left, top, right, bottom


def cut(image: np.ndarray, crop: Sequence[int]) -> np.ndarray:
    """``image`` (H, W, 3) uint8 restricted to ``crop`` (x1, y1, x2, y2): (y2-y1, x2-x1, 3)."""
    x1, y1, x2, y2 = (int(v) for v in crop)
    return np.ascontiguousarray(image[y1:y2, x1:x2])


def parse_box(text: str) -> Box:
    """``"x1,y1,x2,y2"`` (as stored in a gallery or manifest) -> integers."""
    try:
        values = tuple(int(round(float(v))) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or values[2] <= values[0] or values[3] <= values[1]:
        raise ReIDError(f"Box {text!r} is not x1,y1,x2,y2 with x1 < x2 and y1 < y2.")
    return values  # type: ignore[return-value]
