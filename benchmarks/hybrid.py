"""Native-vs-hybrid screen on synthetic salamanders, tested on never-seen individuals, plus
Grad-CAM: does the heat fall on the head spots? And example overlays for docs/explain.md.

1. ``reid synth`` draws individuals of two populations (native / hybrid: other spot number,
   size and darkness, other skin) with spot masks. Whole individuals are split into train and
   test, stratified by population: the screen is tested on animals it never saw.
2. A screen is trained with ``configs/hybrid.yaml`` (``data.label_column=population``) and
   evaluated on the test individuals: accuracy, Cohen's kappa, macro F1, confusion matrix,
   Grad-CAM examples.
3. An identification model (``configs/field.yaml``) is trained on the train individuals'
   first two dates; their third-date photos are matched against a gallery of the first two.
4. Grad-CAM on every test photo (screen) and every query (identification model): mean heat
   inside the spot mask vs outside it, and inside vs outside the head.
5. Example overlays (individual decision, match, hybrid screen) go to
   ``benchmarks/results/explain/`` for docs/explain.md.

    python -m benchmarks.hybrid
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import RESULTS_DIR, write_results
from reid.config import load_config
from reid.evaluation.evaluate import evaluate_run
from reid.evaluation.gallery_eval import enrolled_gallery, query_gallery
from reid.explain.gradcam import (
    Explainer,
    heat_inside_outside,
    plot_explanation,
    plot_match_explanation,
)
from reid.features.embedder import Embedder
from reid.io.datasets import ImageRecord, read_dataset, split_category_by_individual
from reid.synthetic.salamanders import synthesize
from reid.training.loop import train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--individuals", type=int, default=32)
    ap.add_argument("--images-per", type=int, default=12)
    ap.add_argument("--test-fraction", type=float, default=0.25)
    ap.add_argument("--input-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=15, help="epochs of both models")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="hybrid")
    ap.add_argument("--work", type=Path, default=Path("/tmp/reid_bench/hybrid"))
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    shutil.rmtree(args.work, ignore_errors=True)
    manifest = synthesize(args.work / "data", args.individuals, args.images_per, seed=args.seed,
                          size=192, num_dates=3, hybrid_fraction=0.5, write_masks=True)  # fmt: skip
    samples = read_dataset(manifest)
    labels = [s.get("population") for s in samples]
    train_idx, test_idx = split_category_by_individual(
        samples, labels, args.test_fraction, args.seed
    )
    train_set = [samples[i] for i in train_idx]
    test_set = [samples[i] for i in test_idx]
    overrides = [f"data.input_size={args.input_size}", f"train.epochs={args.epochs}",
                 f"train.seed={args.seed}"]  # fmt: skip
    screen, metrics = _screen(args, overrides, train_set, test_set)
    # 3. an identification model and a gallery: first two dates enrolled, the third queried
    dates = sorted({s.date for s in train_set})
    early = [s for s in train_set if s.date in dates[:2]]
    later = [s for s in train_set if s.date == dates[-1]]
    ident = train(load_config("field", overrides), early, args.work / "ident", log=print)
    embedder = Embedder.from_run(ident.run_dir)
    gallery, _ = enrolled_gallery(args.work / "gallery", embedder, early)
    answers = query_gallery(gallery, embedder, later)
    # 4. where the heat falls
    screen_x, ident_x = Explainer(screen.run_dir), Explainer(ident.run_dir)
    spots = {
        "screen (test individuals)": _heat_stats(screen_x, test_set, args.input_size),
        "identification (queries)": _heat_stats(ident_x, later, args.input_size),
    }
    _examples(screen_x, ident_x, later[0], answers.matches[0], test_set)
    figures = {
        "screen": {k: metrics[k] for k in ("accuracy", "kappa", "macro_f1", "num_images")},
        "screen_confusion": metrics["confusion"],
        "screen_labels": metrics["labels"],
        "screen_epochs": screen.epochs_run,
        "train_individuals": len({s.individual for s in train_set}),
        "test_individuals": len({s.individual for s in test_set}),
        "identification_rank1_third_date": round(answers.rank1(), 4),
        "identification_epochs": ident.epochs_run,
        "heat": spots,
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(figures)
    args_text = {k: str(v) for k, v in vars(args).items()}
    write_results(args.name, {"figures": figures, "args": args_text}, _markdown(args, figures))


def _screen(args, overrides: list[str], train_set: list[ImageRecord], test_set: list[ImageRecord]):
    """2. The screen, trained with configs/hybrid.yaml and tested on never-seen individuals;
    its confusion matrix and two Grad-CAM examples are copied into the results."""
    screen = train(load_config("hybrid", overrides), train_set, args.work / "screen", log=print)
    metrics = evaluate_run(screen.run_dir, test_set, args.work / "screen_eval", progress=False)
    out = RESULTS_DIR / args.name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    shutil.copy(args.work / "screen_eval" / "confusion.png", out / "confusion.png")
    for png in metrics.get("gradcam", [])[:2]:  # two examples are enough in the repository
        shutil.copy(png, out / Path(png).name)
    return screen, metrics


def _examples(screen_x: Explainer, ident_x: Explainer, q: ImageRecord, match, test_set) -> None:
    """5. Example overlays for docs/explain.md: an individual decision, a match, the screen."""
    ex = RESULTS_DIR / "explain"
    ex.mkdir(parents=True, exist_ok=True)
    [e] = ident_x.explain_class(ident_x.prepare(q.path)[None])
    plot_explanation(q.path, e, ex / "individual.png",
                     title=f"individual: predicted {e.label} (probability {e.score:.3f}); "
                     f"true {q.individual}")  # fmt: skip
    top = match.candidates[0]
    pair = ident_x.explain_match(ident_x.prepare(q.path), ident_x.prepare(top.image_path),
                                 label=top.individual)  # fmt: skip
    plot_match_explanation(q.path, top.image_path, pair, ex / "match.png",
                           title=f"match: {top.individual} (similarity {top.score:.3f}); "
                           f"true {q.individual}")  # fmt: skip
    for population in ("native", "hybrid"):
        s = next(s for s in test_set if s.get("population") == population)
        [e] = screen_x.explain_class(screen_x.prepare(s.path)[None])
        plot_explanation(s.path, e, ex / f"screen_{population}.png",
                         title=f"screen: {e.label} (probability {e.score:.3f}); true "
                         f"{population}, an individual the screen never saw")  # fmt: skip


def _heat_stats(explainer: Explainer, samples, size: int) -> dict[str, float]:
    """Mean heat inside / outside the spot mask and the head, over ``samples``."""
    ins, outs, ratios, head_in, head_out = [], [], [], [], []
    for s in samples:
        mask_path = s.path.parents[2] / s.get("mask")
        mask = np.asarray(Image.open(mask_path).resize((size, size), Image.NEAREST)) > 127
        image = explainer.prepare(s.path)
        [e] = explainer.explain_class(image[None])
        a, b = heat_inside_outside(e.heat, mask)
        ins.append(a)
        outs.append(b)
        ratios.append(a / max(b, 1e-6))
        head = _head_mask(image)
        c, d = heat_inside_outside(e.heat, head)
        head_in.append(c)
        head_out.append(d)
    return {
        "photos": len(samples),
        "mean_heat_on_spots": round(float(np.mean(ins)), 4),
        "mean_heat_off_spots": round(float(np.mean(outs)), 4),
        "median_ratio_on_off": round(float(np.median(ratios)), 3),
        "share_of_photos_hotter_on_spots": round(float(np.mean(np.array(ins) > np.array(outs))), 4),
        "mean_heat_on_head": round(float(np.mean(head_in)), 4),
        "mean_heat_off_head": round(float(np.mean(head_out)), 4),
    }


def _head_mask(image: np.ndarray) -> np.ndarray:
    """Rough head region of a synthetic photo: pixels that differ from the water's colour (the
    synthetic background is smooth blue-green; the head is brown/yellow)."""
    img = image.astype(np.float32)
    return (img[..., 0] > img[..., 2] + 8).astype(bool)


def _markdown(args, f) -> str:
    s = f["screen"]
    lines = [
        f"Synthetic salamanders, {args.individuals} individuals (half native, half hybrid) x "
        f"{args.images_per} photos; the screen (`configs/hybrid.yaml`, {args.input_size} px, "
        f"{f['screen_epochs']} epochs) trained on {f['train_individuals']} individuals and "
        f"tested on {f['test_individuals']} it never saw ({s['num_images']} photos).",
        "",
        "| accuracy | Cohen's kappa | macro F1 |",
        "| --- | --- | --- |",
        f"| **{s['accuracy']:.4f}** | {s['kappa']:.4f} | {s['macro_f1']:.4f} |",
        "",
        f"Confusion matrix: `{args.name}/confusion.png` (rows true {f['screen_labels']}: "
        f"{f['screen_confusion']}). Target (issue 6): accuracy >= 0.95 on held-out individuals.",
        "",
        "## Where the Grad-CAM heat falls",
        "",
        "| model | photos | heat on spots | off spots | median ratio | photos hotter on "
        "spots | heat on head | off head |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, h in f["heat"].items():
        lines.append(
            f"| {name} | {h['photos']} | {h['mean_heat_on_spots']:.3f} | "
            f"{h['mean_heat_off_spots']:.3f} | {h['median_ratio_on_off']:.2f} | "
            f"{h['share_of_photos_hotter_on_spots']:.3f} | {h['mean_heat_on_head']:.3f} | "
            f"{h['mean_heat_off_head']:.3f} |"
        )
    lines += [
        "",
        f"Identification model ({f['identification_epochs']} epochs): rank-1 of the third "
        f"date's photos against a gallery of the first two: "
        f"{f['identification_rank1_third_date']:.4f}.",
        "",
        "Examples: `explain/individual.png`, `explain/match.png`, `explain/screen_native.png`, "
        "`explain/screen_hybrid.png`.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
