"""Cold-start wall time of `reid match` on one photo against a 1,000-individual gallery.

What a field laptop does for each new photo: start Python, load the model checkpoint, open the
gallery and its index, decode and embed one photo, search, print. The gallery holds
``--individuals`` x ``--photos-per`` enrolled photos (512-d vectors of the model's fingerprint;
the search cost does not depend on what the vectors show). Each run is a fresh process; the
first run (cold file cache) is reported separately and dropped from the median. Two forms of the
model, interleaved run by run: the exported ONNX copy that `reid train` writes (model.onnx), and
the checkpoint alone (model.pt, rebuilt through timm, as for a run without the copy).

    python -m benchmarks.match_cold_start
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import write_results


def build(work: Path, individuals: int, photos_per: int, input_size: int, dim: int) -> tuple:
    from PIL import Image

    from reid.config import load_config
    from reid.features.checkpoint import export_run, save_checkpoint
    from reid.features.model import build_model
    from reid.gallery import Gallery, ImageRecord
    from reid.synthetic.draw import make_pattern, render_head

    cfg = load_config(
        None,
        [
            "model.backbone=tf_efficientnet_lite0",
            "model.pretrained=lite0",
            f"data.input_size={input_size}",
            f"model.embedding_dim={dim}",
        ],
    )
    model = build_model(cfg, individuals)
    fp = save_checkpoint(
        work / "run" / "model.pt", model, cfg, [f"I{i:04d}" for i in range(individuals)]
    )
    export_run(work / "run")  # model.onnx, as `reid train` writes it
    rng = np.random.default_rng(0)
    photos = work / "photos"
    photos.mkdir(parents=True)
    records, vectors = [], []
    for i in range(individuals):
        for k in range(photos_per):
            path = photos / f"I{i:04d}_{k}.jpg"
            # distinct tiny files: the gallery stores one copy per sha256
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(path)
            records.append(ImageRecord(path=path, individual=f"I{i:04d}"))
            vectors.append(rng.normal(size=dim))
    g = Gallery.create(work / "gallery", model_fingerprint=fp, embedding_dim=dim)
    g.enroll(records, np.asarray(vectors, np.float32), model_fingerprint=fp)
    g.calibrate(target_fmr=0.05)
    g.info()  # builds and saves the index, as the first real match would
    query = work / "query.jpg"
    image, _ = render_head(make_pattern("Q", 1), np.random.default_rng(1), "morning", 1024)
    Image.fromarray(image).save(query, quality=92)  # a phone-sized photo to decode
    return work / "run", work / "gallery", query


# The figure before issue 16, when `reid train` wrote a TorchScript copy (model.ts): same command
# and machine kind (2-core AMD EPYC), torch 2.13.0, 2026-11-23.
PREVIOUS = {"form": "TorchScript copy (model.ts), torch 2.13", "median_s": 2.34, "min_s": 1.95,
            "max_s": 2.92, "first_run_s": 3.08}  # fmt: skip
FORMS = {"onnx": "exported ONNX copy (model.onnx)", "checkpoint": "checkpoint only (model.pt)"}


def time_runs(cmd: list[str], run: Path, runs: int) -> dict[str, list[float]]:
    """Wall seconds of ``runs`` fresh processes per form, interleaved: with the run's ONNX copy,
    and with it moved aside (the model rebuilt from model.pt, as for a run without the copy)."""
    copy, aside = run / "model.onnx", run / "model.onnx.aside"
    times: dict[str, list[float]] = {form: [] for form in FORMS}
    try:
        for _ in range(runs):
            for form in FORMS:
                if form == "checkpoint":
                    copy.rename(aside)
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True)
                times[form].append(time.perf_counter() - t0)
                if form == "checkpoint":
                    aside.rename(copy)
    finally:
        if aside.exists():
            aside.rename(copy)
    return times


def summarise(times: list[float]) -> dict[str, Any]:
    """First run (cold file cache) apart; median, min and max of the rest."""
    warm = times[1:]
    return {
        "first_run_s": round(times[0], 3),
        "median_s": round(statistics.median(warm), 3),
        "min_s": round(min(warm), 3),
        "max_s": round(max(warm), 3),
        "runs": times,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--individuals", type=int, default=1000)
    ap.add_argument("--photos-per", type=int, default=3)
    ap.add_argument("--input-size", type=int, default=224)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--work", type=Path, default=Path("/tmp/reid_bench/match_cold_start"))
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    run, gallery, query = build(
        args.work, args.individuals, args.photos_per, args.input_size, args.dim
    )
    reid = Path(sys.executable).with_name("reid")
    cmd = [str(reid), "match", str(gallery), str(query), "--model", str(run), "--quiet"]
    cmd += ["--device", "cpu"]
    forms = {form: summarise(t) for form, t in time_runs(cmd, run, args.runs).items()}
    figures = {
        **forms,
        "previous": PREVIOUS,
        "target_s": 3.0,
        "gallery_photos": args.individuals * args.photos_per,
    }
    rows = [(FORMS[form], f) for form, f in forms.items()] + [(PREVIOUS["form"], PREVIOUS)]
    md = (
        f"`reid match` on one 1024x1024 JPEG against a gallery of {args.individuals} "
        f"individuals x {args.photos_per} photos ({args.dim}-d, flat index), model "
        f"tf_efficientnet_lite0 at {args.input_size} px, CPU, each run a fresh process; the "
        "two forms interleaved, run by run.\n\n"
        f"| model form | median of runs 2-{args.runs} (s) | min / max (s) | first run (s) |\n"
        "| --- | --- | --- | --- |\n"
        + "".join(
            f"| {name} | {f['median_s']:.2f} | {f['min_s']:.2f} / {f['max_s']:.2f} | "
            f"{f['first_run_s']:.2f} |\n"
            for name, f in rows
        )
        + "\nTarget: <= 3.0 s. The last row is the figure recorded before issue 16 (TorchScript "
        "is deprecated in the installed torch), not measured by this run."
    )
    print(md)
    write_results(
        "match_cold_start",
        {"figures": figures, "args": {k: str(v) for k, v in vars(args).items()}},
        md,
    )


if __name__ == "__main__":
    main()
