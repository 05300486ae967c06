"""``reid demo``: the field workflow on synthetic salamanders, offline, on the CPU.

1. synthesise a known population (photos over 3 dates), a few individuals the model will never
   train on but the gallery knows ("reference"), and a few never-seen ones;
2. fine-tune on the known population's first two dates (the installed ``demo`` config);
3. enroll the early-date photos of the known and reference individuals in a gallery;
4. calibrate the NEW threshold at a target false-match rate, with the reference individuals
   playing the newcomers (the model never saw them, so the threshold is honest);
5. match the later-date photos of the enrolled individuals and every photo of the never-seen
   ones, write a match sheet per photo, and report known rank-1 and the share called NEW;
6. evaluate the classifier closed-set on the later date (confusion matrix, Grad-CAM).

Nothing is downloaded.
"""

from __future__ import annotations

import itertools
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reid.config import Config, load_config
from reid.errors import ReIDError
from reid.evaluation.evaluate import evaluate_run
from reid.features.embedder import Embedder
from reid.gallery import Calibration
from reid.io.datasets import ImageRecord, read_dataset
from reid.pipeline import (
    MatchOptions,
    MatchRow,
    enroll_samples,
    match_photos,
    open_gallery,
    write_match_sheets,
)
from reid.synthetic.salamanders import synthesize
from reid.training.loop import train

DEMO_CONFIG = "demo"  # configs/demo.yaml, installed with the package


def demo_config(overrides: list[str] | None = None) -> Config:
    """The installed ``demo`` config (offline lite0 weights, 160 px) plus ``overrides``."""
    return load_config(DEMO_CONFIG, overrides)


@dataclass
class DemoData:
    """The demo's photos, split the way a field season splits them."""

    train: list[ImageRecord]  # known individuals, early dates: the model learns these
    enroll: list[ImageRecord]  # known and reference individuals, early dates: the gallery
    known_queries: list[ImageRecord]  # known and reference individuals, the later date
    new_queries: list[ImageRecord]  # never-seen individuals, every photo
    trained_ids: set[str]  # the individuals the model is trained on
    later_date: str


def claim_out_dir(out_dir: Path) -> None:
    """Make ``out_dir`` the demo's own: a rerun replaces the gallery and sheets it wrote before,
    so a non-empty folder that a former demo did not make (no marker file) is refused."""
    marker = out_dir / ".reid-demo"
    if out_dir.is_dir() and any(out_dir.iterdir()) and not marker.exists():
        raise ReIDError(
            f"Folder {out_dir} is not empty and was not made by `reid demo`, which rewrites its "
            "contents: pass another --out, or empty the folder."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    marker.touch()


def make_data(
    data_dir: Path,
    *,
    num_individuals: int,
    images_per: int,
    num_reference: int,
    num_never_seen: int,
    seed: int,
    progress: bool,
) -> DemoData:
    """Synthesise three groups with distinct ids (JGS001.. known, then reference, then
    never-seen) into ``data_dir/{known,reference,never_seen}`` and split them by date."""

    def group(
        name: str, count: int, first: int, photos: int, dates: int, **kw
    ) -> list[ImageRecord]:
        manifest = synthesize(data_dir / name, count, photos, seed=seed, num_dates=dates,
                              first_index=first, progress=progress, **kw)  # fmt: skip
        return read_dataset(manifest)

    known = group("known", num_individuals, 1, images_per, 3)
    later = max(s.date for s in known)
    reference = group("reference", num_reference, num_individuals + 1, images_per, 3)
    first_new, photos_new = num_individuals + num_reference + 1, max(images_per // 3, 2)
    never_seen = group("never_seen", num_never_seen, first_new, photos_new, 1, start_date=later)
    early = [s for s in known + reference if s.date != later]
    return DemoData(
        train=[s for s in known if s.date != later],
        enroll=early,
        known_queries=[s for s in known + reference if s.date == later],
        new_queries=never_seen,
        trained_ids={s.individual for s in known},
        later_date=later,
    )


def build_gallery(
    gallery_dir: Path,
    embedder: Embedder,
    samples: Sequence[ImageRecord],
    *,
    target_fmr: float,
    progress: bool,
    log: Callable[[str], None],
) -> Calibration:
    """Enroll ``samples`` in a fresh gallery and calibrate it; never-trained individuals among
    them play the newcomers (``trained_individuals`` = the model's classes)."""
    shutil.rmtree(gallery_dir, ignore_errors=True)  # the demo's own gallery from a former run
    with open_gallery(gallery_dir, embedder, create=True) as gallery:
        enroll_samples(gallery, samples, embedder, user="demo", progress=progress)
        log(f"4/6 calibrating the NEW threshold at a target false-match rate of {target_fmr:.0%}")
        return gallery.calibrate(
            target_fmr=target_fmr, user="demo", trained_individuals=embedder.classes
        )


def match_queries(
    gallery_dir: Path, embedder: Embedder, photos: Sequence[Path], *, progress: bool
) -> list[MatchRow]:
    """Match ``photos`` against the calibrated gallery: one row per photo, known or NEW."""
    with open_gallery(gallery_dir, embedder, create=False) as gallery:
        return match_photos(gallery, list(photos), embedder, MatchOptions(progress=progress))


def pick_sheets(
    rows: Sequence[MatchRow], truth: Sequence[str | None], max_sheets: int
) -> tuple[list[MatchRow], int]:
    """Rows worth a match sheet, mistakes first (a known photo not accepted as its individual,
    a never-seen photo matched to someone), then right answers of both kinds in turn, at most
    ``max_sheets``. Returns (rows, number of mistakes in all)."""
    wrong, right_known, right_new = [], [], []
    for row, who in zip(rows, truth, strict=True):
        if row.match is None:
            continue
        if who is None:
            (right_new if row.match.is_new else wrong).append(row)
        else:
            (right_known if row.match.decision == who else wrong).append(row)
    pairs = itertools.zip_longest(right_known, right_new)
    picked = (wrong + [r for pair in pairs for r in pair if r is not None])[:max_sheets]
    return picked, len(wrong)


def write_sheets(gallery_dir: Path, embedder: Embedder, rows: Sequence[MatchRow], sheet_dir: Path):
    """Write one PNG match sheet per row into a fresh ``sheet_dir``; returns their paths."""
    shutil.rmtree(sheet_dir, ignore_errors=True)  # the demo's own sheets from a former run
    with open_gallery(gallery_dir, embedder, create=False) as gallery:
        return write_match_sheets(rows, sheet_dir, gallery)


def open_set_figures(
    rows: Sequence[MatchRow], truth: Sequence[str | None], trained_ids: set[str]
) -> dict[str, Any]:
    """Rates over matched photos; ``truth[i]`` is row i's individual, None for a never-seen one.

    known_rank1: the top candidate is the right individual (threshold ignored);
    known_accepted: it is, and its score clears the threshold (not called NEW);
    never_seen_new: share of never-seen photos called NEW. Also per trained / never-trained."""

    def rates(pairs: list[tuple[MatchRow, str]]) -> tuple[float, float]:
        if not pairs:
            return float("nan"), float("nan")
        top = [r.match.candidates[0].individual if r.match.candidates else "" for r, _ in pairs]
        rank1 = sum(t == who for t, (_, who) in zip(top, pairs, strict=True)) / len(pairs)
        accepted = sum(r.match.decision == who for r, who in pairs) / len(pairs)
        return rank1, accepted

    known = [(r, t) for r, t in zip(rows, truth, strict=True) if t is not None and r.match]
    new = [r for r, t in zip(rows, truth, strict=True) if t is None and r.match]
    out: dict[str, Any] = {"num_known_queries": len(known), "num_never_seen_queries": len(new)}
    out["known_rank1"], out["known_accepted"] = rates(known)
    out["trained_rank1"], out["trained_accepted"] = rates([p for p in known if p[1] in trained_ids])
    out["reference_rank1"], out["reference_accepted"] = rates(
        [p for p in known if p[1] not in trained_ids]
    )
    out["never_seen_new"] = sum(r.match.is_new for r in new) / len(new) if new else float("nan")
    return out


def field_workflow(
    run_dir: Path, data: DemoData, out_dir: Path, *, cfg: Config, target_fmr: float,
    max_sheets: int, progress: bool, log: Callable[[str], None],
) -> dict[str, Any]:  # fmt: skip
    """Steps 3-5: enroll, calibrate, match; returns the open-set figures and the calibration."""
    embedder = Embedder.from_run(run_dir, cfg.train.device, num_threads=cfg.train.num_threads)
    log(f"3/6 enrolling {len(data.enroll)} early-date photos in {out_dir / 'gallery'}")
    cal = build_gallery(
        out_dir / "gallery", embedder, data.enroll, target_fmr=target_fmr, progress=progress,
        log=log,
    )  # fmt: skip
    who = (
        "enrolled individuals the model never trained on"
        if cal.unknown_pool == "never-trained"
        else "enrolled individuals, some of them trained on (OPTIMISTIC),"
    )
    log(
        f"    threshold {cal.threshold:.3f} (cosine): {cal.num_unknown_individuals} {who} "
        f"played the newcomers; measured false-match rate {cal.fmr:.1%}"
    )
    queries = data.known_queries + data.new_queries
    log(
        f"5/6 matching {len(data.known_queries)} photos of enrolled individuals from "
        f"{data.later_date} and {len(data.new_queries)} photos of never-seen individuals"
    )
    paths = [Path(s.path) for s in queries]
    rows = match_queries(out_dir / "gallery", embedder, paths, progress=progress)
    truth = [s.individual for s in data.known_queries] + [None] * len(data.new_queries)
    picked, num_wrong = pick_sheets(rows, truth, max_sheets)
    sheets = write_sheets(out_dir / "gallery", embedder, picked, out_dir / "match_sheets")
    figures = open_set_figures(rows, truth, data.trained_ids)
    figures.update(
        threshold=cal.threshold, target_fmr=target_fmr, calibration_fmr=cal.fmr,
        unknown_pool=cal.unknown_pool, num_sheets=len(sheets), num_mistakes=num_wrong,
        num_reference=cal.num_unknown_individuals,
    )  # fmt: skip
    return figures


def report_lines(figures: dict[str, Any], out_dir: Path, checkpoint: Path) -> list[str]:
    """The demo's closing summary: open-set figures first, then where everything is."""
    f = figures
    return [
        "",
        f"known individuals, later date ({f['num_known_queries']} photos): rank-1 "
        f"{f['known_rank1']:.1%}; accepted as the right individual {f['known_accepted']:.1%} "
        f"(trained on: rank-1 {f['trained_rank1']:.1%}; enrolled but never trained: rank-1 "
        f"{f['reference_rank1']:.1%})",
        f"never-seen individuals ({f['num_never_seen_queries']} photos): called NEW "
        f"{f['never_seen_new']:.1%}",
        f"NEW threshold {f['threshold']:.3f} at target false-match rate {f['target_fmr']:.0%}",
        f"closed-set accuracy on the later date (classifier): {f['accuracy']:.4f}",
        f"in {f['seconds']:.0f} s",
        "",
        f"model: {checkpoint}",
        f"gallery: {out_dir / 'gallery'}",
        f"match sheets: {out_dir / 'match_sheets'} ({f['num_sheets']} of the "
        f"{f['num_known_queries'] + f['num_never_seen_queries']} photos, mistakes first; "
        f"{f['num_mistakes']} mistakes in all)",
        f"confusion matrix: {out_dir / 'eval' / 'confusion.png'}",
        f"Grad-CAM examples (errors first): {out_dir / 'eval' / 'gradcam'}",
    ]


def run_demo(
    out_dir: str | Path,
    *,
    num_individuals: int = 10,
    images_per: int = 24,
    num_reference: int = 5,
    num_never_seen: int = 5,
    target_fmr: float = 0.05,
    max_sheets: int = 24,
    gradcam_examples: int = 6,
    seed: int = 0,
    overrides: list[str] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the six steps; returns the open-set figures, the closed-set metrics (``accuracy``,
    ``kappa``, ...), ``seconds`` and the paths written. Prints as it goes.

    ``num_reference``: individuals enrolled but never trained on, who play the newcomers in
    calibration (at least 2, else the threshold is measured on trained individuals and marked
    optimistic); ``max_sheets``: match sheets written, mistakes first."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    cfg = demo_config(overrides)
    claim_out_dir(out_dir)
    log(
        f"1/6 synthesising {num_individuals} known salamanders x {images_per} photos over 3 "
        f"dates, {num_reference} more to enroll only and {num_never_seen} never-seen ones into "
        f"{out_dir / 'data'}"
    )
    data = make_data(
        out_dir / "data", num_individuals=num_individuals, images_per=images_per,
        num_reference=num_reference, num_never_seen=num_never_seen, seed=seed, progress=progress,
    )  # fmt: skip
    log(
        f"2/6 fine-tuning {cfg.model.backbone} (offline {cfg.model.pretrained} weights) on "
        f"{len(data.train)} photos of the known individuals before {data.later_date}"
    )
    result = train(cfg, data.train, out_dir / "run", progress=progress, log=log)
    figures = field_workflow(
        result.run_dir, data, out_dir, cfg=cfg, target_fmr=target_fmr, max_sheets=max_sheets,
        progress=progress, log=log,
    )  # fmt: skip
    log(f"6/6 evaluating the classifier closed-set on the known individuals' {data.later_date}")
    closed = [s for s in data.known_queries if s.individual in data.trained_ids]
    metrics = evaluate_run(
        result.run_dir, closed, out_dir / "eval", device=cfg.train.device, progress=progress,
        title=f"Demo: later date {data.later_date}", gradcam_examples=gradcam_examples,
    )  # fmt: skip
    figures.update(metrics, seconds=time.perf_counter() - start)
    for line in report_lines(figures, out_dir, result.checkpoint):
        log(line)
    return {
        **figures,
        "run_dir": str(result.run_dir),
        "gallery_dir": str(out_dir / "gallery"),
        "sheet_dir": str(out_dir / "match_sheets"),
        "eval_dir": str(out_dir / "eval"),
    }
