"""Does fine-tuning from the offline ImageNet weights beat random initialisation on real photos?

nyala_train (179 antelope, flank stripes), split by sighting (both flank photos of one sighting
stay together), each flank a class of its own (left and right are different patterns). Both
models use the same config, split and seed; only ``model.pretrained`` differs. Reports
closed-set classifier accuracy/kappa/macro-F1 and embedding rank-1 (test photo -> nearest
training photo), writes benchmarks/results/pretrained_vs_scratch.{json,md} plus confusion matrices.

    python -m benchmarks.pretrained_vs_scratch --data ../shared/data/nyala_train
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS_DIR, write_results
from benchmarks.datasets import nyala_samples
from reid.config import load_config
from reid.evaluation.evaluate import evaluate_run
from reid.features.embedder import Embedder
from reid.io.datasets import ImageRecord, split_by_sighting
from reid.training.loop import train


def rank1(embedder: Embedder, train: list[ImageRecord], test: list[ImageRecord]) -> float:
    g = embedder.embed_paths([s.path for s in train], progress=False)
    q = embedder.embed_paths([s.path for s in test], progress=False)
    nearest = (q.embeddings @ g.embeddings.T).argmax(1)
    g_labels = [train[i].get("flank") for i in g.indices]
    hits = [g_labels[j] == test[i].get("flank") for i, j in zip(q.indices, nearest, strict=True)]
    return float(np.mean(hits))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data/nyala_train"))
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--test-fraction", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=Path("/tmp/reid_bench/pretrained_vs_scratch"))
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.data.is_dir():
        raise SystemExit(
            f"{args.data} not found: pass --data pointing at nyala_train (see shared/data)."
        )
    samples = nyala_samples(args.data)
    tr_idx, te_idx = split_by_sighting(samples, args.test_fraction, seed=args.seed)
    train_set = [samples[i] for i in tr_idx]
    known = {s.get("flank") for s in train_set}
    test_all = [samples[i] for i in te_idx]
    test_set = [s for s in test_all if s.get("flank") in known]
    print(
        f"{len(train_set)} train / {len(test_set)} test photos; {len(test_all) - len(test_set)} "
        f"test photos show a flank never seen in training and are left out of closed-set scores"
    )
    rows = [_train_and_score(args, init, train_set, test_set) for init in ("lite0", "none")]
    ratio = rows[0]["accuracy"] / max(rows[1]["accuracy"], 1e-9)
    md = [
        "Closed-set identification of nyala flanks (split by sighting; "
        f"{len(train_set)} training photos, {len(test_set)} test photos, "
        f"{len(known)} flank classes, input {args.input_size} px, seed {args.seed}).",
        "",
        "| init | accuracy | kappa | macro F1 | embedding rank-1 | epochs (best) | train s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *[
            f"| {r['init']} | {r['accuracy']:.4f} | {r['kappa']:.4f} | {r['macro_f1']:.4f} | "
            f"{r['embedding_rank1']:.4f} | {r['epochs']} ({r['best_epoch']}) | "
            f"{r['train_seconds']} |"
            for r in rows
        ],
        "",
        f"Pretrained (lite0) / random-init accuracy ratio: {ratio:.2f}. Confusion matrices: "
        "`pretrained_vs_scratch/<init>/confusion.png`.",
    ]
    write_results(
        "pretrained_vs_scratch",
        {
            "rows": rows,
            "accuracy_ratio": ratio,
            "num_train": len(train_set),
            "num_test": len(test_set),
            "num_test_unseen_flank": len(test_all) - len(test_set),
            "args": {k: str(v) for k, v in vars(args).items()},
        },
        "\n".join(md),
    )


def _train_and_score(
    args: argparse.Namespace,
    pretrained: str,
    train_set: list[ImageRecord],
    test_set: list[ImageRecord],
) -> dict:
    """Train with ``model.pretrained=pretrained``; its closed-set and embedding figures."""
    cfg = load_config(None, [
        "model.backbone=tf_efficientnet_lite0", f"model.pretrained={pretrained}",
        f"data.input_size={args.input_size}", "data.label_column=flank",
        f"train.epochs={args.epochs}", f"train.seed={args.seed}", f"train.lr={args.lr}",
    ])  # fmt: skip
    t0 = time.perf_counter()
    result = train(cfg, train_set, args.work / pretrained, log=print)
    m = evaluate_run(result.run_dir, test_set, RESULTS_DIR / "pretrained_vs_scratch" / pretrained,
                     title=f"nyala, init={pretrained}")  # fmt: skip
    row = {
        "init": pretrained,
        "accuracy": m["accuracy"],
        "kappa": m["kappa"],
        "macro_f1": m["macro_f1"],
        "embedding_rank1": rank1(Embedder.from_run(result.run_dir), train_set, test_set),
        "epochs": result.epochs_run,
        "best_epoch": result.best_epoch,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "train_images_per_s": result.train_images_per_s,
    }
    print(row)
    return row


if __name__ == "__main__":
    main()
