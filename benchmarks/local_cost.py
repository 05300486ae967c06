"""What local matching costs per query on the CPU: extraction ms/photo, matching ms/pair, bytes
stored per photo, and the total seconds one query takes against galleries of 100, 1,000 and
10,000 photos at the default shortlist (embed the query, search the index, extract the query's
keypoints, match the shortlisted photos).

Photos: synthetic salamander heads (256 px, turned any way round), or ``--data DIR`` (a
folder-per-individual tree, e.g. ../shared/data/nyala_train). Matching cost does not depend on
the gallery size (the shortlist has ``--shortlist`` photos); the search does.

    python -m benchmarks.local_cost
    python -m benchmarks.local_cost --data ../shared/data/nyala_train
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.common import write_results

SCORERS = {  # name -> (local scorer, settings)
    "sift": ("sift", {}),
    "xfeat (1 copy)": ("xfeat", {"rotations": 1}),
    "xfeat (4 turned copies)": ("xfeat", {}),
}


def photos(args: argparse.Namespace) -> list[Path]:
    """``args.photos`` photo files: synthetic heads written to ``args.work``, or from --data."""
    if args.data:
        return sorted(Path(args.data).rglob("*.jpg"))[: args.photos]
    import cv2
    from PIL import Image

    from reid.synthetic.draw import make_pattern, render_head

    args.work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for i in range(args.photos):
        image, _ = render_head(make_pattern(f"JGS{i // 2:03d}", 0), rng, "morning", 256)
        turn = cv2.getRotationMatrix2D((128, 128), float(rng.uniform(-180, 180)), 1.0)
        image = cv2.warpAffine(image, turn, (256, 256), borderMode=cv2.BORDER_REFLECT)
        path = args.work / f"head_{i:03d}.png"
        Image.fromarray(image).save(path)
        out.append(path)
    return out


def time_scorer(name: str, files: list[Path], pairs: int) -> dict[str, float]:
    """Median extraction ms/photo, matching ms/pair and mean stored KB/photo of one scorer."""
    from reid.matching.local import make_scorer, prepare_region

    kind, settings = SCORERS[name]
    scorer = make_scorer(kind, **settings)
    regions = [prepare_region(f, None, scorer.max_side) for f in files]
    scorer.extract(regions[0])  # warm-up: model load, first-call allocations
    extract_ms, features = [], []
    for region in regions:
        t0 = time.perf_counter()
        features.append(scorer.extract(region))
        extract_ms.append(1000 * (time.perf_counter() - t0))
    rng = np.random.default_rng(1)
    match_ms = []
    for _ in range(pairs):
        a, b = rng.choice(len(features), 2, replace=False)
        t0 = time.perf_counter()
        scorer.match(features[a], features[b])
        match_ms.append(1000 * (time.perf_counter() - t0))
    return {
        "extract_ms": round(statistics.median(extract_ms), 1),
        "match_ms": round(statistics.median(match_ms), 2),
        "kb_per_photo": round(float(np.mean([len(f.to_bytes()) for f in features])) / 1024, 1),
    }


def search_ms(size: int, dim: int, shortlist: int, repeats: int = 50) -> float:
    """Median ms of one flat inner-product search for the top ``shortlist`` of ``size`` photos."""
    import faiss

    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(size, dim)).astype(np.float32)
    faiss.normalize_L2(vectors)
    index = faiss.IndexFlatIP(dim)
    index.add(vectors)
    query = vectors[:1].copy()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        index.search(query, min(shortlist, size))
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def embed_ms(files: list[Path]) -> float:
    """Median ms to decode and embed one photo with the field config's model (one at a time)."""
    from reid.config import load_config
    from reid.features.checkpoint import LoadedModel
    from reid.features.embedder import Embedder
    from reid.features.model import build_model

    cfg = load_config("field")
    loaded = LoadedModel(build_model(cfg, 2).eval(), ["a", "b"], cfg, "cost", Path("."), {})
    embedder = Embedder(loaded)
    embedder.embed_paths(files[:1], progress=False)  # warm-up
    times = []
    for f in files[:10]:
        t0 = time.perf_counter()
        embedder.embed_paths([f], progress=False)
        times.append(1000 * (time.perf_counter() - t0))
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=None, help="folder of photos (default: synthetic heads)")
    ap.add_argument("--photos", type=int, default=30)
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument("--shortlist", type=int, default=50)
    ap.add_argument("--dim", type=int, default=128, help="embedding size of the index")
    ap.add_argument("--threads", type=int, default=2, help="torch and OpenCV threads")
    ap.add_argument("--name", default="local_cost")
    ap.add_argument("--work", type=Path, default=Path("/tmp/reid_bench/local_cost"))
    args = ap.parse_args(argv)
    import cv2
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    files = photos(args)
    scorers = {name: time_scorer(name, files, args.pairs) for name in SCORERS}
    embed = embed_ms(files)
    sizes = (100, 1000, 10000)
    search = {n: search_ms(n, args.dim, args.shortlist) for n in sizes}
    rows = [
        "| scorer | extract ms/photo | match ms/pair | KB/photo | "
        + " | ".join(f"s/query, {n:,} photos" for n in sizes)
        + " |",
        "| --- | --- | --- | --- | " + " | ".join("---" for _ in sizes) + " |",
    ]
    totals = {}
    for name, c in scorers.items():
        totals[name] = {
            n: round(
                (embed + search[n] + c["extract_ms"] + args.shortlist * c["match_ms"]) / 1000, 2
            )
            for n in sizes
        }
        rows.append(f"| {name} | {c['extract_ms']} | {c['match_ms']} | {c['kb_per_photo']} | "
                    + " | ".join(f"{totals[name][n]:.2f}" for n in sizes) + " |")  # fmt: skip
    searched = ", ".join(f"{search[n]:.2f}" for n in sizes)
    where = args.data or "synthetic salamander heads (256 px, turned any way round)"
    sized = ", ".join(f"{n:,}" for n in sizes)
    intro = (
        f"Local matching cost per query on {len(files)} photos of {where}; shortlist "
        f"{args.shortlist} photos; {args.threads} torch/OpenCV threads. s/query = embed the "
        f"query ({embed:.0f} ms, field config) + flat search ({searched} ms at {sized} photos, "
        f"{args.dim}-d) + extract the query's keypoints + {args.shortlist} matches. Medians over "
        f"{len(files)} photos and {args.pairs} random pairs. Target (issue 17): <= 2 s at 1,000 "
        "photos for the default."
    )
    md = "\n".join([intro, "", *rows])
    payload = {"scorers": scorers, "embed_ms": embed, "search_ms": search, "totals": totals,
               "args": {k: str(v) for k, v in vars(args).items()}}  # fmt: skip
    write_results(args.name, payload, md)
    print(md)


if __name__ == "__main__":
    main()
