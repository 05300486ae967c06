"""Checkpoints carry their config (like nanoGPT's ``model_args``): one file rebuilds the model,
its label map, its input size and its normalisation, with no other file and no network."""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from reid.config import Config, from_dict, to_dict
from reid.errors import ReIDError

if TYPE_CHECKING:  # reid.features.model imports timm, which takes ~1.5 s: not on the matching path
    from reid.features.model import ReIDModel

FORMAT = "reid-checkpoint/1"
BEST_NAME = "model.pt"  # the checkpoint users point at: best validation loss
SCRIPTED_NAME = "model.ts"  # TorchScript copy of model.pt for fast start-up (no timm import)
LAST_NAME = "last.pt"  # for --resume: also holds optimiser and early-stopping state


@dataclass
class LoadedModel:
    model: torch.nn.Module  # ReIDModel, or its TorchScript copy (returns a plain tuple)
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
    path: str | Path, device: str | torch.device = "cpu", *, scripted: bool = False
) -> LoadedModel:
    """Rebuild the model (eval mode) from a run directory or checkpoint file alone.

    ``scripted``: use the run's TorchScript copy (``model.ts``) when it exists and carries the
    same fingerprint: same numbers, but no timm import, which halves a match's start-up time.
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
    model = (
        _load_scripted(file.parent / SCRIPTED_NAME, payload["fingerprint"]) if scripted else None
    )
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


def save_scripted(model: ReIDModel, input_size: int, fingerprint: str, path: Path) -> None:
    """Trace ``model`` (eval mode) to TorchScript and write it atomically with its fingerprint."""
    model = model.eval()
    example = torch.rand(2, 3, input_size, input_size, device=next(model.parameters()).device)
    # TorchScript is deprecated in favour of torch.export, whose loading imports the compiler
    # stack and costs the start-up time this copy exists to save; if a future torch drops it,
    # save fails (training goes on without the copy) and loading falls back to the checkpoint.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(model, example, strict=False, check_trace=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.save(traced, tmp, _extra_files={"fingerprint": fingerprint})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load_scripted(path: Path, fingerprint: str) -> torch.nn.Module | None:
    """The TorchScript copy if it exists and belongs to the checkpoint; else None."""
    if not path.is_file():
        return None
    extra = {"fingerprint": ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
    except Exception:  # damaged or from another torch: the checkpoint is the source of truth
        return None
    stored = extra["fingerprint"]
    stored = stored.decode() if isinstance(stored, bytes) else stored
    return module if stored == fingerprint else None
