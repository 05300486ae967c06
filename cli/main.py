"""The ``reid`` command line. Each command parses, calls the library, prints."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from reid.cli.common import BestOpt, ConfigOpt, DetectorOpt, QuietOpt, SetOpt, app, user_errors


@app.command()
@user_errors
def demo(
    out: Annotated[Path, typer.Option(help="Where to write data, model and plots.")] = Path(
        "reid_demo"
    ),
    individuals: Annotated[int, typer.Option(min=2, help="Synthetic individuals.")] = 10,
    images_per: Annotated[int, typer.Option(min=4, help="Photos per individual.")] = 24,
    never_seen: Annotated[
        int, typer.Option(min=1, help="Never-seen individuals whose photos should come out NEW.")
    ] = 5,
    target_fmr: Annotated[
        float, typer.Option(min=0.001, max=0.5, help="Target false-match rate of the threshold.")
    ] = 0.05,
    seed: int = 0,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """The field workflow on synthetic salamanders, offline on the CPU: fine-tune, enroll a
    gallery, calibrate, match later photos of known and never-seen individuals."""
    from reid.demo import run_demo

    run_demo(
        out,
        num_individuals=individuals,
        images_per=images_per,
        num_never_seen=never_seen,
        target_fmr=target_fmr,
        seed=seed,
        overrides=set_,
        progress=not quiet,
    )


@app.command()
@user_errors
def synth(
    out: Annotated[Path, typer.Argument(help="Output folder (images/ and manifest.csv).")],
    individuals: Annotated[int, typer.Option(min=1, help="Number of individuals.")] = 20,
    images_per: Annotated[int, typer.Option(min=1, help="Photos per individual.")] = 20,
    seed: int = 0,
    size: Annotated[int, typer.Option(min=32, help="Image side in pixels.")] = 192,
    dates: Annotated[int, typer.Option(min=1, help="Number of survey dates.")] = 3,
    hybrid_fraction: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="Share of individuals from the second ('hybrid') population."
        ),
    ] = 0.0,
    first_index: Annotated[
        int, typer.Option(min=1, help="Number of the first individual (to make never-seen ones).")
    ] = 1,
    masks: Annotated[bool, typer.Option(help="Also write spot masks.")] = False,
    scenes: Annotated[
        bool,
        typer.Option(
            help="Write whole underwater scenes (640x480) with the heads in them and YOLO box "
            "labels plus data.yaml, for a head detector, instead of head crops (--size, "
            "--masks and --hybrid-fraction do not apply)."
        ),
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Draw synthetic salamander head photos with stable individual spot patterns."""
    from reid.synthetic.salamanders import synthesize

    if scenes:
        from reid.synthetic.scenes import synthesize_scenes

        data = synthesize_scenes(out, individuals, images_per, seed=seed, num_dates=dates,
                                 first_index=first_index, progress=not quiet)  # fmt: skip
        typer.echo(f"wrote scenes, YOLO labels, {out / 'scenes.csv'} and {data}")
        return
    try:
        manifest = synthesize(
            out,
            individuals,
            images_per,
            seed=seed,
            size=size,
            num_dates=dates,
            hybrid_fraction=hybrid_fraction,
            first_index=first_index,
            write_masks=masks,
            progress=not quiet,
        )
    except ValueError as exc:  # the generator names the bad argument
        from reid.errors import ReIDError

        raise ReIDError(str(exc)) from None
    typer.echo(f"wrote {individuals * images_per} photos and {manifest}")


@app.command("train")
@user_errors
def train_cmd(
    data: Annotated[Path, typer.Option(help="Folder per individual, or a CSV manifest.")],
    out: Annotated[Path, typer.Option(help="Run directory for the model, config and log.")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUT/last.pt.")] = False,
    detector: DetectorOpt = None,
    best: BestOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune the classifier + embedding model on labelled photos.

    With --detector the model learns from the detected heads (photos without one, or with
    several unless --best, are listed and left out); enroll and match must then use the same
    detector."""
    from reid.config import load_config
    from reid.io.datasets import read_dataset
    from reid.training.loop import train

    cfg = load_config(config, set_)
    from reid.detect.detector import load_detector, record_detector
    from reid.detect.heads import crop_samples

    samples = read_dataset(data)
    heads = load_detector(detector) if detector is not None else None
    if heads is not None:
        search = crop_samples(heads, samples, best=best, progress=not quiet)
        for line in search.problems():
            typer.echo(f"left out {line}", err=True)
        typer.echo(f"{search.summary()} (detector {detector})")
        samples = search.samples
    result = train(cfg, samples, out, resume=resume, progress=not quiet, log=typer.echo)
    record_detector(out, heads)  # so that enroll and match can warn of a different cut
    typer.echo(f"best epoch {result.best_epoch} of {result.epochs_run}; model: {result.checkpoint}")


@app.command()
@user_errors
def evaluate(
    run: Annotated[Path, typer.Argument(help="Run directory from `reid train` (or model.pt).")],
    data: Annotated[Path, typer.Option(help="Labelled test photos: folder or CSV manifest.")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default RUN/eval).")] = None,
    device: str = "auto",
    quiet: QuietOpt = False,
) -> None:
    """Accuracy, Cohen's kappa, macro P/R/F1, per-label table, confusion matrix, Grad-CAM."""
    from reid.evaluation.evaluate import evaluate_run, metrics_markdown
    from reid.features.checkpoint import resolve_checkpoint
    from reid.io.datasets import read_dataset

    resolve_checkpoint(run)  # name a wrong run directory before reading any photo
    out = out or (run if run.is_dir() else run.parent) / "eval"
    metrics = evaluate_run(run, read_dataset(data), out, device=device, progress=not quiet)
    for err in metrics["skipped"]:
        typer.echo(f"skipped {err['path']}: {err['reason']}", err=True)
    typer.echo(metrics_markdown(metrics))
    typer.echo(
        f"confusion matrix: {out / 'confusion.png'}; metrics: {out / 'metrics.json'}; "
        f"Grad-CAM examples: {out / 'gradcam'}"
    )


@app.command()
@user_errors
def conditions(
    data: Annotated[Path, typer.Option(help="Training photos with a 'condition' column.")],
    test: Annotated[Path, typer.Option(help="Test photos with a 'condition' column.")],
    out: Annotated[Path, typer.Option(help="Output folder: one run per condition + mixed.")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """The paper's protocol: a model per lighting condition plus a mixed model, one table."""
    from reid.config import load_config
    from reid.evaluation.lighting import run_condition_protocol
    from reid.io.datasets import read_dataset

    result = run_condition_protocol(
        load_config(config, set_),
        read_dataset(data),
        read_dataset(test),
        out,
        progress=not quiet,
        log=typer.echo,
    )
    typer.echo(result["table"])


# registered last so that `reid --help` lists the training commands first
# enroll, match, calibrate, gallery ...; benchmark loio
from reid.cli import (  # noqa: E402, F401
    benchmark_cmds,
    detect_cmds,
    discover_cmds,
    ecology_cmds,
    explain_cmds,
    gallery_admin_cmds,
    gallery_cmds,
    video_cmds,
    web_cmds,
)


def main() -> None:
    """Console entry point: run the app, then exit without the interpreter's teardown.

    Unloading torch's and faiss's native libraries takes over a second on a 2-core laptop, a
    third of a field match's time. Every file is written and closed by the time a command
    returns, so flushing the output and leaving directly loses nothing.
    """
    code = 0
    try:
        app()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
