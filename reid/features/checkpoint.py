"""Checkpoints carry their config (like nanoGPT's ``model_args``): one file rebuilds the model,
its label map, its input size and its normalisation, with no other file and no network."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from reid.config import Config, from_dict, to_dict
from reid.errors import ReIDError
from reid.features.export import EXPORT_NAME, OnnxModel, export_onnx, load_onnx

if TYPE_CHECKING:  # reid.features.model imports timm, which takes ~1.5 s: not on the matching path
    from reid.features.model import ReIDModel

FORMAT = "reid-checkpoint/1"
BEST_NAME = "model.pt"  # the checkpoint users point at: best validation loss
LAST_NAME = "last.pt"  # for --resume: also holds optimiser and early-stopping state


@dataclass
class LoadedModel:
    model: torch.nn.Module | OnnxModel  # or the exported copy: (embeddings, logits) tuple
    classes: list[str]  # classifier index -> individual id (or category)
    config: Config
    fingerprint: str  # identifies the weights: embeddings from different fingerprints never mix
    path: Path
    extra: dict[str, Any]

    @property
    def input_size(self) -> int:
        return self.config.data.input_size

    @property
    def embedding_dim(self) -> int:
        return self.config.model.embedding_dim


def fingerprint(model: torch.nn.Module) -> str:
    """sha256 over the model's tensors in key order (16 hex digits)."""
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def save_checkpoint(
    path: Path,
    model: ReIDModel,
    cfg: Config,
    classes: list[str],
    extra: dict[str, Any] | None = None,
) -> str:
    """Write atomically (temp file + rename: never half a checkpoint); return the fingerprint."""
    fp = fingerprint(model)
    payload = {
        "format": FORMAT,
        "config": to_dict(cfg),
        "classes": list(classes),
        "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "fingerprint": fp,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    atomic_torch_save(payload, Path(path))
    return fp


def atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory or a checkpoint file -> the checkpoint file."""
    path = Path(path)
    if path.is_dir():
        path = path / BEST_NAME
    if not path.is_file():
        raise ReIDError(
            f"No model checkpoint at {path}: give a run directory made by `reid train` "
            f"(it holds {BEST_NAME}) or the checkpoint file itself."
        )
    return path


def read_classes(path: str | Path) -> tuple[list[str], str]:
    """(the individuals a checkpoint was trained on, its fingerprint), without building it."""
    file = resolve_checkpoint(path)
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
        return list(payload["classes"]), str(payload["fingerprint"])
    except Exception as exc:
        raise ReIDError(
            f"Checkpoint {file} cannot be read ({type(exc).__name__}): it is damaged "
            "or not a reid checkpoint."
        ) from None


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu", *, exported: bool = False
) -> LoadedModel:
    """Rebuild the model (eval mode) from a run directory or checkpoint file alone.

    ``exported``: on the CPU, use the run's ONNX copy (``model.onnx``, see
    :mod:`reid.features.export`) when it exists and carries the checkpoint's fingerprint: the
    same numbers (to ~1e-6), without importing timm, which halves a match's start-up time.
    Elsewhere, or without a valid copy, the model is rebuilt from the checkpoint.
    """
    file = resolve_checkpoint(path)
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ReIDError(
            f"Checkpoint {file} cannot be read ({type(exc).__name__}): it is damaged or "
            "not a reid checkpoint; retrain or restore it."
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ReIDError(f"{file} is not a reid checkpoint (format {FORMAT}).")
    cfg = from_dict(payload["config"])
    model = None
    if exported and torch.device(device).type == "cpu":
        model = load_onnx(file.parent / EXPORT_NAME, payload["fingerprint"])
    if model is None:
        from reid.features.model import build_model

        model = build_model(cfg, len(payload["classes"]), pretrained="none")
        state = payload["model_state"]
        state.setdefault("per_photo", model.per_photo)  # checkpoints older than photo_norm
        model.load_state_dict(state)
    model.to(device).eval()
    extra = {
        k: v
        for k, v in payload.items()
        if k not in ("format", "config", "classes", "model_state", "fingerprint")
    }
    return LoadedModel(model, list(payload["classes"]), cfg, payload["fingerprint"], file, extra)


def export_run(path: str | Path) -> Path:
    """Write the exported copy (``model.onnx``) of a run's checkpoint beside it, replacing any
    older one; return its path. For runs trained before the copy existed, or to refresh it."""
    loaded = load_checkpoint(path)
    out = loaded.path.parent / EXPORT_NAME
    export_onnx(loaded.model, loaded.input_size, loaded.fingerprint, out)
    return out
