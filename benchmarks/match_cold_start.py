"""Cold-start wall time of `reid match` on one photo against a 1,000-individual gallery.

What a field laptop does for each new photo: start Python, load the model checkpoint, open the
gallery and its index, decode and embed one photo, search, print. The gallery holds
``--individuals`` x ``--photos-per`` enrolled photos (512-d vectors of the model's fingerprint;
the search cost does not depend on what the vectors show). Each run is a fresh process; the
first run (cold file cache) is reported separately and dropped from the median.

    python benchmarks/match_cold_start.py
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import write_results  # noqa: E402


def build(work: Path, individuals: int, photos_per: int, input_size: int, dim: int) -> tuple:
    from PIL import Image

    from reid.config import load_config
    from reid.features.checkpoint import SCRIPTED_NAME, save_checkpoint, save_scripted
    from reid.features.model import build_model
    from reid.gallery import Gallery, ImageRecord
    from reid.synthetic.salamanders import make_pattern, render_head

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
    save_scripted(model, input_size, fp, work / "run" / SCRIPTED_NAME)  # as `reid train` does
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
    cmd = [
        str(reid),
        "match",
        str(gallery),
        str(query),
        "--model",
        str(run),
        "--quiet",
        "--device",
        "cpu",
    ]
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    warm = times[1:]
    figures = {
        "first_run_s": round(times[0], 3),
        "median_s": round(statistics.median(warm), 3),
        "min_s": round(min(warm), 3),
        "max_s": round(max(warm), 3),
        "runs": times,
        "target_s": 3.0,
        "gallery_photos": args.individuals * args.photos_per,
    }
    md = (
        f"`reid match` on one 1024x1024 JPEG against a gallery of {args.individuals} "
        f"individuals x {args.photos_per} photos ({args.dim}-d, flat index), model "
        f"tf_efficientnet_lite0 at {args.input_size} px, CPU, each run a fresh process.\n\n"
        "| figure | seconds |\n| --- | --- |\n"
        f"| median of runs 2-{args.runs} | {figures['median_s']:.2f} |\n"
        f"| min / max | {figures['min_s']:.2f} / {figures['max_s']:.2f} |\n"
        f"| first run (cold file cache) | {figures['first_run_s']:.2f} |\n"
        f"| target | <= 3.0 |"
    )
    print(md)
    write_results(
        "match_cold_start",
        {"figures": figures, "args": {k: str(v) for k, v in vars(args).items()}},
        md,
    )


if __name__ == "__main__":
    main()
