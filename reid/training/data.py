"""What a training run learns from: held-out individuals, decoded photos, the train/validation
split and the datasets the loop draws batches from."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from reid.config import Config
from reid.device import to_tensor_batch
from reid.errors import ReIDError
from reid.io.datasets import (
    ImageRecord,
    load_images,
    split_by_sighting,
    split_category_by_individual,
)
from reid.training.augment import build_augment


class ImageSet(Dataset):
    """Cached (S, S, 3) uint8 photos + integer labels; augments on the fly when ``augment``."""

    def __init__(self, images: Sequence[np.ndarray], labels: Sequence[int], augment=None) -> None:
        self.images, self.labels, self.augment = images, list(labels), augment

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        img = self.images[i]
        if self.augment is not None:
            img = self.augment(image=img)["image"]
        return img, self.labels[i]


def collate(batch: list[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(photo, label) pairs -> (B, 3, S, S) float32 images and (B,) int64 labels."""
    images = to_tensor_batch(np.stack([b[0] for b in batch]))
    return images, torch.tensor([b[1] for b in batch], dtype=torch.long)


@dataclass
class TrainData:
    """The photos of one run, decoded once: augmented training set, plain validation set."""

    train: ImageSet
    val: ImageSet
    classes: list[str]
    holdout: list[str]
    num_skipped: int
    fingerprint: str  # which photos went to train and val: a resumed run must see the same


def prepare_data(
    cfg: Config, samples: Sequence[ImageRecord], progress: bool, log: Callable[[str], None]
) -> TrainData:
    """Hold out individuals, decode every photo once, split by sighting, build the datasets."""
    samples, holdout = hold_out_individuals(samples, cfg.data.holdout_individuals, cfg.train.seed)
    if holdout:
        log(
            f"{len(holdout)} individuals held out of training for open-set calibration: "
            f"{', '.join(holdout)}"
        )
    loaded = load_images(
        samples,
        cfg.data.input_size,
        max_pixels=cfg.data.max_image_pixels,
        progress=progress,
        num_threads=cfg.train.num_threads,
    )
    log(loaded.summary())
    labels = [s.get(cfg.data.label_column) for s in loaded.samples]
    if len(set(labels)) < 2:
        raise ReIDError(
            f"Training needs photos of at least 2 different {cfg.data.label_column} values; "
            f"found {len(set(labels))} among {len(loaded.samples)} usable photos."
        )
    if cfg.data.label_column == "individual":
        train_idx, val_idx = split_by_sighting(
            loaded.samples, cfg.data.val_fraction, cfg.train.seed
        )
    else:  # a category screen must be validated on animals it never saw
        train_idx, val_idx = split_category_by_individual(
            loaded.samples, labels, cfg.data.val_fraction, cfg.train.seed
        )
    classes = sorted({labels[i] for i in train_idx})
    index = {c: k for k, c in enumerate(classes)}
    val_idx = [i for i in val_idx if labels[i] in index]
    fingerprint = _split_fingerprint(loaded.samples, labels, train_idx, val_idx)
    augment = build_augment(cfg.augment, cfg.data.input_size, seed=cfg.train.seed)
    return TrainData(
        ImageSet([loaded.images[i] for i in train_idx], [index[labels[i]] for i in train_idx],
                 augment),
        ImageSet([loaded.images[i] for i in val_idx], [index[labels[i]] for i in val_idx]),
        classes, holdout, len(loaded.skipped), fingerprint,
    )  # fmt: skip


def _split_fingerprint(
    samples: Sequence[ImageRecord], labels: Sequence[str], train_idx: list[int], val_idx: list[int]
) -> str:
    """16 hex digits naming which photos (path and label) went to train and to validation."""
    digest = hashlib.sha256()
    for part, ids in (("train", train_idx), ("val", val_idx)):
        digest.update(part.encode())
        for i in ids:
            digest.update(f"{samples[i].path}\x1f{labels[i]}\n".encode())
    return digest.hexdigest()[:16]


def hold_out_individuals(
    samples: Sequence[ImageRecord], fraction: float, seed: int
) -> tuple[list[ImageRecord], list[str]]:
    """Drop a seeded ``fraction`` of the individuals: at least 2 when fraction > 0, but never so
    many that fewer than 2 remain to train on; returns (kept samples, sorted held-out ids)."""
    individuals = sorted({s.individual for s in samples})
    if fraction <= 0:
        return list(samples), []
    count = min(max(2, round(len(individuals) * fraction)), len(individuals) - 2)
    if count < 1:
        raise ReIDError(
            f"data.holdout_individuals={fraction} leaves too few individuals to train "
            f"on ({len(individuals)} in all): set it to 0 or add individuals."
        )
    held = sorted(random.Random(seed).sample(individuals, count))
    return [s for s in samples if s.individual not in set(held)], held
