"""The paper's augmentations (rotation, crop, brightness, Gaussian noise, colour jitter,
saturation), each with its own probability, as an albumentations pipeline on uint8 RGB."""

from __future__ import annotations

import albumentations as A
import cv2

from reid.config import AugmentConfig


def build_augment(cfg: AugmentConfig, size: int, seed: int | None = None) -> A.Compose:
    """(S, S, 3) uint8 -> (S, S, 3) uint8, randomly transformed; ``seed`` makes runs repeatable."""
    return A.Compose(
        [
            A.Rotate(
                limit=cfg.rotate_limit_deg, border_mode=cv2.BORDER_REFLECT_101, p=cfg.rotate_p
            ),
            A.RandomResizedCrop(
                size=(size, size), scale=(cfg.crop_scale_min, 1.0), ratio=(0.85, 1.18), p=cfg.crop_p
            ),
            A.RandomBrightnessContrast(
                brightness_limit=cfg.brightness_limit,
                contrast_limit=cfg.contrast_limit,
                p=cfg.brightness_p,
            ),
            A.RandomGamma(gamma_limit=(50, 200), p=cfg.gamma_p),
            A.GaussNoise(std_range=(0.0, cfg.noise_std_max), p=cfg.noise_p),
            A.ColorJitter(
                brightness=0.1, contrast=0.1, saturation=0.0, hue=0.03, p=cfg.color_jitter_p
            ),
            A.ColorJitter(
                brightness=0.0,
                contrast=0.0,
                saturation=cfg.saturation_limit,
                hue=0.0,
                p=cfg.saturation_p,
            ),
        ],
        seed=seed,
    )
