"""Throughput: the full decode -> preprocess -> embed pipeline against the bare model forward,
and training images/s.

1. Synthesise ``--images`` salamander photos as ``--photo-size`` px JPEGs (like phone head
   crops: decoding and shrinking them is real work) into ``--work``; reused when present.
2. Train the demo model (tf_efficientnet_lite0 from the offline lite0 weights, 128-d embedding,
   ``--input-size`` px) for ``--train-epochs`` epochs on them. This gives a real run directory
   (model.pt + its exported ONNX copy model.onnx) and the training figure: TrainResult's
   ``train_images_per_s``, i.e. images through on-the-fly augmentation, collation, forward,
   backward and optimiser step; the photos are decoded once before training (not counted),
   validation is not counted.
3. Load that run with ``Embedder.from_run`` (what ``reid enroll`` / ``reid match`` use: the
   ONNX Runtime copy on the CPU, default decode threads) and time, interleaved, ``--repeats``
   times each:

   - pipeline: ``Embedder.embed_paths`` over all photos (threaded decode + EXIF + RGB + resize,
     uint8 -> float tensor, model, embeddings back as numpy), batch ``--batch-size``;
   - bare forward: the very same model object, same device and dtype, under
     ``torch.inference_mode`` on preallocated random batches of the same sizes (the same
     number of full batches and the same last partial batch) and the same memory layout as
     ``embed_arrays`` feeds: ``to_tensor_batch`` permutes NHWC uint8 into a channels-last
     float tensor, on the CPU too, and the CPU convolutions run that markedly faster than NCHW;
   - bare forward, NCHW input: the same on NCHW-contiguous batches (a naive
     ``torch.rand(N, 3, S, S)``), for comparison only, not used for the ratio;
   - decode only: the embedder's per-photo step (``try_prepare_image``) in a thread pool of the
     embedder's size, no model: what the pipeline adds to the forward.

   All are warmed up first (one untimed pass each, which also fills the page cache). Reported:
   the median images/s of each and pipeline / bare of those medians (the pipeline's overhead).
   The CPU target (issue 4) is a ratio >= 0.8.
4. On a CUDA GPU, the same again with bf16 autocast on channels-last input (``Embedder(amp=True)``
   for the pipeline; the same autocast around the bare forward).

Writes ``benchmarks/results/throughput.json`` and ``.md``.

    python -m benchmarks.throughput --images 256 --batch-size 32 --input-size 224
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.common import write_results
from reid.demo import demo_config
from reid.device import resolve_device, to_tensor_batch
from reid.errors import ImageLoadError
from reid.features.embedder import Embedder
from reid.features.export import OnnxModel
from reid.io.datasets import ImageRecord, read_dataset
from reid.io.images import try_prepare_image
from reid.synthetic.salamanders import synthesize
from reid.training.loop import train

TARGET_RATIO = 0.8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=256, help="photos embedded per measurement")
    p.add_argument("--batch-size", type=int, default=32, help="embedding batch size")
    p.add_argument("--input-size", type=int, default=224, help="model input, px (square)")
    p.add_argument("--photo-size", type=int, default=512, help="synthesised JPEG size, px")
    p.add_argument("--repeats", type=int, default=3, help="timed passes of each mode")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    p.add_argument(
        "--decode-threads",
        type=int,
        default=0,
        help="Embedder decode threads (0: the Embedder's default, as the CLI uses)",
    )
    p.add_argument("--train-epochs", type=int, default=2, help="epochs of the training run")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--work", type=Path, default=Path("/tmp/reid_bench/throughput"))
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def photos(work: Path, count: int, size: int, seed: int) -> list[ImageRecord]:
    """``count`` synthetic photos of a few individuals (made once, then reused)."""
    data = work / "data"
    stamp = data / "throughput_stamp.json"
    wanted = {"count": count, "size": size, "seed": seed}
    individuals = max(2, min(8, count // 4))
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        print(f"    reusing the photos in {data}", flush=True)
    else:
        synthesize(
            data, individuals, math.ceil(count / individuals), seed=seed, size=size, progress=False
        )
        stamp.write_text(json.dumps(wanted))
    return read_dataset(data / "manifest.csv")[:count]


def batch_sizes(count: int, batch: int) -> list[int]:
    """The batch sizes embed_paths uses for ``count`` photos: full batches, then the rest."""
    return [min(batch, count - k) for k in range(0, count, batch)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_pipeline(embedder: Embedder, paths: Sequence[Path]) -> float:
    t0 = time.perf_counter()
    result = embedder.embed_paths(paths, progress=False)
    seconds = time.perf_counter() - t0
    if result.failures or len(result.indices) != len(paths):
        raise RuntimeError(f"{len(result.failures)} photos failed: {result.failures[:3]}")
    return seconds


def bare_forward(
    embedder: Embedder, count: int, input_size: int, *, nchw: bool = False
) -> Callable[[], float]:
    """A timer for the embedder's own model on preallocated batches shaped as the pipeline's.

    The batches are made as ``Embedder.embed_arrays`` makes them (``to_tensor_batch`` of uint8
    images, channels-last on a GPU), so the model sees the same dtype and memory layout: note
    that ``to_tensor_batch``'s permute leaves a channels-last tensor on the CPU too, which the
    CPU convolutions run markedly faster than NCHW. ``nchw``: plain NCHW-contiguous batches
    instead (what a naive ``torch.rand(N, 3, S, S)`` gives), for comparison only.
    """
    device, model = embedder.device, embedder.model
    sizes = batch_sizes(count, embedder.batch_size)
    rng = np.random.default_rng(0)
    inputs = {}
    for b in set(sizes):
        x = to_tensor_batch(rng.integers(0, 256, (b, input_size, input_size, 3), np.uint8))
        x = x.to(device)
        if nchw:
            x = x.contiguous()
        elif device.type == "cuda":  # as embed_arrays
            x = x.contiguous(memory_format=torch.channels_last)
        inputs[b] = x

    def run() -> float:
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=embedder.amp),
        ):
            sync(device)
            t0 = time.perf_counter()
            for b in sizes:
                model(inputs[b])
            sync(device)
            return time.perf_counter() - t0

    return run


def decode_only(embedder: Embedder, paths: Sequence[Path]) -> float:
    """The embedder's per-photo step in a pool of its size, as embed_paths runs it, no model."""
    size = embedder.loaded.input_size
    max_pixels = embedder.loaded.config.data.max_image_pixels
    t0 = time.perf_counter()
    with ThreadPoolExecutor(embedder.num_threads) as pool:
        out = list(pool.map(lambda p: try_prepare_image(p, size, max_pixels=max_pixels), paths))
    seconds = time.perf_counter() - t0
    if any(isinstance(o, ImageLoadError) for o in out):
        raise RuntimeError("a photo failed to decode")
    return seconds


def measure(
    label: str, embedder: Embedder, paths: Sequence[Path], args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Warm up, then ``repeats`` interleaved passes of pipeline, bare forward and decode only."""
    n = len(paths)
    bare = bare_forward(embedder, n, args.input_size)
    bare_nchw = bare_forward(embedder, n, args.input_size, nchw=True)
    print(f"[{label}] warm-up", flush=True)
    time_pipeline(embedder, paths)
    for _ in range(2):  # first calls allocate buffers and pick kernels
        bare()
        bare_nchw()
    decode_only(embedder, paths)
    times: dict[str, list[float]] = {"pipeline": [], "bare": [], "nchw": [], "decode": []}
    for r in range(args.repeats):
        times["pipeline"].append(time_pipeline(embedder, paths))
        times["bare"].append(bare())
        times["nchw"].append(bare_nchw())
        times["decode"].append(decode_only(embedder, paths))
        print(
            f"[{label}] repeat {r + 1}/{args.repeats}: pipeline {n / times['pipeline'][-1]:.1f}, "
            f"bare forward {n / times['bare'][-1]:.1f} (NCHW input "
            f"{n / times['nchw'][-1]:.1f}), decode only {n / times['decode'][-1]:.1f} images/s",
            flush=True,
        )
    ips = {k: n / statistics.median(v) for k, v in times.items()}
    common = {
        "device": str(embedder.device),
        "precision": label,
        "batch": embedder.batch_size,
        "input_size": args.input_size,
        "images": n,
    }
    return [
        {
            **common,
            "mode": "pipeline",
            "images_per_s": ips["pipeline"],
            "ratio_to_bare": ips["pipeline"] / ips["bare"],
            "seconds": times["pipeline"],
        },
        {
            **common,
            "mode": "bare forward",
            "images_per_s": ips["bare"],
            "ratio_to_bare": 1.0,
            "seconds": times["bare"],
        },
        {
            **common,
            "mode": "bare forward, NCHW input",
            "images_per_s": ips["nchw"],
            "ratio_to_bare": None,
            "seconds": times["nchw"],
        },
        {
            **common,
            "mode": f"decode only ({embedder.num_threads} threads)",
            "precision": "-",
            "images_per_s": ips["decode"],
            "ratio_to_bare": None,
            "seconds": times["decode"],
        },
    ]


def markdown(rows: list[dict[str, Any]], training: dict[str, Any], notes: list[str]) -> str:
    lines = [
        "| mode | device | precision | batch | input px | images/s | pipeline / bare |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        ratio = "" if r["ratio_to_bare"] is None else f"{r['ratio_to_bare']:.3f}"
        lines.append(
            f"| {r['mode']} | {r['device']} | {r['precision']} | {r['batch']} | "
            f"{r['input_size']} | {r['images_per_s']:.1f} | {ratio} |"
        )
    t = training
    lines.append(
        f"| training, {t['epochs']} epoch(s) | {t['device']} | {t['precision']} | "
        f"{t['batch']} | {t['input_size']} | {t['images_per_s']:.1f} | |"
    )
    return "\n".join(lines + [""] + [f"- {n}" for n in notes])


def _cpu_busy(seconds: float = 1.0) -> float | None:
    """Share of all cores' time spent busy over ``seconds`` (Linux /proc/stat); None elsewhere."""

    def snapshot() -> tuple[int, int] | None:
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        except (OSError, ValueError):
            return None
        return sum(fields), fields[3] + (fields[4] if len(fields) > 4 else 0)  # total, idle

    a = snapshot()
    time.sleep(seconds)
    b = snapshot()
    if a is None or b is None or b[0] == a[0]:
        return None
    return 1.0 - (b[1] - a[1]) / (b[0] - a[0])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    device = resolve_device(args.device)
    load_before = os.getloadavg()[0]
    busy_before = _cpu_busy()
    print(
        f"1/3 synthesising {args.images} photos of {args.photo_size} px into {args.work}",
        flush=True,
    )
    samples = photos(args.work, args.images, args.photo_size, args.seed)
    paths = [s.path for s in samples]

    cfg = demo_config(
        [
            f"data.input_size={args.input_size}",
            f"train.epochs={args.train_epochs}",
            f"train.device={device}",
            f"train.seed={args.seed}",
        ]
    )
    print(
        f"2/3 training {cfg.model.backbone} for {args.train_epochs} epochs on {len(samples)} "
        f"photos ({device})",
        flush=True,
    )
    result = train(
        cfg, samples, args.work / "run", progress=False, log=lambda m: print(f"    {m}", flush=True)
    )
    amp_train = device.type == "cuda" and cfg.train.amp
    training = {
        "mode": "training",
        "device": str(device),
        "epochs": result.epochs_run,
        "precision": "bf16 autocast, channels-last" if amp_train else "fp32",
        "batch": cfg.train.batch_size,
        "input_size": args.input_size,
        "train_images": result.num_train,
        "images_per_s": result.train_images_per_s,
    }
    print(f"    training: {result.train_images_per_s:.1f} images/s", flush=True)

    print(
        f"3/3 embedding {len(paths)} photos: pipeline vs bare forward, {args.repeats} repeats",
        flush=True,
    )
    extra = {"num_threads": args.decode_threads} if args.decode_threads else {}
    embedder = Embedder.from_run(result.run_dir, str(device), batch_size=args.batch_size, **extra)
    exported = isinstance(embedder.model, OnnxModel)
    rows = measure("fp32", embedder, paths, args)
    if device.type == "cuda":
        amp = Embedder.from_run(
            result.run_dir, str(device), batch_size=args.batch_size, amp=True, **extra
        )
        rows += measure("bf16 autocast, channels-last input", amp, paths, args)
    load_after = os.getloadavg()[0]

    ratio = rows[0]["ratio_to_bare"]
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    verdict = verdict if device.type == "cpu" else "the target is for the CPU"
    notes = [
        f"{len(paths)} synthetic {args.photo_size} px JPEG photos; model "
        f"{cfg.model.backbone} ({cfg.model.pretrained} weights, {cfg.model.embedding_dim}-d), "
        f"{'ONNX Runtime copy (model.onnx)' if exported else 'eager model'} as loaded by "
        "Embedder.from_run.",
        "pipeline: Embedder.embed_paths (threaded decode + EXIF + RGB + resize, to tensor, "
        "model, numpy out; the next batch decodes while the model runs); bare forward: the same "
        "model object on preallocated random batches of the same sizes, dtype and memory layout "
        "(made by to_tensor_batch as embed_arrays does, hence channels-last on the CPU too), "
        "torch.inference_mode; NCHW input: the same with NCHW-contiguous batches, for "
        "comparison (not used for the ratio); decode only: the per-photo decode + resize in "
        "the embedder's thread pool, no model.",
        f"images/s: median of {args.repeats} interleaved passes after one warm-up pass; "
        "pipeline / bare is the ratio of those medians (target on the CPU: >= "
        f"{TARGET_RATIO}; fp32 here: {ratio:.3f}, {verdict}).",
        f"training: TrainResult.train_images_per_s over {result.epochs_run} epochs of "
        f"{result.num_train} photos ({len(result.classes)} individuals; batch up to "
        f"{cfg.train.batch_size}, {cfg.train.m_per_class} per individual): on-the-fly "
        "augmentation + collation + forward + backward + Adam step; photos decoded once "
        "beforehand and validation not counted.",
        f"torch threads {torch.get_num_threads()}; decode threads {embedder.num_threads}; "
        f"load average (1 min) {load_before:.2f} before, {load_after:.2f} after (this run's own "
        "threads).",
    ]
    # The load average trails by a minute (a job that just ended still shows), so whether
    # something else was running is judged by the CPU time used during one second before the run.
    if busy_before is not None and busy_before >= 0.25:
        notes.append(
            f"WARNING: {busy_before:.0%} of the CPU was busy with other work just before the "
            "run: these figures are not reliable; rerun on an idle machine."
        )
    if device.type == "cuda":
        notes.append(
            "GPU: the pipeline's decode runs on the CPU, so its ratio measures the CPU decode "
            "rate against the GPU, not a GPU overhead; the 0.8 target is for the CPU."
        )
    md = markdown(rows, training, notes)
    print("\n" + md, flush=True)
    payload = {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "torch_threads": torch.get_num_threads(),
        "decode_threads": embedder.num_threads,
        "exported_onnx": exported,
        "load_average_1m": {"before": load_before, "after": load_after},
        "cpu_busy_before": busy_before,
        "rows": rows,
        "training": training,
        "pipeline_over_bare": ratio,
        "target_ratio": TARGET_RATIO,
        "notes": notes,
    }
    json_path, md_path = write_results("throughput", payload, md)
    print(f"wrote {json_path} and {md_path}")


if __name__ == "__main__":
    main()
