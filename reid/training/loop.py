"""One plain training loop: classifier + embedding heads fine-tuned together.

Adam, batches of several photos per individual (MPerClassSampler), early stopping on validation
loss, mixed precision and channels-last on a GPU, a progress bar, resume from ``last.pt``. The
photos and their split come from :mod:`reid.training.data`, early stopping and ``last.pt`` from
:mod:`reid.training.resume`, heads fitted on frozen features from :mod:`reid.training.heads`.
"""

from __future__ import annotations

import csv
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from pytorch_metric_learning.samplers import MPerClassSampler
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from reid.config import Config, save_config
from reid.device import resolve_device
from reid.errors import ReIDError
from reid.features.checkpoint import BEST_NAME, LAST_NAME, export_run, save_checkpoint
from reid.features.export import EXPORT_NAME
from reid.features.model import ReIDModel, build_model
from reid.io.datasets import ImageRecord
from reid.training.data import ImageSet, TrainData, collate, prepare_data
from reid.training.heads import fit_training_whitening, probe_heads
from reid.training.losses import ReIDLoss, build_loss
from reid.training.resume import EarlyStop, LastCheckpoint


@dataclass
class TrainResult:
    """What :func:`train` gives back (also written as train_summary.json in the run folder)."""

    run_dir: Path
    checkpoint: Path
    classes: list[str]
    epochs_run: int
    best_epoch: int
    best_val_loss: float | None
    num_train: int
    num_val: int
    num_skipped: int
    seconds: float
    train_images_per_s: float
    holdout_individuals: list[str] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(
    cfg: Config,
    samples: Sequence[ImageRecord],
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train on ``samples`` and write ``out_dir/{model.pt,last.pt,config.yaml,train_log.csv}``.

    With ``resume``, continue from ``out_dir/last.pt``; only ``train.epochs`` may differ from the
    run being resumed, and the photos and their split must be the same.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.train.seed)
    data = prepare_data(cfg, samples, progress, log)
    device = resolve_device(cfg.train.device)
    model, loss_fn, optimizer = _build(cfg, len(data.classes), device)
    log(
        f"{len(data.classes)} classes; {len(data.train)} train / {len(data.val)} validation "
        f"photos (split by {'sighting' if cfg.data.label_column == 'individual' else 'individual'}"
        f"); device {device}"
    )
    _check_options(cfg, data, log)
    if cfg.train.head_init == "whitening" and not resume:
        probe_heads(model, loss_fn, cfg, data, device, progress, log)
    state = EarlyStop(cfg.train.early_stop_patience, cfg.train.early_stop_min_delta)
    last = LastCheckpoint(out_dir / LAST_NAME, cfg, data.fingerprint)
    first_epoch = last.restore(model, loss_fn, optimizer, state, log) if resume else 1
    if not resume:
        (out_dir / "train_log.csv").unlink(missing_ok=True)  # a fresh run starts a fresh log
    save_config(cfg, out_dir / "config.yaml")  # after the resume checks: it describes this run
    if state.should_stop():  # resuming a run that had already stopped early
        log(f"nothing to do: this run stopped early after epoch {first_epoch - 1}")
        epoch, seen, train_seconds = first_epoch - 1, 0, 0.0
    else:
        loop = _Loop(model, loss_fn, optimizer, device, cfg, progress)
        epoch, seen, train_seconds = _run_epochs(loop, data, state, last, first_epoch, out_dir, log)
    if cfg.model.whitening == "learned":
        _whiten_best(model, cfg, data, out_dir, device, progress, log)
    _export(cfg, out_dir, log)
    result = TrainResult(
        out_dir, out_dir / BEST_NAME, data.classes, epoch, state.best_epoch, state.best,
        len(data.train), len(data.val), data.num_skipped,
        round(time.perf_counter() - start, 1),
        round(seen / train_seconds, 1) if train_seconds else 0.0, data.holdout,
    )  # fmt: skip
    (out_dir / "train_summary.json").write_text(
        json.dumps(
            {k: str(v) if isinstance(v, Path) else v for k, v in asdict(result).items()}, indent=2
        )
    )
    return result


def _build(
    cfg: Config, num_classes: int, device: torch.device
) -> tuple[ReIDModel, ReIDLoss, torch.optim.Optimizer]:
    """The model (channels-last on a GPU when asked), its loss and their Adam optimiser."""
    model = build_model(cfg, num_classes).to(device)
    if device.type == "cuda" and cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build_loss(cfg.loss, num_classes, cfg.model.embedding_dim).to(device)
    optimizer = torch.optim.Adam(
        _param_groups(model, loss_fn, cfg), weight_decay=cfg.train.weight_decay
    )
    return model, loss_fn, optimizer


def _check_options(cfg: Config, data: TrainData, log: Callable[[str], None]) -> None:
    """Refuse options the data cannot support; warn about settings known not to learn."""
    if cfg.model.whitening == "learned" or cfg.train.head_init == "whitening":
        counts = np.bincount(data.train.labels, minlength=len(data.classes))
        if counts.max(initial=0) < 2:
            raise ReIDError(
                "model.whitening=learned and train.head_init=whitening learn what varies between "
                "photos of one animal, but no animal has 2 training photos: add photos or "
                "turn them off."
            )
    backbone_lr = cfg.train.lr * cfg.train.backbone_lr_scale
    if cfg.train.freeze_bn_stats and backbone_lr > 1e-4:
        log(
            f"warning: train.freeze_bn_stats with a backbone learning rate of {backbone_lr:g}: "
            "without BatchNorm re-normalising each batch, training at 1e-3 did not learn at all "
            "on synthetic salamanders; lower train.lr or train.backbone_lr_scale (5e-5 worked)"
        )


def _run_epochs(
    loop: _Loop, data: TrainData, state: EarlyStop, last: LastCheckpoint, first_epoch: int,
    out_dir: Path, log: Callable[[str], None],
) -> tuple[int, int, float]:  # fmt: skip
    """Epochs ``first_epoch`` .. train.epochs, or until early stopping; each one logged, the best
    saved as model.pt and every one as last.pt. Returns (last epoch run, photos trained on,
    seconds spent training)."""
    seen, train_seconds, epoch = 0, 0.0, first_epoch - 1
    for epoch in range(first_epoch, loop.cfg.train.epochs + 1):
        t0 = time.perf_counter()
        train_stats = loop.train_epoch(data.train, epoch)
        train_seconds += time.perf_counter() - t0
        seen += train_stats["images"]
        val_stats = loop.evaluate(data.val) if len(data.val) else {}
        improved = state.update(val_stats.get("loss"), epoch)
        row = {
            "epoch": epoch,
            **{f"train_{k}": v for k, v in train_stats.items()},
            **{f"val_{k}": v for k, v in val_stats.items()},
            "seconds": round(time.perf_counter() - t0, 2),
            "best": improved,
        }
        _append_log(out_dir / "train_log.csv", row)
        log(_format_row(row))
        if improved:
            _save_best(loop.model, loop.loss_fn, loop.cfg, data, epoch, val_stats, out_dir, log)
        last.save(loop.model, loop.loss_fn, loop.optimizer, state, epoch, data.classes)
        if state.should_stop():
            log(
                f"early stopping: validation loss has not improved by {state.min_delta} "
                f"for {state.patience} epochs"
            )
            break
    return epoch, seen, train_seconds


def _save_best(
    model: ReIDModel, loss_fn: ReIDLoss, cfg: Config, data: TrainData, epoch: int,
    val_stats: dict[str, float], out_dir: Path, log: Callable[[str], None],
) -> None:  # fmt: skip
    """model.pt for a new best epoch."""
    save_checkpoint(
        out_dir / BEST_NAME,
        model,
        cfg,
        data.classes,
        extra={
            "loss_state": loss_fn.state_dict(),
            "epoch": epoch,
            "val": val_stats,
            "holdout_individuals": data.holdout,
        },
    )


def _export(cfg: Config, out_dir: Path, log: Callable[[str], None]) -> None:
    """model.onnx, the exported copy of the final model.pt, for a fast `reid match` start on a
    CPU (train.export_onnx; tens of seconds on a 2-core CPU, so once per run)."""
    if not cfg.train.export_onnx:
        return
    try:  # a speed-up only: matching falls back to model.pt without it
        export_run(out_dir)
    except Exception as exc:  # noqa: BLE001 - exporter failures come in many types
        (out_dir / EXPORT_NAME).unlink(missing_ok=True)
        log(f"no ONNX copy of the model ({type(exc).__name__}): matching will load model.pt")


def _whiten_best(
    model: ReIDModel, cfg: Config, data: TrainData, out_dir: Path, device: torch.device,
    progress: bool, log: Callable[[str], None],
) -> None:  # fmt: skip
    """model.whitening=learned: the best checkpoint's embedding head becomes the learned
    whitening of its pooled features, fitted on the (unaugmented) training photos."""
    from reid.features.whiten import install

    payload = torch.load(out_dir / BEST_NAME, map_location="cpu", weights_only=True)
    if "whitening" in payload:  # a resumed run whose best epoch was whitened already: keep it
        return  # (refitting could change its fingerprint and orphan galleries enrolled with it)
    model.load_state_dict(payload["model_state"])
    feats, w = fit_training_whitening(model, cfg, data, device, progress)
    install(model, w)
    # loss_state (ArcFace centres) belonged to the replaced head; val was measured with it
    keep = ("format", "config", "classes", "model_state", "fingerprint", "created_at",
            "loss_state", "val")  # fmt: skip
    extra = {k: v for k, v in payload.items() if k not in keep}
    extra["whitening"] = {"photos": w.num_photos, "pairs": w.num_pairs, "rank": w.rank}
    save_checkpoint(out_dir / BEST_NAME, model, cfg, data.classes, extra=extra)
    log(
        f"embedding head: learned whitening of {feats.shape[1]} features to "
        f"{cfg.model.embedding_dim}, fitted on {w.num_photos} training photos "
        f"({w.num_pairs} same-identity pairs)"
    )


def _param_groups(model: torch.nn.Module, loss_fn: torch.nn.Module, cfg: Config) -> list[dict]:
    """Adam groups: the model at train.lr (its backbone at lr * backbone_lr_scale when that is
    below 1) and the loss's own parameters at loss.lr."""
    scale = cfg.train.backbone_lr_scale
    if scale == 1.0:  # one group, as runs before this option (their last.pt resumes unchanged)
        groups = [{"params": model.parameters(), "lr": cfg.train.lr}]
    else:
        backbone = {id(p) for p in model.backbone.parameters()}
        groups = [
            {"params": list(model.backbone.parameters()), "lr": cfg.train.lr * scale},
            {"params": [p for p in model.parameters() if id(p) not in backbone],
             "lr": cfg.train.lr},
        ]  # fmt: skip
    return [*groups, {"params": loss_fn.parameters(), "lr": cfg.loss.lr}]


class _Loop:
    def __init__(
        self,
        model: ReIDModel,
        loss_fn: ReIDLoss,
        optimizer,
        device: torch.device,
        cfg: Config,
        progress: bool,
    ) -> None:
        self.model, self.loss_fn, self.optimizer, self.device = model, loss_fn, optimizer, device
        self.cfg, self.progress = cfg, progress
        self.amp = device.type == "cuda" and cfg.train.amp
        self.channels_last = device.type == "cuda" and cfg.train.channels_last
        self.workers = 0 if device.type == "cpu" else min(8, torch.get_num_threads())

    def _to_device(self, images: torch.Tensor, labels: torch.Tensor):
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        return (
            images.to(self.device, non_blocking=True, memory_format=fmt),
            labels.to(self.device, non_blocking=True),
        )

    def _forward(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.model(images)
        return self.loss_fn(out, labels), out

    def train_epoch(self, data: ImageSet, epoch: int) -> dict[str, float]:
        m = self.cfg.train.m_per_class
        num_classes = len(set(data.labels))
        batch = max(m, min(self.cfg.train.batch_size, m * num_classes) // m * m)
        sampler = MPerClassSampler(
            data.labels, m, batch_size=batch, length_before_new_iter=max(len(data), batch)
        )
        loader = DataLoader(
            data,
            worker_init_fn=_seed_worker_augment,
            batch_size=batch,
            sampler=sampler,
            drop_last=True,
            collate_fn=collate,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
        )
        self.model.train()
        if self.cfg.train.freeze_bn_stats:
            freeze_bn_stats(self.model.backbone)
        totals, n = {"loss": 0.0, "ce": 0.0, "metric": 0.0}, 0
        bar = tqdm(
            loader, desc=f"epoch {epoch}", disable=not self.progress, leave=False, unit="batch"
        )
        for images, labels in bar:
            images, labels = self._to_device(images, labels)
            losses, _ = self._forward(images, labels)
            if not torch.isfinite(losses["loss"]):  # before the step: the weights stay finite
                raise ReIDError(
                    f"Training diverged: the loss became {losses['loss'].item()} in epoch "
                    f"{epoch}; lower train.lr (and loss.lr) and train again. The files saved "
                    "after the last finished epoch (model.pt, last.pt) are kept as they were."
                )
            self.optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            self.optimizer.step()
            for k in totals:
                totals[k] += float(losses[k].detach()) * len(labels)
            n += len(labels)
            bar.set_postfix(loss=f"{totals['loss'] / n:.3f}")
        return {**{k: round(v / max(n, 1), 4) for k, v in totals.items()}, "images": n}

    @torch.no_grad()
    def evaluate(self, data: ImageSet) -> dict[str, float]:
        self.model.eval()
        loader = DataLoader(
            data,
            batch_size=self.cfg.train.batch_size,
            collate_fn=collate,
            num_workers=self.workers,
        )
        totals, correct, n = {"loss": 0.0, "ce": 0.0, "metric": 0.0}, 0, 0
        for images, labels in loader:
            images, labels = self._to_device(images, labels)
            losses, out = self._forward(images, labels)
            for k in totals:
                totals[k] += float(losses[k].detach()) * len(labels)
            correct += int((out.logits.argmax(1) == labels).sum())
            n += len(labels)
        return {
            **{k: round(v / n, 4) for k, v in totals.items()},
            "accuracy": round(correct / n, 4),
        }


def freeze_bn_stats(module: torch.nn.Module) -> int:
    """Put every BatchNorm layer of ``module`` in eval mode (running statistics no longer
    update; affine parameters still train); returns how many."""
    layers = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in layers:
        m.eval()
    return len(layers)


def _seed_worker_augment(worker_id: int) -> None:
    """Give each loader worker its own augmentation stream: forked workers would otherwise all
    replay the parent's albumentations RNG, the same in every worker and every epoch."""
    info = torch.utils.data.get_worker_info()
    if info is not None and getattr(info.dataset, "augment", None) is not None:
        info.dataset.augment.set_random_seed(info.seed % 2**32)


def _append_log(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def _format_row(row: dict) -> str:
    parts = [f"epoch {row['epoch']}: train loss {row['train_loss']:.3f}"]
    if "val_loss" in row:
        parts.append(f"val loss {row['val_loss']:.3f} acc {row['val_accuracy']:.3f}")
    parts.append(f"{row['seconds']:.0f}s" + (" *" if row["best"] else ""))
    return ", ".join(parts)
