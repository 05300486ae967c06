"""File -> vector, the one way: load_image -> optional crop -> resize -> model.

Used by evaluation, enrollment and matching alike. Decoding of the next batch runs in threads
while the model works on the current one.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from reid.detect.crop import Box
from reid.device import resolve_device, to_tensor_batch
from reid.errors import ImageLoadError
from reid.features.checkpoint import LoadedModel, load_checkpoint
from reid.io.images import try_prepare_image


@dataclass
class EmbedResult:
    indices: list[int]  # positions (in the input list) of the photos that were embedded
    embeddings: np.ndarray  # (N, D) float32, L2-normalised
    logits: np.ndarray  # (N, C) float32
    failures: list[ImageLoadError] = field(default_factory=list)
    failed_indices: list[int] = field(default_factory=list)  # positions of ``failures``


class Embedder:
    """Embeds photos with a trained model; ``fingerprint`` names the model for galleries."""

    def __init__(
        self,
        loaded: LoadedModel,
        device: str | torch.device = "auto",
        batch_size: int = 32,
        num_threads: int = 4,
        amp: bool = False,
    ) -> None:
        """``amp``: bf16 autocast on a GPU, for throughput only. Off by default, because a
        gallery's vectors and its threshold must not depend on which machine embedded them."""
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.loaded = loaded
        self.model = loaded.model.to(self.device).eval()
        self.batch_size, self.num_threads = batch_size, num_threads
        self.amp = amp and self.device.type == "cuda"

    @classmethod
    def from_run(cls, run: str | Path, device: str = "auto", **kwargs) -> Embedder:
        """The run's model; on the CPU its exported ONNX copy when valid (faster start-up)."""
        resolved = resolve_device(device)
        return cls(load_checkpoint(run, resolved, exported=True), resolved, **kwargs)

    @property
    def fingerprint(self) -> str:
        return self.loaded.fingerprint

    @property
    def classes(self) -> list[str]:
        return self.loaded.classes

    @torch.no_grad()
    def embed_arrays(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, S, S, 3) uint8 -> ((N, D) float32 embeddings, (N, C) float32 logits)."""
        x = to_tensor_batch(images).to(self.device)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            embeddings, logits = self.model(x)[:2]  # a ReIDOutput, or the exported copy's tuple
        return embeddings.float().cpu().numpy(), logits.float().cpu().numpy()

    def embed_paths(
        self,
        paths: Sequence[str | Path],
        boxes: Sequence[Box | None] | None = None,
        *,
        progress: bool = True,
        desc: str = "embedding",
    ) -> EmbedResult:
        """Embed files; unreadable ones are listed in ``failures`` and the rest goes on."""
        size = self.loaded.input_size
        max_pixels = self.loaded.config.data.max_image_pixels
        boxes = list(boxes) if boxes is not None else [None] * len(paths)

        def decode(i: int) -> np.ndarray | ImageLoadError:
            return try_prepare_image(paths[i], size, box=boxes[i], max_pixels=max_pixels)

        chunks = [
            list(range(k, min(k + self.batch_size, len(paths))))
            for k in range(0, len(paths), self.batch_size)
        ]
        result = EmbedResult(
            [],
            np.zeros((0, self.loaded.embedding_dim), np.float32),
            np.zeros((0, len(self.classes)), np.float32),
        )
        embs, logits = [], []
        with (
            ThreadPoolExecutor(self.num_threads) as pool,
            tqdm(total=len(paths), desc=desc, disable=not progress, unit="img") as bar,
        ):
            pending = pool.map(decode, chunks[0]) if chunks else None
            for k, chunk in enumerate(chunks):
                decoded = list(pending)
                if k + 1 < len(chunks):  # start decoding the next batch while this one runs
                    pending = pool.map(decode, chunks[k + 1])
                good = [
                    (i, d)
                    for i, d in zip(chunk, decoded, strict=True)
                    if not isinstance(d, ImageLoadError)
                ]
                for i, d in zip(chunk, decoded, strict=True):
                    if isinstance(d, ImageLoadError):
                        result.failures.append(d)
                        result.failed_indices.append(i)
                if good:
                    e, lg = self.embed_arrays(np.stack([d for _, d in good]))
                    embs.append(e)
                    logits.append(lg)
                    result.indices += [i for i, _ in good]
                bar.update(len(chunk))
        if embs:
            result.embeddings, result.logits = np.concatenate(embs), np.concatenate(logits)
        return result
