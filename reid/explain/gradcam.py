"""Why the model decided: Grad-CAM heat maps for a class and for a match.

Both studies explained their EfficientNetV2 with Grad-CAM: the hybrid study showed that the head
spots drove the native-vs-hybrid decision, the individual study used it to reason about errors.
This module uses the maintained ``pytorch-grad-cam`` package (``pytorch_grad_cam``) on the
last feature map of the backbone:

- :meth:`Explainer.explain_class`: heat for the classifier's predicted class (or a given one);
- :meth:`Explainer.explain_match`: heat for the cosine similarity between a query's embedding
  and a gallery photo's, on the query, and the same the other way round on the gallery photo.

Heat maps are (S, S) float32 in [0, 1] over the model input (the photo, or its crop box,
resized to S x S); :func:`plot_explanation` and :func:`plot_match_explanation` draw them over the
photo as people look at it (the crop at its own aspect), with a colour bar and the decision and
score in the title.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from reid.detect.crop import Box
from reid.device import resolve_device, to_tensor_batch
from reid.features.checkpoint import LoadedModel, load_checkpoint
from reid.io.images import load_image, prepare_image


@dataclass(frozen=True)
class Explanation:
    """One heat map: ``heat`` (S, S) float32 in [0, 1] over ``image`` (S, S, 3) uint8, the
    model input; ``label`` and ``score`` say what it explains (a class and its probability, or
    a gallery individual and the cosine similarity)."""

    image: np.ndarray
    heat: np.ndarray
    label: str
    score: float


class _Logits(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


class _Embeddings(_Logits):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).embeddings


class _Similarity:
    """Grad-CAM target: cosine similarity of the output embedding to a fixed one."""

    def __init__(self, reference: torch.Tensor) -> None:
        self.reference = reference

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cosine_similarity(output, self.reference, dim=0)


def last_feature_layer(model: nn.Module, size: int) -> nn.Module:
    """The backbone's last module that outputs a spatial map (N, C, h, w) with h, w > 1: where
    Grad-CAM looks. Found by a probe forward, so it works for any timm backbone."""
    order: list[nn.Module] = []

    def hook(module, _inputs, output) -> None:
        if isinstance(output, torch.Tensor) and output.dim() == 4 and min(output.shape[-2:]) > 1:
            order.append(module)

    backbone = getattr(model, "backbone", model)
    leaves = [m for m in backbone.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
    if not order:
        raise ValueError(f"The backbone has no spatial feature map at {size} px input.")
    return order[-1]


class Explainer:
    """Grad-CAM for a trained run (the eager model, not the exported copy)."""

    def __init__(self, run: str | Path | LoadedModel, device: str = "cpu") -> None:
        from pytorch_grad_cam import GradCAM

        self.loaded = run if isinstance(run, LoadedModel) else load_checkpoint(run)
        self.device = resolve_device(device)
        self.model = self.loaded.model.to(self.device).eval()
        self.size = self.loaded.input_size
        layer = last_feature_layer(self.model, self.size)
        self._class_cam = GradCAM(model=_Logits(self.model), target_layers=[layer])
        self._sim_cam = GradCAM(model=_Embeddings(self.model), target_layers=[layer])

    @property
    def classes(self) -> list[str]:
        return self.loaded.classes

    def prepare(self, path: str | Path, box: Box | None = None) -> np.ndarray:
        """A photo (cut to ``box``) as the model sees it: (S, S, 3) uint8."""
        return prepare_image(path, self.size, box=box)

    @torch.no_grad()
    def _forward(self, images: np.ndarray):
        return self.model(to_tensor_batch(images).to(self.device))

    def explain_class(
        self, images: np.ndarray, targets: Sequence[int | None] | None = None
    ) -> list[Explanation]:
        """(N, S, S, 3) uint8 -> one :class:`Explanation` per image, for its predicted class
        (or ``targets[i]``); ``score`` is that class's softmax probability."""
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        images = np.array(images, dtype=np.uint8)  # a writable copy for torch.from_numpy
        probs = torch.softmax(self._forward(images).logits, dim=1).cpu().numpy()
        targets = list(targets) if targets is not None else [None] * len(images)
        chosen = [int(probs[i].argmax()) if t is None else int(t) for i, t in enumerate(targets)]
        x = to_tensor_batch(images).to(self.device)
        heat = self._class_cam(input_tensor=x, targets=[ClassifierOutputTarget(k) for k in chosen])
        return [
            Explanation(images[i], heat[i].astype(np.float32), self.classes[k], float(probs[i, k]))
            for i, k in enumerate(chosen)
        ]

    def explain_match(
        self, query: np.ndarray, reference: np.ndarray, label: str = ""
    ) -> tuple[Explanation, Explanation]:
        """Which regions of ``query`` (S, S, 3) make it similar to ``reference``, and which of
        ``reference`` make it similar to ``query``; ``score`` is their cosine similarity."""
        emb = self._forward(np.stack([query, reference])).embeddings
        score = float((emb[0] * emb[1]).sum())
        maps = []
        for image, other in ((query, emb[1]), (reference, emb[0])):
            x = to_tensor_batch(np.array(image[None])).to(self.device)
            maps.append(self._sim_cam(input_tensor=x, targets=[_Similarity(other)])[0])
        return (
            Explanation(query, maps[0].astype(np.float32), label, score),
            Explanation(reference, maps[1].astype(np.float32), label, score),
        )


def heat_inside_outside(heat: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Mean heat inside and outside a boolean ``mask`` of the same (S, S) shape (e.g. the spot
    mask of a synthetic head, resized to the model input)."""
    mask = np.asarray(mask, bool)
    return float(heat[mask].mean()), float(heat[~mask].mean())


# ----------------------------------------------------------------------------------- pictures
def _as_shown(path: str | Path, box: Box | None, heat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The photo region at its own aspect and the heat map resized onto it."""
    img = load_image(path)
    if box is not None:
        img = img.crop(box)
    img.thumbnail((512, 512))
    h = Image.fromarray(np.asarray(heat, np.float32)).resize(img.size, Image.BILINEAR)
    return np.asarray(img), np.clip(np.asarray(h), 0, 1)


def _panel(fig, ax_photo, ax_heat, photo: np.ndarray, heat: np.ndarray, caption: str) -> None:
    ax_photo.imshow(photo)
    ax_photo.set_title(caption, fontsize=9)
    ax_heat.imshow(photo)
    im = ax_heat.imshow(heat, cmap="jet", alpha=0.45, vmin=0, vmax=1)
    ax_heat.set_title("Grad-CAM", fontsize=9)
    for ax in (ax_photo, ax_heat):
        ax.axis("off")
    bar = fig.colorbar(im, ax=ax_heat, fraction=0.046, pad=0.04)
    bar.set_label("relative importance", fontsize=8)


def _save(fig, out: str | Path) -> Path:
    from reid.evaluation.plots import plt

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_explanation(
    path: str | Path, explanation: Explanation, out: str | Path, *, box: Box | None = None,
    title: str = "",
) -> Path:  # fmt: skip
    """PNG: the photo (or its crop) and the heat over it, with a colour bar; the title says the
    decision and its probability."""
    from reid.evaluation.plots import plt

    photo, heat = _as_shown(path, box, explanation.heat)
    fig, axes = plt.subplots(1, 2, figsize=(8.2, 4.2))
    _panel(fig, axes[0], axes[1], photo, heat, Path(path).name)
    fig.suptitle(
        title or f"predicted: {explanation.label}  (probability {explanation.score:.3f})",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    return _save(fig, out)


def plot_match_explanation(
    query_path: str | Path,
    gallery_path: str | Path,
    pair: tuple[Explanation, Explanation],
    out: str | Path,
    *,
    query_box: Box | None = None,
    gallery_box: Box | None = None,
    title: str = "",
) -> Path:
    """PNG, two rows: the query and what drove its similarity to the gallery photo; the gallery
    photo and what drove its similarity to the query. Title: decision and similarity."""
    from reid.evaluation.plots import plt

    fig, axes = plt.subplots(2, 2, figsize=(8.2, 8.0))
    for row, (path, box, exp, who) in enumerate(
        ((query_path, query_box, pair[0], "query"),
         (gallery_path, gallery_box, pair[1], f"gallery: {pair[1].label}"))
    ):  # fmt: skip
        photo, heat = _as_shown(path, box, exp.heat)
        name = Path(path).name  # a gallery keeps photos under their sha256: shorten that
        name = name if len(name) <= 40 else f"{name[:12]}...{Path(path).suffix}"
        _panel(fig, axes[row, 0], axes[row, 1], photo, heat, f"{who}\n{name}")
    fig.suptitle(title or f"match: {pair[0].label}  (similarity {pair[0].score:.3f})", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return _save(fig, out)


__all__ = [
    "Explainer",
    "Explanation",
    "heat_inside_outside",
    "last_feature_layer",
    "plot_explanation",
    "plot_match_explanation",
]
