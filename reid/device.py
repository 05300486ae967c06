"""Device choice and the uint8 -> tensor step, shared by training and embedding.

Kept apart from the training code so that matching one photo does not import the training
stack (albumentations, OpenCV, pytorch-metric-learning): start-up time matters in the field.
"""

from __future__ import annotations

import numpy as np
import torch

from reid.errors import ReIDError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; a CUDA request without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ReIDError(
            f"device {name!r} was asked for but no CUDA GPU is visible: use device cpu or auto."
        )
    try:
        return torch.device(name)
    except RuntimeError:
        raise ReIDError(f"Unknown device {name!r}: use auto, cpu, cuda or cuda:N.") from None


def to_tensor_batch(images: np.ndarray) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, 3, S, S) float32 in [0, 1]."""
    images = np.ascontiguousarray(images)
    if not images.flags.writeable:  # e.g. np.asarray of a PIL image; torch wants writable memory
        images = images.copy()
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
