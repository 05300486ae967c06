"""`reid benchmark ...`: quality benchmarks on the user's own photos."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from reid.cli.common import ConfigOpt, QuietOpt, SetOpt, app, user_errors
from reid.evaluation.loio_settings import LoioSettings

benchmark_app = typer.Typer(help="Measure how well the toolkit works on your photos.",
                            no_args_is_help=True)  # fmt: skip
app.add_typer(benchmark_app, name="benchmark")

# defaults and help come from LoioSettings, the one place the LOIO options are written down
_LOIO = LoioSettings()


def _loio_opt(name: str) -> typer.models.OptionInfo:
    return typer.Option(help=LoioSettings.help(name))


@benchmark_app.command("loio")
@user_errors
def loio_cmd(
    data: Annotated[Path, typer.Argument(help="Folder per individual, or a CSV manifest.")],
    out: Annotated[Path, typer.Option(help="Folder for loio.json, loio.md, loio_roc.png.")],
    mode: Annotated[str, _loio_opt("mode")] = _LOIO.mode,
    folds: Annotated[int | None, _loio_opt("folds")] = _LOIO.folds,
    test_fraction: Annotated[float, _loio_opt("test_fraction")] = _LOIO.test_fraction,
    enroll_fraction: Annotated[float, _loio_opt("enroll_fraction")] = _LOIO.enroll_fraction,
    train_photos: Annotated[str, _loio_opt("train_photos")] = _LOIO.train_photos,
    target_fmr: Annotated[float, _loio_opt("target_fmr")] = _LOIO.target_fmr,
    softmax_threshold: Annotated[float, _loio_opt("softmax_threshold")] = _LOIO.softmax_threshold,
    seed: Annotated[int, _loio_opt("seed")] = _LOIO.seed,
    baselines: Annotated[bool, _loio_opt("baselines")] = _LOIO.baselines,
    classifier_baseline: Annotated[
        bool, _loio_opt("classifier_baseline")
    ] = _LOIO.classifier_baseline,
    train: Annotated[bool, _loio_opt("train")] = _LOIO.train,
    local: Annotated[str, _loio_opt("local")] = _LOIO.local,
    shortlist: Annotated[int, _loio_opt("shortlist")] = _LOIO.shortlist,
    upright: Annotated[bool, _loio_opt("upright")] = _LOIO.upright,
    lnbnn_k: Annotated[int, _loio_opt("lnbnn_k")] = _LOIO.lnbnn_k,
    foreground: Annotated[float, _loio_opt("foreground")] = _LOIO.foreground,
    oversample: Annotated[int, _loio_opt("oversample")] = _LOIO.oversample,
    config: ConfigOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Leave-one-individual-out: does the model flag an individual it has never seen as NEW?
    (`--config nyala` applies the nyala training settings; the recorded nyala runs also take
    each flank as an identity and pass --train-photos all --no-classifier-baseline: see
    `python -m benchmarks.loio --help`.)"""
    from reid.config import load_config
    from reid.evaluation.loio import markdown, plot_roc, run_loio
    from reid.io.datasets import read_dataset

    settings = LoioSettings(
        mode=mode, folds=folds, test_fraction=test_fraction, enroll_fraction=enroll_fraction,
        train_photos=train_photos, target_fmr=target_fmr, softmax_threshold=softmax_threshold,
        seed=seed, baselines=baselines, classifier_baseline=classifier_baseline, train=train,
        local=local, shortlist=shortlist, upright=upright, lnbnn_k=lnbnn_k,
        foreground=foreground, oversample=oversample,
    )  # fmt: skip
    cfg = load_config(config, [f"train.seed={seed}", *(set_ or [])])
    result = run_loio(read_dataset(data), cfg, settings, out / "runs", progress=not quiet,
                      log=typer.echo)  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    plot = plot_roc(result, out / "loio_roc.png", f"LOIO on {data.name} ({mode})")
    if result.get("local"):  # the fused score's reliability plot, named relative to --out
        png = Path(result["local"]["reliability_png"])
        result["local"]["reliability_png"] = str(png.relative_to(out))
    md = markdown(result, f"LOIO on {data}") + f"\n\n![ROC]({plot.name})\n"
    (out / "loio.json").write_text(json.dumps(result, indent=2))
    (out / "loio.md").write_text(md)
    typer.echo(md)
