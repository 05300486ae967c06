"""`reid benchmark ...`: quality benchmarks on the user's own photos."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from reid.cli.common import ConfigOpt, QuietOpt, SetOpt, app, user_errors

benchmark_app = typer.Typer(help="Measure how well the toolkit works on your photos.",
                            no_args_is_help=True)  # fmt: skip
app.add_typer(benchmark_app, name="benchmark")


@benchmark_app.command("loio")
@user_errors
def loio_cmd(
    data: Annotated[Path, typer.Argument(help="Folder per individual, or a CSV manifest.")],
    out: Annotated[Path, typer.Option(help="Folder for loio.json, loio.md, loio_roc.png.")],
    mode: Annotated[
        str,
        typer.Option(
            help="fast: one model, folds over never-trained individuals; "
            "retrain: a model per left-out individual (the paper's test)."
        ),
    ] = "fast",  # fmt: skip
    folds: Annotated[
        int | None, typer.Option(help="Individuals left out, a seeded sample (default: all).")
    ] = None,
    test_fraction: Annotated[
        float, typer.Option(help="fast mode: share of individuals never trained on.")
    ] = 0.5,
    enroll_fraction: Annotated[
        float, typer.Option(help="Per individual: share of (earliest) sightings enrolled.")
    ] = 0.5,
    target_fmr: Annotated[float, typer.Option(help="False-match rate to calibrate for.")] = 0.05,
    train_photos: Annotated[
        str,
        typer.Option(
            help="fast mode: train on the trained individuals' enrolled photos (enroll: both "
            "scenarios) or on all their photos (all: more data, never-trained gallery only)."
        ),
    ] = "enroll",
    baselines: Annotated[
        bool, typer.Option(help="Also score the frozen backbone and the classifier alone.")
    ] = True,
    seed: Annotated[int, typer.Option(help="Seeds the split, the folds and training.")] = 0,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Leave-one-individual-out: does the model flag an individual it has never seen as NEW?"""
    from reid.config import load_config
    from reid.evaluation.loio import LoioSettings, markdown, plot_roc, run_loio
    from reid.io.datasets import read_dataset

    cfg = load_config(config, [f"train.seed={seed}", *(set_ or [])])
    settings = LoioSettings(
        mode=mode, folds=folds, test_fraction=test_fraction, enroll_fraction=enroll_fraction,
        target_fmr=target_fmr, seed=seed, baselines=baselines, train_photos=train_photos,
    )  # fmt: skip
    result = run_loio(read_dataset(data), cfg, settings, out / "runs", progress=not quiet,
                      log=typer.echo)  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    plot = plot_roc(result, out / "loio_roc.png", f"LOIO on {data.name} ({mode})")
    md = markdown(result, f"LOIO on {data}") + f"\n\n![ROC]({plot.name})\n"
    (out / "loio.json").write_text(json.dumps(result, indent=2))
    (out / "loio.md").write_text(md)
    typer.echo(md)
