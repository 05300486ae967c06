"""The paper's protocol by lighting condition: for each condition, train and test on photos of
that condition only; plus a mixed model trained and tested on all. One table."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from reid.config import Config
from reid.errors import ReIDError
from reid.evaluation.evaluate import evaluate_run
from reid.io.datasets import ImageRecord
from reid.training.loop import train


def run_condition_protocol(
    cfg: Config,
    train_samples: Sequence[ImageRecord],
    test_samples: Sequence[ImageRecord],
    out_dir: str | Path,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train/evaluate one model per condition and a mixed one; write conditions.{json,md}."""
    out_dir = Path(out_dir)
    conditions = sorted(
        {s.condition for s in train_samples if s.condition}
        & {s.condition for s in test_samples if s.condition}
    )
    if not conditions:
        raise ReIDError(
            "No condition is shared by the training and test photos: the protocol needs "
            "a 'condition' column (e.g. morning/afternoon/evening) in both manifests."
        )
    rows = []
    for name in [*conditions, "mixed"]:
        tr = [s for s in train_samples if name == "mixed" or s.condition == name]
        te = [s for s in test_samples if name == "mixed" or s.condition == name]
        log(f"== {name}: {len(tr)} training photos, {len(te)} test photos")
        result = train(cfg, tr, out_dir / name, progress=progress, log=log)
        m = evaluate_run(
            result.run_dir,
            te,
            out_dir / name / "eval",
            device=cfg.train.device,
            progress=progress,
            title=f"Confusion matrix: {name} model",
        )
        rows.append(
            {
                "model": name,
                "train_images": result.num_train + result.num_val,
                "test_images": m["num_images"],
                "accuracy": m["accuracy"],
                "kappa": m["kappa"],
                "macro_f1": m["macro_f1"],
                "epochs": result.epochs_run,
                "confusion_png": str(out_dir / name / "eval" / "confusion.png"),
            }
        )
    (out_dir / "conditions.json").write_text(json.dumps(rows, indent=2))
    (out_dir / "conditions.md").write_text(conditions_markdown(rows))
    return {"rows": rows, "table": conditions_markdown(rows)}


def conditions_markdown(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| model | train photos | test photos | accuracy | kappa | macro F1 | epochs |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['model']} | {r['train_images']} | {r['test_images']} | {r['accuracy']:.4f} | "
        f"{r['kappa']:.4f} | {r['macro_f1']:.4f} | {r['epochs']} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"
