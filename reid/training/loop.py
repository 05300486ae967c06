"""One plain training loop: classifier + embedding heads fine-tuned together.

Adam, batches of several photos per individual (MPerClassSampler), early stopping on validation
loss, mixed precision and channels-last on a GPU, a progress bar, resume from ``last.pt``.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from pytorch_metric_learning.samplers import MPerClassSampler
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from reid.config import Config, from_dict, save_config, to_dict
from reid.device import resolve_device, to_tensor_batch
from reid.errors import ReIDError
from reid.features.checkpoint import (
    BEST_NAME,
    LAST_NAME,
    SCRIPTED_NAME,
    atomic_torch_save,
    save_checkpoint,
    save_scripted,
)
from reid.features.model import ReIDModel, ReIDOutput, build_model
from reid.io.datasets import Sample, load_images, split_by_sighting, split_category_by_individual
from reid.training.augment import build_augment
from reid.training.losses import ReIDLoss, build_loss, imprint_centres

if TYPE_CHECKING:  # reid.features.whiten is imported only by runs that use it
    from reid.features.whiten import Whitening


@dataclass
class TrainResult:
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


def _collate(batch: list[tuple[np.ndarray, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    images = to_tensor_batch(np.stack([b[0] for b in batch]))
    return images, torch.tensor([b[1] for b in batch], dtype=torch.long)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(
    cfg: Config,
    samples: Sequence[Sample],
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
    data = _prepare_data(cfg, samples, progress, log)
    device = resolve_device(cfg.train.device)
    model = build_model(cfg, len(data.classes)).to(device)
    if device.type == "cuda" and cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build_loss(cfg.loss, len(data.classes), cfg.model.embedding_dim).to(device)
    optimizer = torch.optim.Adam(
        _param_groups(model, loss_fn, cfg), weight_decay=cfg.train.weight_decay
    )
    log(
        f"{len(data.classes)} classes; {len(data.train)} train / {len(data.val)} validation "
        f"photos (split by {'sighting' if cfg.data.label_column == 'individual' else 'individual'}"
        f"); device {device}"
    )
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
    if cfg.train.head_init == "whitening" and not resume:
        _probe_heads(model, loss_fn, cfg, data, device, progress, log)
    state = _EarlyStop(cfg.train.early_stop_patience, cfg.train.early_stop_min_delta)
    resumed = _Resume(out_dir / LAST_NAME, cfg, data.fingerprint)
    first_epoch = resumed.restore(model, loss_fn, optimizer, state, log) if resume else 1
    if not resume:
        (out_dir / "train_log.csv").unlink(missing_ok=True)  # a fresh run starts a fresh log
    save_config(cfg, out_dir / "config.yaml")  # after the resume checks: it describes this run
    loop = _Loop(model, loss_fn, optimizer, device, cfg, progress)
    seen, train_seconds, epoch = 0, 0.0, first_epoch - 1
    if state.should_stop():  # resuming a run that had already stopped early
        log(f"nothing to do: this run stopped early after epoch {epoch}")
        first_epoch = cfg.train.epochs + 1
    for epoch in range(first_epoch, cfg.train.epochs + 1):
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
            fp = save_checkpoint(
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
            _save_scripted(model, cfg, fp, out_dir, log)
        resumed.save(model, loss_fn, optimizer, state, epoch, data.classes)
        if state.should_stop():
            log(
                f"early stopping: validation loss has not improved by {state.min_delta} "
                f"for {state.patience} epochs"
            )
            break
    if cfg.model.whitening == "learned":
        _whiten_best(model, cfg, data, out_dir, device, progress, log)
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


def _save_scripted(
    model: ReIDModel, cfg: Config, fp: str, out_dir: Path, log: Callable[[str], None]
) -> None:
    try:  # a speed-up only: matching falls back to model.pt without it
        save_scripted(model, cfg.data.input_size, fp, out_dir / SCRIPTED_NAME)
    except Exception as exc:  # noqa: BLE001 - tracing failures come in many types
        (out_dir / SCRIPTED_NAME).unlink(missing_ok=True)
        log(f"no TorchScript copy ({type(exc).__name__}): matching will load model.pt")


@torch.no_grad()
def pooled_features(
    model: ReIDModel, images: Sequence[np.ndarray], device: torch.device, batch_size: int,
    progress: bool = False,
) -> np.ndarray:  # fmt: skip
    """(S, S, 3) uint8 photos -> (N, F) float32 pooled backbone features, eval mode."""
    model.eval()
    out = []
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, desc="features", disable=not progress, leave=False, unit="batch"):
        batch = to_tensor_batch(np.stack(images[start : start + batch_size])).to(device)
        out.append(model.features(batch).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.classifier.in_features), np.float32)


def _fit_whitening(
    model: ReIDModel, cfg: Config, data: _Data, device: torch.device, progress: bool
) -> tuple[np.ndarray, Whitening]:
    """Pooled features (N, F) of the unaugmented training photos, and the learned whitening
    fitted on them with their identities."""
    from reid.features.whiten import fit_whitening

    feats = pooled_features(model, data.train.images, device, cfg.train.batch_size, progress)
    labels = [data.classes[i] for i in data.train.labels]
    w = fit_whitening(feats, labels, cfg.model.embedding_dim, cfg.model.whitening_shrinkage)
    return feats, w


def _whiten_best(
    model: ReIDModel, cfg: Config, data: _Data, out_dir: Path, device: torch.device,
    progress: bool, log: Callable[[str], None],
) -> None:  # fmt: skip
    """model.whitening=learned: the best checkpoint's embedding head becomes the learned
    whitening of its pooled features, fitted on the (unaugmented) training photos."""
    from reid.features.whiten import install

    payload = torch.load(out_dir / BEST_NAME, map_location="cpu", weights_only=True)
    if "whitening" in payload:  # a resumed run whose best epoch was whitened already: keep it
        return  # (refitting could change its fingerprint and orphan galleries enrolled with it)
    model.load_state_dict(payload["model_state"])
    feats, w = _fit_whitening(model, cfg, data, device, progress)
    install(model, w)
    # loss_state (ArcFace centres) belonged to the replaced head; val was measured with it
    keep = ("format", "config", "classes", "model_state", "fingerprint", "created_at",
            "loss_state", "val")  # fmt: skip
    extra = {k: v for k, v in payload.items() if k not in keep}
    extra["whitening"] = {"photos": w.num_photos, "pairs": w.num_pairs, "rank": w.rank}
    fp = save_checkpoint(out_dir / BEST_NAME, model, cfg, data.classes, extra=extra)
    _save_scripted(model, cfg, fp, out_dir, log)
    log(
        f"embedding head: learned whitening of {feats.shape[1]} features to "
        f"{cfg.model.embedding_dim}, fitted on {w.num_photos} training photos "
        f"({w.num_pairs} same-identity pairs)"
    )


def _probe_heads(
    model: ReIDModel, loss_fn: ReIDLoss, cfg: Config, data: _Data, device: torch.device,
    progress: bool, log: Callable[[str], None], steps: int = 200,
) -> None:  # fmt: skip
    """train.head_init=whitening: the embedding head becomes the learned whitening of the
    pretrained features of the (unaugmented) training photos; ArcFace class centres start at
    their classes' mean embeddings; then the classifier and the loss's own parameters learn on
    those fixed features (full batch, Adam)."""
    from reid.features.whiten import install

    feats, w = _fit_whitening(model, cfg, data, device, progress)
    install(model, w, feats)
    x = torch.from_numpy(feats).to(device)
    y = torch.tensor(data.train.labels, device=device)
    with torch.no_grad():
        emb = torch.nn.functional.normalize(model.embedding(x).float(), dim=1)
    opt = torch.optim.Adam(
        [{"params": model.classifier.parameters(), "lr": 1e-3},  # Adam's usual rate
         {"params": loss_fn.parameters(), "lr": cfg.loss.lr}],
    )  # fmt: skip
    has_params = any(True for _ in loss_fn.parameters())
    imprinted = imprint_centres(loss_fn.metric, emb, y)
    first = last = None
    for _ in range(steps):
        logits = model.classifier(x).float()
        if has_params:  # ArcFace centres learn on the fixed embeddings
            loss = loss_fn(ReIDOutput(emb, logits), y)["loss"]
        else:  # triplet: a constant on fixed embeddings, and its miner over N photos is N^3
            loss = loss_fn.ce(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        last = float(loss.detach())
        first = last if first is None else first
    log(
        f"heads fitted on the pretrained features: whitening to {cfg.model.embedding_dim} "
        f"dimensions; {'class centres imprinted; ' if imprinted else ''}classifier and loss "
        f"parameters: loss {first:.3f} -> {last:.3f} in {steps} steps"
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


@dataclass
class _Data:
    train: ImageSet
    val: ImageSet
    classes: list[str]
    holdout: list[str]
    num_skipped: int
    fingerprint: str  # which photos went to train and val: a resumed run must see the same


def _prepare_data(
    cfg: Config, samples: Sequence[Sample], progress: bool, log: Callable[[str], None]
) -> _Data:
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
    digest = hashlib.sha256()
    for part, ids in (("train", train_idx), ("val", val_idx)):
        digest.update(part.encode())
        for i in ids:
            digest.update(f"{loaded.samples[i].path}\x1f{labels[i]}\n".encode())
    augment = build_augment(cfg.augment, cfg.data.input_size, seed=cfg.train.seed)
    return _Data(
        ImageSet([loaded.images[i] for i in train_idx], [index[labels[i]] for i in train_idx],
                 augment),
        ImageSet([loaded.images[i] for i in val_idx], [index[labels[i]] for i in val_idx]),
        classes, holdout, len(loaded.skipped), digest.hexdigest()[:16],
    )  # fmt: skip


def hold_out_individuals(
    samples: Sequence[Sample], fraction: float, seed: int
) -> tuple[list[Sample], list[str]]:
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


@dataclass
class _EarlyStop:
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


class _Resume:
    """``last.pt``: everything needed to continue a run exactly where it stopped."""

    def __init__(self, path: Path, cfg: Config, data_fingerprint: str) -> None:
        self.path, self.cfg, self.data_fingerprint = path, cfg, data_fingerprint

    def save(
        self,
        model: ReIDModel,
        loss_fn: ReIDLoss,
        optimizer,
        state: _EarlyStop,
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
        optimizer,
        state: _EarlyStop,
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
        old.get("train", {}).pop("epochs", None)
        new["train"].pop("epochs")
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
            collate_fn=_collate,
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
            collate_fn=_collate,
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
