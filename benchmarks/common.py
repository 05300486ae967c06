"""Helpers shared by the benchmark scripts: what a result records besides its figures (the
command, the date, the hardware), the Markdown footer that shows it, and result writing.

Benchmarks run as modules from the checkout root (``python -m benchmarks.NAME``), so the
command recorded is the one that reproduces the result.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def hardware() -> dict[str, Any]:
    """CPU model, cores (all and usable), memory, load, library versions; torch's threads and
    GPU when torch is loaded, faiss's threads and GPUs when faiss is (a benchmark that never
    needs torch does not load it for this)."""
    cpu, mem_kb = platform.processor() or "", 0
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in
                   Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))  # fmt: skip
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, StopIteration, ValueError, IndexError):
        pass
    import numpy as np

    out: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": round(mem_kb / 2**20, 1),
        "load_average_1m": round(os.getloadavg()[0], 2),  # the CPU may be shared
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
    }
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        out.update(torch=torch.__version__, torch_threads=torch.get_num_threads(), gpu=gpu)
    if "faiss" in sys.modules:
        out.update(_faiss_info(sys.modules["faiss"]))
    return out


def _faiss_info(faiss: Any) -> dict[str, Any]:
    gpus: list[str] = []
    if faiss.get_num_gpus() > 0:
        try:
            gpus = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total",
                                   "--format=csv,noheader"], capture_output=True, text=True,
                                  check=True).stdout.strip().splitlines()  # fmt: skip
        except (OSError, subprocess.CalledProcessError):
            gpus = [f"{faiss.get_num_gpus()} GPU(s)"]
    return {"faiss": faiss.__version__, "faiss_threads": faiss.omp_get_max_threads(),
            "faiss_gpus": faiss.get_num_gpus(), "gpus": gpus}  # fmt: skip


def command_line() -> str:
    """The command that ran this benchmark, as ``python -m benchmarks.NAME ...`` when it ran as a
    module."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    program = f"-m {spec.name}" if spec is not None and spec.name else shlex.quote(sys.argv[0])
    return f"python {program} " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def run_info(name: str) -> dict[str, Any]:
    """The header every result starts with: benchmark name, command, date (UTC), hardware."""
    return {
        "benchmark": name,
        "command": command_line().rstrip(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hardware": hardware(),
    }


def footer(info: dict[str, Any]) -> str:
    """Markdown lines under a result: the command, the date and the hardware of ``info``
    (a ``run_info`` dict or a payload that starts with one)."""
    hw = info["hardware"]
    threads = ", ".join(f"{hw[k]} {k.split('_')[0]} threads" for k in
                        ("torch_threads", "faiss_threads") if hw.get(k))  # fmt: skip
    usable = f"{hw['cores_usable']} usable of " if hw.get("cores_usable") else ""
    gpus = hw.get("gpu") or ", ".join(hw.get("gpus") or []) or "none"
    versions = ", ".join(f"{k} {hw[k]}" for k in ("torch", "faiss", "numpy") if hw.get(k))
    return (
        f"- command: `{info['command']}`\n- date: {info['date']}\n"
        f"- hardware: {hw['cpu']} ({usable}{hw['cores']} cores"
        + (f", {threads}" if threads else "")
        + f"), {hw.get('memory_gib', '?')} GiB, load average {hw.get('load_average_1m', '?')}; "
        f"GPU: {gpus}; {versions}, Python {hw['python']}\n"
    )


def write_results(
    name: str, payload: dict[str, Any], markdown: str, out_dir: Path = RESULTS_DIR
) -> tuple[Path, Path]:
    """Write ``name.json`` and ``name.md`` (the markdown, then the footer) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {**run_info(name), **payload}
    json_path, md_path = out_dir / f"{name}.json", out_dir / f"{name}.md"
    json_path.write_text(json.dumps(payload, indent=2))
    md_path.write_text(f"# {name}\n\n{markdown}\n\n{footer(payload)}")
    return json_path, md_path
