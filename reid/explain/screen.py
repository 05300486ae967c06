"""Category screening (e.g. native Japanese giant salamander vs hybrid with the Chinese one).

A screen is an ordinary run trained by :func:`reid.training.loop.train` with ``data.label_column``
set to a manifest column such as ``population`` (``configs/hybrid.yaml``); its classifier head gives
each photo's category probabilities. Training validates it on whole individuals it never saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import softmax

from reid.detect.crop import Box
from reid.errors import ReIDError
from reid.features.embedder import Embedder

if TYPE_CHECKING:
    from reid.detect.detector import HeadDetector


@dataclass
class ScreenRow:
    """One photo (or one detected head) screened; ``probabilities`` is None on an error."""

    path: Path
    label: str  # the photo's name, with #k for the k-th head of a photo with several
    probabilities: dict[str, float] | None
    error: str = ""
    box: Box | None = None

    @property
    def decision(self) -> str:
        if self.probabilities is None:
            return "ERROR"
        return max(self.probabilities, key=self.probabilities.__getitem__)


def check_screen(embedder: Embedder, run: str | Path) -> str:
    """The category column a screen run was trained on; error for an individual-id model."""
    column = embedder.loaded.config.data.label_column
    if column == "individual":
        raise ReIDError(
            f"Run {run} identifies individuals, it is not a category screen: train one with "
            "`reid train --config configs/hybrid.yaml` (data.label_column=population)."
        )
    return column


def screen_items(
    embedder: Embedder,
    paths: Sequence[Path],
    boxes: Sequence[Box | None] | None = None,
    *,
    progress: bool = True,
) -> list[dict[str, float] | str]:
    """Category probabilities of each photo (cut to ``boxes[i]``), or the reason it failed."""
    result = embedder.embed_paths(paths, boxes, progress=progress, desc="screening")
    out: list[dict[str, float] | str] = [""] * len(paths)
    for i, err in zip(result.failed_indices, result.failures, strict=True):
        out[i] = err.reason
    probs = softmax(result.logits, axis=1) if len(result.indices) else np.zeros((0, 0))
    for k, i in enumerate(result.indices):
        out[i] = {c: float(p) for c, p in zip(embedder.classes, probs[k], strict=True)}
    return out


def screen_photos(
    embedder: Embedder,
    photos: Sequence[Path],
    *,
    detector: HeadDetector | None = None,
    best: bool = False,
    progress: bool = True,
) -> list[ScreenRow]:
    """Screen photos; with a ``detector`` every head found is screened on its own (only the
    most confident with ``best``) and a photo with no head gives a row saying so."""
    from reid.detect.heads import head_queries

    queries = head_queries(detector, [Path(p) for p in photos], best=best, progress=progress)
    todo = [k for k, q in enumerate(queries) if not q.error]
    answers = screen_items(
        embedder, [queries[k].path for k in todo], [queries[k].box for k in todo],
        progress=progress,
    )  # fmt: skip
    rows = [ScreenRow(q.path, q.label, None, q.error, q.box) for q in queries]
    for k, answer in zip(todo, answers, strict=True):
        if isinstance(answer, str):
            rows[k].error = answer
        else:
            rows[k].probabilities = answer
    return rows


__all__ = ["ScreenRow", "check_screen", "screen_items", "screen_photos"]
