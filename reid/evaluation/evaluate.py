"""Closed-set evaluation of a trained run on labelled test photos, with the paper's metrics, and
the paper's protocol by lighting condition."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reid.errors import ReIDError
from reid.evaluation.metrics import classification_metrics
from reid.evaluation.plots import plot_confusion
from reid.features.embedder import Embedder
from reid.io.datasets import ImageRecord


def evaluate_run(
    run: str | Path,
    samples: Sequence[ImageRecord],
    out_dir: str | Path,
    *,
    device: str = "auto",
    progress: bool = True,
    title: str = "",
    gradcam_examples: int = 6,
) -> dict[str, Any]:
    """Classify ``samples`` with the run's classifier and write metrics.{json,md},
    confusion.{csv,png}, per_individual.csv and predictions.csv into ``out_dir``, plus up to
    ``gradcam_examples`` Grad-CAM heat maps in ``out_dir/gradcam`` (errors first)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    embedder = Embedder.from_run(run, device)
    column = embedder.loaded.config.data.label_column
    result = embedder.embed_paths(
        [s.path for s in samples], [s.box for s in samples], progress=progress, desc="evaluating"
    )
    if not result.indices:
        raise ReIDError(
            f"None of the {len(samples)} test photos could be read; see the reasons above."
        )
    used = [samples[i] for i in result.indices]
    truth = [s.get(column) for s in used]
    pred = [embedder.classes[k] for k in result.logits.argmax(1)]
    labels = sorted(set(embedder.classes) | set(truth))
    metrics = classification_metrics(truth, pred, labels)
    metrics["num_skipped"] = len(result.failures)
    metrics["skipped"] = [{"path": str(e.path), "reason": e.reason} for e in result.failures]
    metrics["unknown_to_model"] = sorted(set(truth) - set(embedder.classes))
    metrics["by_condition"] = _by_condition(used, truth, pred)
    metrics["run"] = str(embedder.loaded.path)
    _write_outputs(
        out_dir, metrics, used, truth, pred, title or f"Confusion matrix: {Path(run).name}"
    )
    if gradcam_examples > 0:
        metrics["gradcam"] = _gradcam_examples(
            run, str(embedder.device), used, truth, pred, out_dir / "gradcam", gradcam_examples
        )
    return metrics


def _gradcam_examples(
    run: str | Path,
    device: str,
    used: Sequence[ImageRecord],
    truth: list[str],
    pred: list[str],
    folder: Path,
    count: int,
) -> list[str]:
    """Heat maps of the predicted class for a few photos: the errors first, then one correct
    photo per true label in turn, so every class is seen."""
    from reid.explain.gradcam import Explainer, plot_explanation

    wrong = [i for i in range(len(used)) if truth[i] != pred[i]]
    right: list[int] = []
    by_label: dict[str, list[int]] = defaultdict(list)
    for i in range(len(used)):
        if truth[i] == pred[i]:
            by_label[truth[i]].append(i)
    while any(by_label.values()) and len(right) < count:
        for label in sorted(by_label):
            if by_label[label]:
                right.append(by_label[label].pop(0))
    chosen = (wrong[: count // 2] + right)[:count]
    explainer = Explainer(run, device=device)  # the eager model: hooks need it
    written = []
    for k, i in enumerate(chosen):
        s = used[i]
        [exp] = explainer.explain_class(explainer.prepare(s.path, s.box)[None])
        verdict = "correct" if truth[i] == pred[i] else "WRONG"
        out = plot_explanation(
            s.path, exp, folder / f"{k:02d}_{truth[i]}_as_{pred[i]}.png", box=s.box,
            title=f"true {truth[i]}, predicted {exp.label} ({exp.score:.3f}): {verdict}",
        )  # fmt: skip
        written.append(str(out))
    return written


def _by_condition(used: Sequence[ImageRecord], truth: list[str], pred: list[str]) -> dict[str, Any]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(used):
        if s.condition:
            groups[s.condition].append(i)
    return {
        c: {"num_images": len(ix), "accuracy": sum(truth[i] == pred[i] for i in ix) / len(ix)}
        for c, ix in sorted(groups.items())
    }


def _write_outputs(
    out_dir: Path,
    m: dict[str, Any],
    used: Sequence[ImageRecord],
    truth: list[str],
    pred: list[str],
    title: str,
) -> None:
    (out_dir / "metrics.json").write_text(json.dumps(m, indent=2))
    labels, confusion = m["labels"], m["confusion"]
    with open(out_dir / "confusion.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["true \\ predicted", *labels])
        writer.writerows([lab, *row] for lab, row in zip(labels, confusion, strict=True))
    with open(out_dir / "per_individual.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["label", "support", "precision", "recall", "f1"])
        writer.writeheader()
        writer.writerows(m["per_class"])
    with open(out_dir / "predictions.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "condition", "true", "predicted", "correct"])
        writer.writerows(
            [s.path, s.condition, t, p, t == p] for s, t, p in zip(used, truth, pred, strict=True)
        )
    plot_confusion(confusion, labels, out_dir / "confusion.png", title)
    (out_dir / "metrics.md").write_text(metrics_markdown(m))


def metrics_markdown(m: dict[str, Any]) -> str:
    lines = ["| metric | value |", "| --- | --- |"]
    for key in (
        "num_images",
        "accuracy",
        "kappa",
        "macro_precision",
        "macro_recall",
        "macro_f1",
        "num_skipped",
    ):
        value = m[key]
        lines.append(
            f"| {key} | {value:.4f} |" if isinstance(value, float) else f"| {key} | {value} |"
        )
    if m.get("by_condition"):
        lines += ["", "| condition | images | accuracy |", "| --- | --- | --- |"]
        lines += [
            f"| {c} | {v['num_images']} | {v['accuracy']:.4f} |"
            for c, v in m["by_condition"].items()
        ]
    lines += [
        "",
        "| individual | photos | precision | recall | F1 |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['label']} | {r['support']} | {r['precision']:.3f} | {r['recall']:.3f} "
        f"| {r['f1']:.3f} |"
        for r in m["per_class"]
        if r["support"]
    ]
    return "\n".join(lines) + "\n"
