"""Heat maps for a batch of photos, written as PNGs: what ``reid explain`` does.

For each query (a photo, or one head in it) :func:`write_heat_maps` writes
``OUT/<stem>_<label column>.png``, the Grad-CAM of the classifier's decision, and, given a
gallery, ``OUT/<stem>_match.png``: what made the photo similar to its nearest gallery photo, on
both photos. A photo that cannot be read, or holds no head, is reported and the rest go on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from reid.detect.heads import Query
from reid.errors import ImageLoadError
from reid.explain.gradcam import Explainer, plot_explanation, plot_match_explanation

if TYPE_CHECKING:
    import numpy as np

    from reid.features.embedder import Embedder
    from reid.gallery import Gallery


@dataclass
class HeatMaps:
    """What :func:`write_heat_maps` wrote: how many PNGs, and "photo: why" per photo skipped."""

    written: int = 0
    problems: list[str] = field(default_factory=list)


def write_heat_maps(
    explainer: Explainer,
    queries: Sequence[Query],
    out_dir: str | Path,
    *,
    gallery: Gallery | None = None,
    progress: bool = True,
) -> HeatMaps:
    """Write the class heat map of each query (and, with ``gallery``, of its top match) into
    ``out_dir``. The gallery must have been enrolled with ``explainer``'s model."""
    out_dir = Path(out_dir)
    loaded = explainer.loaded
    column = loaded.config.data.label_column
    matcher = _Matcher(explainer, gallery) if gallery is not None else None
    out = HeatMaps()
    for q in tqdm(queries, desc="explaining", unit="photo", disable=not progress):
        if q.error:
            out.problems.append(f"{q.path}: {q.error}")
            continue
        try:
            image = explainer.prepare(q.path, q.box)
        except ImageLoadError as exc:
            out.problems.append(f"{q.path}: {exc.reason}")
            continue
        stem = Path(q.label.replace("#", "_head")).stem
        [exp] = explainer.explain_class(image[None])
        plot_explanation(
            q.path, exp, out_dir / f"{stem}_{column}.png", box=q.box,
            title=f"{column}: {exp.label}  (probability {exp.score:.3f})",
        )  # fmt: skip
        out.written += 1
        if matcher is not None and matcher.explain(q, image, out_dir / f"{stem}_match.png"):
            out.written += 1
    return out


class _Matcher:
    """Finds a query's nearest gallery photo and plots what the two have in common."""

    def __init__(self, explainer: Explainer, gallery: Gallery) -> None:
        from reid.features.embedder import Embedder

        loaded = explainer.loaded
        gallery.check_model(loaded.fingerprint, loaded.embedding_dim)
        self.explainer, self.gallery, self.fingerprint = explainer, gallery, loaded.fingerprint
        self.embedder: Embedder = Embedder(loaded, explainer.device)
        self.boxes = {im.image_id: im.box for im in gallery.images()}

    def explain(self, q: Query, image: np.ndarray, out: Path) -> bool:
        """Plot the match of ``image`` (the prepared query); False when the gallery is empty."""
        vec = self.embedder.embed_arrays(image[None])[0]
        [m] = self.gallery.identify(vec, model_fingerprint=self.fingerprint, top_k=1)
        if not m.candidates:
            return False
        top = m.candidates[0]
        ref_box = self.boxes.get(top.image_id)
        pair = self.explainer.explain_match(
            image, self.explainer.prepare(top.image_path, ref_box), label=top.individual
        )
        threshold = f"{m.threshold:.3f}" if m.threshold is not None else "uncalibrated"
        plot_match_explanation(
            q.path, top.image_path, pair, out, query_box=q.box, gallery_box=ref_box,
            title=f"decision: {m.decision}  (nearest {top.individual}, similarity "
            f"{top.score:.3f}, threshold {threshold})",
        )  # fmt: skip
        return True
