"""Gallery search speed: query latency and throughput, exact vs approximate, by gallery size.

For each gallery size (random L2-normalised float32 vectors, 512-d by default) this builds the
gallery's own :class:`gallery.VectorIndex` for exact flat search and for approximate indexes
(IVF with a few ``nprobe`` values, HNSW with a few ``efSearch`` values) and measures:

- single-query latency (one query per call, k neighbours): p50 / p95 in ms, warm-up dropped;
- batched throughput: queries per second for batches of ``--batch`` queries (median of repeats);
- recall@1 of each approximate index against flat on the same queries.

Queries are noisy copies of gallery vectors (a new photo of a known animal: cosine ~0.8 to its
source at the default ``--query-noise``), so recall@1 asks "does the index find the photo that
exact search finds". On a machine where faiss sees a GPU, the indexes search on their GPU copy
(as the gallery does) and the device is recorded; HNSW has no GPU version and stays on the CPU.

Writes ``benchmarks/results/gallery_search.json`` and ``.md`` (after every size, so an
interrupted run keeps what it measured). No torch needed.

    python -m benchmarks.gallery_search --sizes 1000,10000,100000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from benchmarks.common import RESULTS_DIR, footer, run_info
from reid.gallery.index import VectorIndex


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="1000,10000,100000", help="gallery sizes, comma-separated")
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--k", type=int, default=10, help="neighbours per query")
    p.add_argument("--single-queries", type=int, default=300, help="timed single queries")
    p.add_argument("--warmup", type=int, default=20, help="untimed queries/batches first")
    p.add_argument("--batch", type=int, default=1000, help="queries per batched call")
    p.add_argument("--repeats", type=int, default=3, help="timed batched calls")
    p.add_argument("--time-budget", type=float, default=20.0,
                   help="seconds per single-query measurement before it stops early")  # fmt: skip
    p.add_argument("--nprobe", default="8,32", help="IVF nprobe values")
    p.add_argument("--ef-search", default="64,128", help="HNSW efSearch values")
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--max-nlist", type=int, default=1024, help="cap on IVF lists")
    p.add_argument("--hnsw-max-size", type=int, default=200_000,
                   help="skip HNSW above this size (its build is the slowest part)")  # fmt: skip
    p.add_argument("--query-noise", type=float, default=0.6)
    p.add_argument("--threads", type=int, default=0, help="faiss OpenMP threads (0: default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--name", default="gallery_search")
    return p.parse_args(argv)


def unit_rows(rng: np.random.Generator, num: int, dim: int, chunk: int = 65536) -> np.ndarray:
    """(num, dim) float32, L2-normalised; made in chunks to keep peak memory at ~1x."""
    out = np.empty((num, dim), dtype=np.float32)
    for begin in range(0, num, chunk):
        block = rng.standard_normal((min(chunk, num - begin), dim), dtype=np.float32)
        out[begin : begin + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def make_queries(rng: np.random.Generator, gallery: np.ndarray, num: int, noise: float):
    """(num, dim) float32 noisy copies of random gallery rows, L2-normalised."""
    source = gallery[rng.integers(0, len(gallery), size=num)]
    noisy = source + (noise / np.sqrt(gallery.shape[1])) * rng.standard_normal(
        source.shape, dtype=np.float32
    )
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def time_single(index: VectorIndex, queries: np.ndarray, k: int, args) -> dict[str, float]:
    """p50/p95 latency of one-query searches in ms (warm-up dropped, stops at the budget)."""
    for q in queries[: args.warmup]:
        index.search(q[None], k)
    times, start = [], time.perf_counter()
    for q in queries[args.warmup :]:
        t0 = time.perf_counter()
        index.search(q[None], k)
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > args.time_budget and len(times) >= 20:
            break
    ms = np.array(times) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "num_single": len(times)}  # fmt: skip


def time_batch(index: VectorIndex, queries: np.ndarray, k: int, repeats: int):
    """(queries per second, top-1 rows of the batch): median of ``repeats`` after a warm-up."""
    _, rows = index.search(queries, k)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        index.search(queries, k)
        times.append(time.perf_counter() - t0)
    return len(queries) / float(np.median(times)), rows[:, 0]


def configs(size: int, args) -> list[tuple[str, str, str]]:
    """(label, factory, search params) of every index measured at ``size``."""
    # faiss's rule of thumb is nlist ~ 4*sqrt(N); keep >= 39 training points per list (else the
    # gallery would fall back to flat) and cap it so that k-means stays affordable on a laptop.
    nlist = min(args.max_nlist, 4 * np.sqrt(size), size / 39)
    nlist = int(2 ** np.floor(np.log2(max(nlist, 1))))
    out = [("Flat (exact)", "Flat", "")]
    nprobes = sorted({min(nlist, int(n)) for n in args.nprobe.split(",")})  # nprobe <= nlist
    out += [(f"IVF{nlist},Flat nprobe={n}", f"IVF{nlist},Flat", f"nprobe={n}") for n in nprobes]
    if size <= args.hnsw_max_size:
        out += [(f"HNSW{args.hnsw_m} efSearch={e}", f"HNSW{args.hnsw_m}", f"efSearch={e}")
                for e in map(int, args.ef_search.split(","))]  # fmt: skip
    return out


def bench_size(size: int, args, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Build and time every index at ``size``; returns one result row per configuration."""
    gallery = unit_rows(rng, size, args.dim)
    ids = np.arange(size, dtype=np.int64)
    queries = make_queries(rng, gallery, max(args.batch, args.single_queries + args.warmup),
                           args.query_noise)  # fmt: skip
    rows, built, exact_top1 = [], {}, None
    for label, factory, params in configs(size, args):
        if factory not in built:
            built.clear()  # keep one index in memory at a time
            t0 = time.perf_counter()
            built[factory] = VectorIndex.build(gallery, ids, factory=factory, search_params=params)
            build_s = time.perf_counter() - t0
        index = built[factory]
        index.set_search_params(params)
        single = time_single(index, queries[: args.single_queries + args.warmup], args.k, args)
        qps, top1 = time_batch(index, queries[: args.batch], args.k, args.repeats)
        exact_top1 = top1 if factory == "Flat" else exact_top1
        row = {"size": size, "index": label, "factory": factory, "search_params": params,
               "device": index.device, "note": index.note, "build_s": build_s, **single,
               "batch_qps": qps, "recall_at_1": float(np.mean(top1 == exact_top1))}  # fmt: skip
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}),
              flush=True)  # fmt: skip
        rows.append(row)
    return rows


def markdown(payload: dict[str, Any]) -> str:
    s = payload["settings"]
    lines = [
        "# Gallery search speed",
        "",
        f"{s['dim']}-d random L2-normalised float32 gallery vectors; queries are noisy copies "
        f"of gallery vectors (noise {s['query_noise']}); k={s['k']} neighbours; single-query "
        f"latency over up to {s['single_queries']} queries after {s['warmup']} warm-up; "
        f"throughput = median of {s['repeats']} batches of {s['batch']} queries; recall@1 "
        f"against exact flat search on the batch. Seed {s['seed']}.",
        "",
        "| gallery size | index | device | build s | p50 ms | p95 ms | batch queries/s "
        "| recall@1 |",
        "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in payload["results"]:
        lines.append(
            f"| {r['size']:,} | {r['index']} | {r['device']} | {r['build_s']:.2f} | "
            f"{r['p50_ms']:.3f} | {r['p95_ms']:.3f} | {r['batch_qps']:,.0f} | "
            f"{r['recall_at_1']:.3f} |"
        )
    lines += ["", f"Total {payload['total_s']:.0f} s.", "", footer(payload)]
    return "\n".join(lines)


def write(payload: dict[str, Any], args) -> None:
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{args.name}.json").write_text(json.dumps(payload, indent=2))
    (args.out_dir / f"{args.name}.md").write_text(markdown(payload))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        faiss.omp_set_num_threads(args.threads)  # before hardware() records the thread count
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    payload: dict[str, Any] = {
        **run_info(args.name),  # before any search: faiss's threads as set, the load at start
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": [],
    }
    for size in map(int, args.sizes.split(",")):
        payload["results"] += bench_size(size, args, rng)
        payload["total_s"] = time.perf_counter() - start
        write(payload, args)
    print(f"wrote {args.out_dir / args.name}.json and .md")


if __name__ == "__main__":
    main()
