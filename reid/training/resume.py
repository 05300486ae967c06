"""Where a run stands between epochs: early stopping, and ``last.pt`` to resume from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from reid.config import Config, from_dict, to_dict
from reid.errors import ReIDError
from reid.features.checkpoint import atomic_torch_save
from reid.features.model import ReIDModel
from reid.training.losses import ReIDLoss


@dataclass
class EarlyStop:
    """Stop when the validation loss has not improved by ``min_delta`` for ``patience`` epochs."""

    patience: int
    min_delta: float
    best: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0

    def update(self, val_loss: float | None, epoch: int) -> bool:
        """True if this epoch is the new best (always, when there is no validation set)."""
        if val_loss is None or self.best is None or val_loss < self.best - self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    def should_stop(self) -> bool:
        return self.best is not None and self.bad_epochs >= self.patience


class LastCheckpoint:
    """``last.pt``: everything needed to continue a run exactly where it stopped."""

    def __init__(self, path: Path, cfg: Config, data_fingerprint: str) -> None:
        self.path, self.cfg, self.data_fingerprint = path, cfg, data_fingerprint

    def save(
        self,
        model: ReIDModel,
        loss_fn: ReIDLoss,
        optimizer: torch.optim.Optimizer,
        state: EarlyStop,
        epoch: int,
        classes: list[str],
    ) -> None:
        atomic_torch_save({
            "model_state": model.state_dict(), "loss_state": loss_fn.state_dict(),
            "optimizer": optimizer.state_dict(), "epoch": epoch, "classes": classes,
            "early_stop": asdict(state), "config": to_dict(self.cfg),
            "data_fingerprint": self.data_fingerprint,
        }, self.path)  # fmt: skip

    def restore(
        self,
        model: ReIDModel,
        loss_fn: ReIDLoss,
        optimizer: torch.optim.Optimizer,
        state: EarlyStop,
        log: Callable[[str], None],
    ) -> int:
        """Load the saved state into the given objects; returns the first epoch to run."""
        if not self.path.is_file():
            raise ReIDError(
                f"Cannot resume: {self.path} does not exist (train without --resume first)."
            )
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ReIDError(
                f"Cannot resume: {self.path} cannot be read ({type(exc).__name__}); "
                "start a new run directory."
            ) from None
        self._check(saved)
        model.load_state_dict(saved["model_state"])
        loss_fn.load_state_dict(saved["loss_state"])
        optimizer.load_state_dict(saved["optimizer"])
        for key, value in saved["early_stop"].items():
            setattr(state, key, value)
        log(f"resuming after epoch {saved['epoch']}")
        return saved["epoch"] + 1

    def _check(self, saved: dict) -> None:
        try:  # keys added since that run was saved take their defaults (the old behaviour)
            old = to_dict(from_dict(saved.get("config", {})))
        except ReIDError:
            old = dict(saved.get("config", {}))
        new = to_dict(self.cfg)
        for key in ("epochs", "export_onnx"):  # neither changes the weights trained so far
            old.get("train", {}).pop(key, None)
            new["train"].pop(key)
        changed = [
            f"{section}.{key}"
            for section in new
            for key in new[section]
            if old.get(section, {}).get(key) != new[section][key]
        ]
        if changed:
            raise ReIDError(
                f"Cannot resume from {self.path}: the config differs in "
                f"{', '.join(changed[:4])}; only train.epochs may change when "
                "resuming (start a new run directory to change the rest)."
            )
        if saved.get("data_fingerprint") != self.data_fingerprint:
            raise ReIDError(
                f"Cannot resume from {self.path}: the photos or their train/validation "
                "split differ from the run being resumed; use the same data or start "
                "a new run directory."
            )
