"""Leave-one-individual-out open-set benchmark (see reid/loio.py for the protocol).

Writes benchmarks/results/loio_<data>_<mode>.{json,md} and a ROC plot (PNG) beside them.

    python benchmarks/loio.py --data synthetic --test-fraction 0.25   # fast mode, 60 animals
    python benchmarks/loio.py --data synthetic --mode retrain --folds 3
    python benchmarks/loio.py --data att_faces
    python benchmarks/loio.py --data nyala --set data.input_size=224
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import datasets  # noqa: E402
from benchmarks.common import RESULTS_DIR, write_results  # noqa: E402
from reid.config import load_config  # noqa: E402
from reid.evaluation.loio import LoioSettings, markdown, plot_roc, run_loio  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "field.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="synthetic", help="synthetic | att_faces | nyala | PATH")
    ap.add_argument("--mode", choices=("fast", "retrain"), default="fast")
    ap.add_argument("--folds", type=int, default=None, help="individuals left out (default all)")
    ap.add_argument("--test-fraction", type=float, default=0.5)
    ap.add_argument("--enroll-fraction", type=float, default=0.5)
    ap.add_argument(
        "--train-photos",
        choices=("enroll", "all"),
        default="enroll",
        help="fast mode: all = train on every photo of the trained individuals (never-trained "
        "gallery only)",
    )
    ap.add_argument("--target-fmr", type=float, default=0.05)
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument(
        "--no-classifier-baseline",
        action="store_true",
        help="keep the frozen-backbone baseline, skip training the classifier alone (half the "
        "time)",
    )
    ap.add_argument("--config", type=Path, default=CONFIG)
    ap.add_argument("--set", action="append", default=[], help="config override key=value")
    ap.add_argument("--individuals", type=int, default=60, help="synthetic only")
    ap.add_argument("--images-per", type=int, default=12, help="synthetic only")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default=None, help="results file name (default loio_DATA_MODE)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/reid_bench/loio"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    samples, label_column = datasets.load(
        args.data, args.work, individuals=args.individuals, images_per=args.images_per,
        seed=args.seed,
    )  # fmt: skip
    cfg = load_config(
        args.config, [f"data.label_column={label_column}", f"train.seed={args.seed}", *args.set]
    )
    settings = LoioSettings(
        mode=args.mode, folds=args.folds, test_fraction=args.test_fraction,
        enroll_fraction=args.enroll_fraction, target_fmr=args.target_fmr, seed=args.seed,
        train_photos=args.train_photos, classifier_baseline=not args.no_classifier_baseline,
        baselines=not args.no_baselines,
    )  # fmt: skip
    result = run_loio(samples, cfg, settings, args.work / f"{Path(args.data).name}_{args.mode}")
    name = args.name or f"loio_{Path(args.data).name}_{args.mode}"
    title = f"LOIO on {Path(args.data).name}"
    plot = plot_roc(result, RESULTS_DIR / f"{name}_roc.png", f"{title} ({args.mode})")
    md = markdown(result, title) + f"\n\n![ROC]({plot.name})"
    result["wall_seconds"] = round(time.perf_counter() - t0, 1)
    write_results(name, {"result": result, "args": {k: str(v) for k, v in vars(args).items()}},
                  md)  # fmt: skip
    print(md)


if __name__ == "__main__":
    main()
