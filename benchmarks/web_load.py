"""Load on the web app (`reid serve`), local clients only: N submissions from C concurrent
clients, then the worker's identification throughput beside `reid match` on the same photos.

1. Upload burst: the server runs with ``--workers 0`` (queue only) so that upload latency is
   the server's own; each client fetches the form once (CSRF token) and posts its share of the
   submissions, one photo each. Afterwards every receipt must answer with its photo queued and
   the database must hold exactly N queued photos: "lost" counts any that do not.
2. Throughput, alternated ``--repeats`` times: (a) ``reid serve --workers 1`` started on that
   queue, timed from launch until the queue is empty; (b) ``reid match`` on the same stored
   photos, timed from launch to exit. Both include one start-up (imports, model, gallery).
   ratio = worker throughput / CLI throughput (medians); target >= 0.9.

The set-up (cached under ``--work``): synthetic salamanders (192 px), a small model trained on
individuals 1-16, a gallery of every individual's first-date photos with SIFT features, and
``reid calibrate --model`` (so matching is fused by default, as in the field). Queries are later
photos of the 24 enrolled individuals and photos of 8 never-seen ones.

    python -m benchmarks.web_load --submissions 200 --clients 20
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks.common import write_results

REID = [sys.executable, "-m", "reid.cli.main"]


def setup(work: Path) -> tuple[Path, Path, list[Path]]:
    """(gallery, run, query photos), built once under ``work``."""
    from reid.config import load_config
    from reid.io.datasets import read_dataset
    from reid.synthetic.salamanders import synthesize
    from reid.training.loop import train

    gallery, run = work / "gallery", work / "run"
    data = synthesize(work / "data", 24, 12, seed=1, size=192, num_dates=3, progress=False)
    new = synthesize(work / "new", 8, 10, seed=1, size=192, first_index=101, progress=False)
    samples = read_dataset(data)
    first = min(s.date for s in samples)
    if not (run / "model.pt").exists():
        cfg = load_config(Path(__file__).parents[1] / "configs" / "tiny.yaml",
                          ["data.input_size=128", "train.epochs=4"])  # fmt: skip
        trained = [s for s in samples if int(s.individual[3:]) <= 16]
        train(cfg, trained, run, progress=False, log=lambda _: None)
    if not (gallery / "gallery.sqlite").exists():
        manifest = work / "enroll.csv"
        rows = [s for s in samples if s.date == first]
        manifest.write_text("path,individual,date\n" + "".join(
            f"{s.path},{s.individual},{s.date}\n" for s in rows))  # fmt: skip
        _run([*REID, "enroll", gallery, manifest, "--model", run, "--quiet", "--device", "cpu"])
        _run([*REID, "calibrate", gallery, "--model", run, "--quiet"])
    later = [s.path for s in samples if s.date != first]
    newcomers = sorted((new.parent / "images").rglob("*.jpg"))
    return gallery, run, later + newcomers


def _run(cmd: list) -> float:
    t0 = time.perf_counter()
    subprocess.run([str(c) for c in cmd], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(gallery: Path, run: Path, data: Path, port: int, workers: int) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen(
        [str(c) for c in [*REID, "serve", gallery, "--model", run, "--data", data, "--port",
                          port, "--workers", workers, "--device", "cpu"]],  # fmt: skip
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("reid serve did not start")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)


def upload_burst(base: str, photos: list[Path], clients: int) -> tuple[list[float], list[str]]:
    """Latencies (s) and receipts of ``len(photos)`` submissions from ``clients`` threads."""
    import httpx

    latencies, receipts, failures = [], [], []
    lock = threading.Lock()
    shares = [photos[k::clients] for k in range(clients)]

    def client(mine: list[Path]) -> None:
        with httpx.Client(base_url=base, timeout=60) as c:
            token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/").text).group(1)
            for p in mine:
                t0 = time.perf_counter()
                r = c.post(
                    "/submit",
                    data={"csrf_token": token},
                    files=[("photos", (p.name, p.read_bytes(), "image/jpeg"))],
                )
                dt = time.perf_counter() - t0
                with lock:
                    if r.status_code == 303:
                        latencies.append(dt)
                        receipts.append(r.headers["location"])
                    else:
                        failures.append(f"{p.name}: {r.status_code}")

    threads = [threading.Thread(target=client, args=(s,)) for s in shares]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        print(f"{len(failures)} uploads refused: {failures[:5]}")
    return latencies, receipts


def queue_left(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return conn.execute(
            "SELECT COUNT(*) FROM photos WHERE status IN ('queued', 'working')"
        ).fetchone()[0]


def drain_time(gallery: Path, run: Path, data: Path, snapshot: Path) -> float:
    """Seconds from launching `reid serve --workers 1` on a copy of the full queue until the
    queue is empty."""
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(snapshot, data)
    t0 = time.perf_counter()
    proc = serve(gallery, run, data, _free_port(), 1)
    while queue_left(data / "web.sqlite"):
        time.sleep(0.1)
    elapsed = time.perf_counter() - t0
    stop(proc)
    return elapsed


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--submissions", type=int, default=200)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2, help="alternated worker / CLI timings")
    ap.add_argument("--name", default="web_load")
    ap.add_argument("--work", type=Path, default=Path("/tmp/reid_bench/web_load"))
    args = ap.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    gallery, run, queries = setup(args.work)
    photos = (queries * (args.submissions // len(queries) + 1))[: args.submissions]
    data = args.work / "web"
    shutil.rmtree(data, ignore_errors=True)

    port = _free_port()
    proc = serve(gallery, run, data, port, 0)
    latencies, receipts = upload_burst(f"http://127.0.0.1:{port}", photos, args.clients)
    import httpx

    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
        answered = [c.get(r, params={"format": "json"}).json() for r in receipts]
    stop(proc)
    queued_ok = sum(a["photos"][0]["status"] == "queued" for a in answered)
    in_db = queue_left(data / "web.sqlite")
    lost = args.submissions - min(queued_ok, in_db)
    snapshot = args.work / "web_snapshot"
    shutil.rmtree(snapshot, ignore_errors=True)
    shutil.copytree(data, snapshot)

    with sqlite3.connect(data / "web.sqlite") as conn:
        stored = [data / "uploads" / n for (n,) in conn.execute("SELECT stored_name FROM photos")]
    worker_s, cli_s = [], []
    for _ in range(args.repeats):
        worker_s.append(drain_time(gallery, run, args.work / "web_drain", snapshot))
        cli_s.append(_run([*REID, "match", gallery, *stored, "--model", run, "--quiet",
                           "--format", "csv", "--device", "cpu"]))  # fmt: skip
    w, c = statistics.median(worker_s), statistics.median(cli_s)
    q = statistics.quantiles(latencies, n=20)
    figures = {
        "submissions": args.submissions, "clients": args.clients, "acknowledged": len(receipts),
        "receipts_queued": queued_ok, "queued_in_db": in_db, "lost": lost,
        "upload_p50_ms": round(statistics.median(latencies) * 1000, 1),
        "upload_p95_ms": round(q[18] * 1000, 1),
        "worker_s": [round(x, 2) for x in worker_s], "cli_s": [round(x, 2) for x in cli_s],
        "worker_photos_per_s": round(len(stored) / w, 3),
        "cli_photos_per_s": round(len(stored) / c, 3), "ratio": round(c / w, 3),
    }  # fmt: skip
    md = (
        f"{args.submissions} submissions (one synthetic 192 px photo each) from {args.clients} "
        "concurrent local clients to `reid serve --workers 0`; then the queue identified by "
        f"`reid serve --workers 1` and the same {len(stored)} photos by `reid match` "
        f"(alternated, {args.repeats}x each, both timed from launch, so each includes one "
        "start-up; gallery calibrated with --model, so both match fused).\n\n"
        "| acknowledged | receipts queued | queued in db | lost | upload p50 ms | upload p95 ms |"
        "\n| --- | --- | --- | --- | --- | --- |\n"
        f"| {len(receipts)} | {queued_ok} | {in_db} | {lost} | {figures['upload_p50_ms']} | "
        f"{figures['upload_p95_ms']} |\n\n"
        "| identification | runs (s) | photos/s (median) |\n| --- | --- | --- |\n"
        f"| worker (`reid serve`) | {figures['worker_s']} | {figures['worker_photos_per_s']} |\n"
        f"| CLI (`reid match`) | {figures['cli_s']} | {figures['cli_photos_per_s']} |\n\n"
        f"Throughput ratio worker / CLI: **{figures['ratio']}** (target >= 0.9); lost uploads: "
        f"**{lost}** (target 0)."
    )
    write_results(args.name, {"figures": figures, "args": {k: str(v) for k, v in
                                                           vars(args).items()}}, md)  # fmt: skip
    print(md)


if __name__ == "__main__":
    main()
