"""``reid demo``: synthesise a small salamander population, fine-tune on the CPU from the offline
ImageNet weights, evaluate on photos from a held-out date. Nothing is downloaded."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reid.config import Config, load_config
from reid.evaluation.evaluate import evaluate_run, metrics_markdown
from reid.io.datasets import read_dataset
from reid.synthetic.salamanders import synthesize
from reid.training.loop import train

# The demo's settings (mirrored in configs/demo.yaml, checked by a test): small input and the
# offline lite0 weights so that it runs in minutes on a 2-core laptop without internet.
DEMO_OVERRIDES = [
    "model.backbone=tf_efficientnet_lite0",
    "model.pretrained=lite0",
    "model.embedding_dim=128",
    "data.input_size=160",
    "train.epochs=20",
    "train.batch_size=32",
    "train.lr=0.001",
    "train.early_stop_patience=6",
]


def demo_config(overrides: list[str] | None = None) -> Config:
    return load_config(None, DEMO_OVERRIDES + list(overrides or []))


def run_demo(
    out_dir: str | Path,
    *,
    num_individuals: int = 10,
    images_per: int = 24,
    seed: int = 0,
    overrides: list[str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Returns the test metrics plus the paths written; prints a table as it goes."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    cfg = demo_config(overrides)
    log(
        f"1/3 synthesising {num_individuals} salamanders x {images_per} photos over 3 dates "
        f"into {out_dir / 'data'}"
    )
    manifest = synthesize(
        out_dir / "data", num_individuals, images_per, seed=seed, num_dates=3, progress=progress
    )
    samples = read_dataset(manifest)
    dates = sorted({s.date for s in samples})
    train_set = [s for s in samples if s.date != dates[-1]]
    test_set = [s for s in samples if s.date == dates[-1]]
    log(
        f"2/3 fine-tuning {cfg.model.backbone} (offline {cfg.model.pretrained} weights) on "
        f"{len(train_set)} photos from {', '.join(dates[:-1])}"
    )
    result = train(cfg, train_set, out_dir / "run", progress=progress, log=log)
    log(f"3/3 evaluating on {len(test_set)} photos from the held-out date {dates[-1]}")
    metrics = evaluate_run(
        result.run_dir,
        test_set,
        out_dir / "eval",
        device=cfg.train.device,
        progress=progress,
        title=f"Demo: held-out date {dates[-1]}",
    )
    log("\n" + metrics_markdown(metrics))
    seconds = time.perf_counter() - start
    log(f"accuracy {metrics['accuracy']:.4f} on the held-out date, in {seconds:.0f} s")
    log(
        f"model: {result.checkpoint}\nconfusion matrix: {out_dir / 'eval' / 'confusion.png'}\n"
        f"metrics: {out_dir / 'eval' / 'metrics.md'}\n"
        f"Grad-CAM examples (errors first): {out_dir / 'eval' / 'gradcam'}"
    )
    return {
        **metrics,
        "seconds": seconds,
        "run_dir": str(result.run_dir),
        "eval_dir": str(out_dir / "eval"),
    }
