"""Leave-one-individual-out open-set benchmark (see reid/evaluation/loio.py for the protocol).

Writes benchmarks/results/loio_<data>_<mode>.{json,md} and a ROC plot (PNG) beside them. The
LOIO options (--mode, --folds, --test-fraction ...) are the fields of
``reid.evaluation.loio_settings.LoioSettings``, as in ``reid benchmark loio``.

    python -m benchmarks.loio --data synthetic --test-fraction 0.25   # fast mode, 60 animals
    python -m benchmarks.loio --data synthetic --mode retrain --folds 3
    python -m benchmarks.loio --data att_faces
    python -m benchmarks.loio --data nyala --config nyala --train-photos all \\
        --no-classifier-baseline
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from benchmarks import datasets
from benchmarks.common import RESULTS_DIR, write_results
from reid.config import load_config
from reid.evaluation.loio import markdown, plot_roc, run_loio
from reid.evaluation.loio_settings import add_arguments, from_arguments


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="synthetic", help="synthetic | att_faces | nyala | PATH")
    add_arguments(ap)
    ap.add_argument("--config", default="field",
                    help="installed config name (field, nyala, ...) or YAML path")  # fmt: skip
    ap.add_argument("--set", action="append", default=[], help="config override key=value")
    ap.add_argument("--individuals", type=int, default=60, help="synthetic only")
    ap.add_argument("--images-per", type=int, default=12, help="synthetic only")
    ap.add_argument(
        "--rotate",
        action="store_true",
        help="synthetic only: photos turned by a random angle in +-180 degrees",
    )
    ap.add_argument("--name", default=None, help="results file name (default loio_DATA_MODE)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/reid_bench/loio"))
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    t0 = time.perf_counter()
    settings = from_arguments(args)
    samples, label_column = datasets.load(
        args.data, args.work, individuals=args.individuals, images_per=args.images_per,
        seed=args.seed, rotate=args.rotate,
    )  # fmt: skip
    cfg = load_config(
        args.config, [f"data.label_column={label_column}", f"train.seed={args.seed}", *args.set]
    )
    data = Path(args.data).name
    result = run_loio(samples, cfg, settings, args.work / f"{data}_{args.mode}")
    name = args.name or f"loio_{data}_{args.mode}"
    title = f"LOIO on {data}"
    plot = plot_roc(result, RESULTS_DIR / f"{name}_roc.png", f"{title} ({args.mode})")
    if result.get("local"):  # keep the reliability plot beside the results
        png = RESULTS_DIR / f"{name}_reliability.png"
        shutil.copyfile(result["local"]["reliability_png"], png)
        result["local"]["reliability_png"] = png.name
    md = markdown(result, title) + f"\n\n![ROC]({plot.name})"
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    write_results(name, {"result": result, "args": {k: str(v) for k, v in vars(args).items()}},
                  md)  # fmt: skip
    print(md)


if __name__ == "__main__":
    main()
