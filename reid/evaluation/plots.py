"""PNG figures people look at: confusion matrices and match sheets."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen on servers and field laptops running headless
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def plot_confusion(matrix: np.ndarray, labels: Sequence[str], path: Path, title: str) -> Path:
    """Row-normalised confusion matrix (rows truth, columns prediction); counts shown when few."""
    matrix = np.asarray(matrix)
    n = len(labels)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape, float), where=rows > 0)
    side = min(24.0, max(5.0, 0.35 * n + 2.5))
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true individual's photos")
    if n <= 60:  # beyond that, tick labels overlap into a black bar
        ax.set_xticks(range(n), labels, rotation=90, fontsize=8)
        ax.set_yticks(range(n), labels, fontsize=8)
    if n <= 30:
        for (i, j), count in np.ndenumerate(matrix):
            if count:
                ax.text(
                    j,
                    i,
                    str(count),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if share[i, j] > 0.6 else "black",
                )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_match_sheet(
    query: Path,
    match,
    path: Path,
    *,
    title: str = "",
    query_box: tuple[int, int, int, int] | None = None,
    boxes: dict[int, tuple[int, int, int, int] | None] | None = None,
    label: str = "",
) -> Path:
    """The query photo beside its top-k gallery photos with scores, for a person to confirm.

    ``match`` is a :class:`reid.gallery.Match`; the decision, score and threshold go in the title,
    each candidate's individual and similarity under its photo (green: the decision). Photos are
    shown cut to the region that was identified: ``query_box`` for the query, ``boxes[image_id]``
    for gallery photos (None: the whole photo).
    """
    from reid.io.images import load_image

    def shown(file: Path, box) -> Image.Image:
        img = load_image(file)
        return img.crop(box) if box is not None else img

    cands = list(match.candidates)
    boxes = boxes or {}
    fig, axes = plt.subplots(
        1, 1 + max(len(cands), 1), figsize=(3.0 * (1 + max(len(cands), 1)), 3.6)
    )
    axes = np.atleast_1d(axes)
    axes[0].imshow(shown(query, query_box))
    name = label or query.name  # a gallery or web upload keeps photos under their sha256
    name = name if len(name) <= 40 else f"{name[:12]}...{name[-12:]}"
    axes[0].set_title(f"query\n{name}", fontsize=9)
    for ax, cand in zip(axes[1:], cands, strict=False):
        try:
            ax.imshow(shown(cand.image_path, boxes.get(cand.image_id)))
        except Exception:  # a missing gallery photo must not stop the sheet
            ax.text(0.5, 0.5, "photo missing", ha="center", va="center")
        chosen = cand.individual == match.decision
        ax.set_title(
            f"{cand.individual}\nscore {cand.score:.3f}",
            fontsize=9,
            color="green" if chosen else "black",
            fontweight="bold" if chosen else None,
        )
    for ax in axes:
        ax.axis("off")
    threshold = f"{match.threshold:.3f}" if match.threshold is not None else "uncalibrated"
    fig.suptitle(
        title or f"decision: {match.decision}  (score {match.score:.3f}, threshold {threshold})",
        fontsize=11,
        color="darkred" if match.is_new else "black",
    )
    fig.tight_layout(rect=(0, 0, 1, 0.88))  # leave room for the decision line on top
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
