"""The discovery workflow (``reid discover``): match a batch of photos against a gallery, group
those that match no known individual into proposed new individuals, and write what a reviewer
needs to confirm them: a manifest ``reid enroll`` reads, a JSON report and a sheet per group.

The grouping itself is :mod:`reid.matching.discover`; this module strings it to the matching
stage and to the files.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reid.errors import ReIDError
from reid.matching.discover import Group, cluster, describe
from reid.pipeline import MatchOptions, MatchRow, match_photos

if TYPE_CHECKING:
    from reid.features.embedder import Embedder
    from reid.gallery import Gallery


ALL_PAIRS_UP_TO = 400  # photos; 80k SIFT pairs, about 10 minutes on a 2-core laptop
LARGE_BATCH_SHORTLIST = 200


@dataclass
class Discovery:
    """What one batch gave: ``rows`` every photo's match (known, NEW or unusable);
    ``newcomers`` the NEW rows, in the order ``scores`` (N, N) and the groups index them;
    ``names`` a proposed id per group; ``kind`` which score grouped them; ``threshold`` its cut."""

    rows: list[MatchRow]
    newcomers: list[MatchRow] = field(default_factory=list)
    scores: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    groups: list[Group] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    kind: str = ""
    threshold: float = 0.0

    @property
    def known(self) -> list[MatchRow]:
        return [r for r in self.rows if r.match is not None and not r.match.is_new]

    @property
    def unusable(self) -> list[MatchRow]:
        return [r for r in self.rows if r.match is None]


def discover_photos(
    gallery: Gallery,
    photos: Sequence[Path],
    embedder: Embedder,
    options: MatchOptions | None = None,
    *,
    prefix: str = "",
) -> Discovery:
    """Match ``photos``, then group the NEW ones by their pairwise scores (the gallery's fused
    P(same) where ``reid calibrate`` fitted one, else the cosine) cut at the calibrated NEW
    threshold of that score. Group names are ``prefix`` (default ``new-<today>-``) + a number,
    never one the gallery already holds."""
    options = replace(options or MatchOptions(), enroll_new=False)
    rows = match_photos(gallery, photos, embedder, options)
    found = Discovery(rows)
    new = [r for r in rows if r.match is not None and r.match.is_new]
    if not new:
        return found
    found.newcomers = new
    found.scores, found.kind, found.threshold = pair_scores(gallery, new, options.progress)
    labels = cluster(found.scores, found.threshold)
    found.groups = describe(found.scores, labels)
    found.names = _names(gallery, prefix or f"new-{date.today().isoformat()}-", len(found.groups))
    return found


def pair_scores(
    gallery: Gallery, rows: Sequence[MatchRow], progress: bool = False
) -> tuple[np.ndarray, str, float]:
    """(N, N) pairwise scores of matched photos (each row's ``vector``, from matching), what
    they are and the threshold to cut them at.

    With the gallery's fused calibration: every pair's cosine and its local scorer's verified
    correspondences (every pair up to ``ALL_PAIRS_UP_TO`` photos, else each photo's
    ``LARGE_BATCH_SHORTLIST`` most similar by cosine, the others scoring 0), calibrated and
    fused into P(same), cut at the fused threshold. Without one: the cosine, cut at the
    gallery's calibrated threshold."""
    from reid.matching.fused import gallery_scorer, read_fused

    v = np.stack([r.vector for r in rows]).astype(np.float32)
    cos = v @ v.T
    fused = read_fused(gallery)
    if fused is None or gallery.local_fingerprint is None:
        if gallery.threshold is None:
            raise ReIDError(
                f"Gallery {gallery.directory} has no calibrated threshold to cut "
                f"groups at: run `reid calibrate {gallery.directory}` first."
            )
        return cos, "cosine", float(gallery.threshold)
    from reid.gallery import ImageRecord
    from reid.matching.pairs import as_pairs, extract_all, nearest_columns, score_pairs

    scorer = gallery_scorer(gallery)
    n = len(rows)
    records = [ImageRecord(r.path, "?", box=r.box) for r in rows]
    features = extract_all(scorer, records, progress=progress)
    idx = np.arange(n)
    # every pair of a batch up to ALL_PAIRS_UP_TO photos: a shortlist by a cosine that is blind
    # to what matters (a turned head) never scores many same-animal pairs, and each one it
    # misses splits an animal in two (measured: N over-estimated by a third at 300 of 750)
    if n <= ALL_PAIRS_UP_TO:
        pairs = np.column_stack(np.triu_indices(n, 1)).astype(np.int64)
    else:
        size = max(fused.shortlist, LARGE_BATCH_SHORTLIST)
        pairs = as_pairs(idx, nearest_columns(v, idx, idx, size))
    local = np.zeros((n, n), np.float64)
    if len(pairs):
        got = score_pairs(scorer, features, pairs, progress=progress)
        local[pairs[:, 0], pairs[:, 1]] = local[pairs[:, 1], pairs[:, 0]] = got
    upper = np.triu_indices(n, 1)
    probs = fused.fusion({"cosine": cos[upper].astype(np.float64), scorer.name: local[upper]})
    p = np.eye(n)
    p[upper] = probs
    p.T[upper] = probs
    return p, f"fused P(same) ({scorer.name} + cosine)", float(fused.fit_for("fused").threshold)


def _names(gallery: Gallery, prefix: str, count: int) -> list[str]:
    taken = {s.individual for s in gallery.individuals()}
    names, k = [], 1
    while len(names) < count:
        name = f"{prefix}{k:03d}"
        if name not in taken:
            names.append(name)
        k += 1
    return names


def write_discovery(found: Discovery, out_dir: Path, gallery: Gallery) -> dict[str, Path]:
    """``groups.csv`` (a manifest: path, individual, box and each photo's standing in its
    group; edit names or drop rows, then ``reid enroll GALLERY groups.csv``), ``groups.json``
    and ``sheets/group_NNN.png``. Returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest, report = out_dir / "groups.csv", out_dir / "groups.json"
    s = found.scores
    lines = [
        ["path", "individual", "box", "group_size", "cohesion", "score_to_group", "weakest_link"]
    ]
    groups_json: list[dict[str, Any]] = []
    for name, g in zip(found.names, found.groups, strict=True):
        for m in g.members:
            row = found.newcomers[m]
            others = [o for o in g.members if o != m]
            to_group = float(np.mean(s[m, others])) if others else None
            box = "" if row.box is None else ",".join(str(int(x)) for x in row.box)
            lines.append(
                [
                    str(Path(row.path).resolve()),
                    name,
                    box,
                    len(g.members),
                    _num(g.cohesion),
                    _num(to_group),
                    "yes" if m == g.weakest and others else "",
                ]
            )
        groups_json.append(
            {
                "individual": name,
                "photos": [str(found.newcomers[m].path) for m in g.members],
                "cohesion": g.cohesion,
                "weakest_link": str(found.newcomers[g.weakest].path),
                "weakest_score": g.weakest_score,
            }
        )
    tmp = manifest.with_name(manifest.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(lines)
    tmp.replace(manifest)
    known = [
        {"photo": str(r.path), "individual": r.match.decision, "score": r.match.score}
        for r in found.known
    ]
    unusable = [{"photo": str(r.path), "error": r.error} for r in found.unusable]
    report.write_text(
        json.dumps(
            {
                "score": found.kind,
                "threshold": found.threshold,
                "groups": groups_json,
                "known": known,
                "unusable": unusable,
            },
            indent=2,
        )
    )
    sheets = [
        plot_group_sheet(found, k, out_dir / "sheets" / f"group_{k + 1:03d}.png")
        for k in range(len(found.groups))
    ]
    return {
        "manifest": manifest,
        "report": report,
        **{f"sheet{k}": p for k, p in enumerate(sheets)},
    }


def plot_group_sheet(found: Discovery, k: int, path: Path) -> Path:
    """One group's photos side by side, each titled with its mean score to the others; the
    weakest link's title in red."""
    from matplotlib.figure import Figure

    from reid.matching.local import prepare_region

    g, name = found.groups[k], found.names[k]
    members = g.members[:12]
    fig = Figure(figsize=(2.4 * max(2, len(members)), 3.2))
    axes = np.atleast_1d(fig.subplots(1, max(2, len(members))))
    for ax in axes:
        ax.axis("off")
    for ax, m in zip(axes, members, strict=False):
        row = found.newcomers[m]
        ax.imshow(prepare_region(row.path, row.box, 256))
        others = [o for o in g.members if o != m]
        score = f"{np.mean(found.scores[m, others]):.2f}" if others else "alone"
        weak = m == g.weakest and others
        ax.set_title(
            f"{Path(row.path).name[:22]}\n{score}", fontsize=8, color="darkred" if weak else "black"
        )
    more = f" (first 12 of {len(g.members)})" if len(g.members) > 12 else ""
    cohesion = "one photo" if g.cohesion is None else f"cohesion {g.cohesion:.2f}"
    fig.suptitle(
        f"{name}: {len(g.members)} photo(s){more}, {cohesion}; "
        f"{found.kind}, cut {found.threshold:.2f}",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    return path


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.4f}"


@dataclass
class Survey:
    """A survey batch turned into N: the photos used (dated, identified), each one's occasion
    index, the occasion labels, the naive and error-aware estimates (None where the score is
    not a probability) and N against the grouping threshold (empty without the gallery's
    per-rate thresholds). ``left_out`` lists photos without an occasion, and why."""

    rows: list[MatchRow]
    occasion_of: np.ndarray
    occasions: list[str]
    kind: str
    threshold: float
    naive: Any
    aware: Any
    curve: list[dict[str, Any]]
    left_out: list[tuple[Path, str]]
    labels: np.ndarray


def survey_estimate(
    gallery: Gallery,
    photos: Sequence[Path],
    embedder: Embedder,
    options: MatchOptions | None = None,
    *,
    occasion: str = "day",
    dates: dict[str, str] | None = None,
    model: str = "m0",
    draws: int = 50,
    seed: int = 0,
) -> Survey:
    """Population size from one survey's photos: identify them all (known individuals and
    newcomers alike) by grouping their pairwise scores, build capture histories over the
    occasions their dates fall in, and estimate N naively and with the identification error
    carried in (:mod:`reid.ecology.uncertain`). Dates come from ``dates`` (photo path ->
    ISO date) or the photo's EXIF."""
    from reid.ecology.closed import CLOSED_MODELS, SURVEY_MODELS
    from reid.ecology.sightings import Sighting, assign_occasions, exif_date
    from reid.ecology.uncertain import error_aware_estimate, histories_of, threshold_curve
    from reid.matching.fused import read_fused

    if model not in SURVEY_MODELS:
        raise ReIDError(f"--estimator {model!r}: survey estimates use {', '.join(SURVEY_MODELS)}")
    # the photos are only embedded and checked here (their pairs are scored below): a local
    # re-ranking of each against the gallery would be computed and thrown away
    options = replace(options or MatchOptions(), enroll_new=False, scorer="global", reranker=None)
    rows = match_photos(gallery, photos, embedder, options)
    usable = [r for r in rows if r.match is not None]
    left = [(r.path, r.error) for r in rows if r.match is None]
    dates = {str(Path(k).resolve()): v for k, v in (dates or {}).items()}
    sightings = [
        Sighting(
            "?", dates.get(str(Path(r.path).resolve())) or exif_date(r.path), photo=str(r.path)
        )
        for r in usable
    ]
    of, labels, missing = assign_occasions(sightings, occasion)
    left += [(Path(m.sighting.photo), m.reason) for m in missing]
    keep = [k for k, label in enumerate(of) if label is not None]
    usable = [usable[k] for k in keep]
    if len(usable) < 2 or len(labels) < 2:
        raise ReIDError(
            f"{len(usable)} dated photo(s) over {len(labels)} occasion(s): a survey "
            "estimate needs photos from at least two occasions (dates from EXIF "
            "or --dates)"
        )
    column = {label: j for j, label in enumerate(labels)}
    occasion_of = np.array([column[of[k]] for k in keep])
    p, kind, threshold = pair_scores(gallery, usable, options.progress)
    estimator = CLOSED_MODELS[model]
    grouping = cluster(p, threshold)
    aware, curve = None, []
    try:
        if kind.startswith("fused"):
            aware = error_aware_estimate(p, occasion_of, len(labels), threshold, estimator,
                                         draws=draws, seed=seed, grouping=grouping)  # fmt: skip
            naive = aware.naive
        else:
            naive = estimator(histories_of(grouping, occasion_of, len(labels)))
    except ValueError as exc:  # e.g. no animal caught twice: nothing to estimate from
        raise ReIDError(f"No {model} estimate from these photos: {exc}") from None
    if aware is not None:
        fused = read_fused(gallery)
        by_fmr = (fused.extra.get("fused_threshold_by_fmr") or {}) if fused else {}
        curve = threshold_curve(
            p,
            occasion_of,
            len(labels),
            [(float(f), float(t)) for f, t in by_fmr.items()],
            estimator,
        )
    return Survey(usable, occasion_of, labels, kind, threshold, naive, aware, curve, left, grouping)


def plot_threshold_curve(
    curve: Sequence[dict[str, Any]], path: Path, title: str, truth: int | None = None
) -> Path:
    """N-hat and its interval against the false-match rate the grouping threshold is
    calibrated at (log axis), with the number of individuals identified (and the true N of a
    simulation)."""
    from matplotlib.figure import Figure

    rows = [r for r in curve if r.get("n_hat") is not None]
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    x = [100 * r["fmr"] for r in rows]
    ax.plot(x, [r["n_hat"] for r in rows], "o-", label="N-hat")
    bounded = [r for r in rows if r["lcl"] is not None and r["ucl"] is not None]
    ax.fill_between(
        [100 * r["fmr"] for r in bounded],
        [r["lcl"] for r in bounded],
        [r["ucl"] for r in bounded],
        alpha=0.25,
        label="95 % interval",
    )
    ax.plot(
        [100 * r["fmr"] for r in curve],
        [r["individuals"] for r in curve],
        "s--",
        label="individuals identified",
    )
    if truth is not None:
        ax.axhline(truth, color="k", lw=1, label=f"true N = {truth}")
    ax.set_xscale("log")
    ax.set_xlabel("false-match rate the grouping threshold is calibrated at (%)")
    ax.set_ylabel("population size")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
