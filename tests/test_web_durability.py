"""``kill -9`` of ``reid serve`` during an upload burst: after a restart every upload that was
acknowledged (its receipt returned) is present, complete and queued."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(gallery: Path, run: Path, port: int, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "reid.cli.main", "serve", str(gallery), "--model", str(run),
           "--port", str(port), "--workers", "0", "--device", "cpu"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"reid serve exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("reid serve did not answer within 120 s")


def test_kill_9_during_an_upload_burst_loses_no_acknowledged_upload(web_gallery, tiny_data,
                                                                    tmp_path):  # fmt: skip
    gallery = tmp_path / "gallery"
    shutil.copytree(web_gallery["dir"], gallery)
    port, log = _free_port(), tmp_path / "serve.log"
    base = f"http://127.0.0.1:{port}"
    photos = sorted((tiny_data.parent / "images").rglob("*.jpg"))
    proc = _start(gallery, web_gallery["run"], port, log)
    acknowledged: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(k: int) -> None:
        with httpx.Client(base_url=base, timeout=10) as c:
            try:
                token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/").text).group(1)
                i = k
                while not stop.is_set():
                    photo = photos[i % len(photos)]
                    r = c.post(
                        "/submit",
                        data={"csrf_token": token, "notes": f"client {k}"},
                        files=[("photos", (photo.name, photo.read_bytes(), "image/jpeg"))],
                    )
                    if r.status_code == 303:  # acknowledged: the receipt is in hand
                        with lock:
                            acknowledged.append(r.headers["location"])
                    i += 7
            except httpx.HTTPError:
                return  # the server died under us: this upload was never acknowledged

    threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    deadline = time.time() + 30
    while len(acknowledged) < 40 and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # mid-burst: uploads are in flight
    proc.wait()
    stop.set()
    for t in threads:
        t.join(15)
    assert len(acknowledged) >= 40, log.read_text()[-2000:]

    proc = _start(gallery, web_gallery["run"], port, log)
    try:
        with httpx.Client(base_url=base, timeout=10) as c:
            for receipt in acknowledged:
                r = c.get(receipt, params={"format": "json"})
                assert r.status_code == 200, receipt
                assert [p["status"] for p in r.json()["photos"]] == ["queued"], receipt
    finally:
        proc.terminate()
        proc.wait(30)
    from reid.web.db import WebDB

    db = WebDB(gallery / "web" / "web.sqlite")
    assert db.query("PRAGMA integrity_check")[0]["integrity_check"] == "ok"
    stored = {p["stored_name"] for p in db.query("SELECT stored_name FROM photos")}
    for name in stored:  # every queued photo's file is whole: same bytes as a source photo
        data = (gallery / "web" / "uploads" / name).read_bytes()
        assert any(data == p.read_bytes() for p in photos), name
