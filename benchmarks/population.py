"""Simulated mark-recapture surveys with photos through the real matching stage: does the
interval for N cover the true N, when identification is taken as certain and when its errors
are carried into the estimate (reid/ecology/uncertain.py)?

A population of N synthetic salamanders (each photographed at a random rotation, one photo per
possible occasion) and a separate set of calibration individuals are rendered once. Every photo
is embedded by the frozen backbone and every pair on each photo's shortlist scored by SIFT, as
`reid discover` does (no LNBNN); the scores are calibrated to P(same) and fused on the
calibration individuals' pairs, and the grouping threshold is set on them at each target
false-match rate. Each survey then draws who is caught on each occasion (an animal's capture
probability uniform in [p_lo, p_hi]), groups the photos taken (reid.matching.discover), builds
capture histories and estimates N (M0) twice: naively from the grouping, and error-aware by
multiple imputation of the identifications.

    python -m benchmarks.population --surveys 20
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks import datasets
from benchmarks.common import RESULTS_DIR, hardware
from reid.config import load_config
from reid.ecology.closed import m0
from reid.ecology.uncertain import error_aware_estimate, threshold_curve
from reid.gallery.openset import threshold_for_fmr
from reid.gallery.threshold import loo_trials_of

FMRS = (0.01, 0.02, 0.05, 0.1, 0.2)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--population", type=int, default=150, help="true N")
    ap.add_argument("--occasions", type=int, default=5)
    ap.add_argument("--calibration", type=int, default=40, help="calibration individuals")
    ap.add_argument("--p-lo", type=float, default=0.3)
    ap.add_argument("--p-hi", type=float, default=0.5)
    ap.add_argument("--surveys", type=int, default=20)
    ap.add_argument("--draws", type=int, default=30, help="imputations per survey")
    # each photo's pairs scored with its B nearest by the frozen backbone's cosine, which is
    # blind to turned heads: at 50 of 750 photos most same-animal pairs were never scored
    # (N over-estimated fourfold), so the default scores 300 of them
    ap.add_argument("--shortlist", type=int, default=300)
    ap.add_argument("--target-fmr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="population_sim")
    ap.add_argument("--work", type=Path, default=Path("/tmp/reid_bench/population"))
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    t0 = time.perf_counter()
    p, occasion_of_photo, animal_of_photo, thresholds = pair_probabilities(args)
    rng = np.random.default_rng(args.seed)
    surveys = []
    for s in range(args.surveys):
        capture_p = rng.uniform(args.p_lo, args.p_hi, args.population)
        caught = rng.random((args.population, args.occasions)) < capture_p[:, None]
        rows = np.flatnonzero(caught[animal_of_photo, occasion_of_photo])
        sub, occ = p[np.ix_(rows, rows)], occasion_of_photo[rows]
        r = error_aware_estimate(sub, occ, args.occasions, thresholds[args.target_fmr], m0,
                                 draws=args.draws, seed=args.seed * 1000 + s)  # fmt: skip
        naive = r.naive.n_hat
        surveys.append({
            "survey": s, "photos": int(len(rows)),
            "caught": int(len(np.unique(animal_of_photo[rows]))),
            "naive": [naive.estimate, naive.lcl, naive.ucl],
            "aware": [r.n_hat.estimate, r.n_hat.lcl, r.n_hat.ucl],
            "identification_share": r.between_share, "failed_draws": r.failed_draws,
        })  # fmt: skip
        print(
            f"survey {s}: {len(rows)} photos, naive {naive.estimate:.1f} "
            f"[{naive.lcl:.1f}, {naive.ucl:.1f}], error-aware {r.n_hat.estimate:.1f} "
            f"[{r.n_hat.lcl:.1f}, {r.n_hat.ucl:.1f}]",
            flush=True,
        )
    curve = survey_curve(args, p, occasion_of_photo, animal_of_photo, thresholds)
    result = summarise(args, surveys, curve, thresholds, time.perf_counter() - t0)
    write(args.name, result)


def pair_probabilities(args: argparse.Namespace):
    """(P, P) fused P(same) over the population's photos, each photo's occasion and animal,
    and the grouping threshold at each false-match rate."""
    from reid.evaluation.local_methods import local_methods
    from reid.evaluation.loio import _frozen

    total = args.population + args.calibration
    samples, _ = datasets.load("synthetic", args.work, individuals=total,
                               images_per=args.occasions, dates=args.occasions,
                               seed=args.seed, rotate=True)  # fmt: skip
    animals = np.array([s.individual for s in samples], dtype=object)
    names = sorted(set(animals))
    population, calibration = names[: args.population], names[args.population :]
    groups = np.array([s.group for s in samples], dtype=object)
    cfg = load_config("field", [f"train.seed={args.seed}"])
    frozen = _frozen(cfg, [s.path for s in samples])[0]
    test_rows = np.flatnonzero(np.isin(animals, population))
    cal_rows = np.flatnonzero(np.isin(animals, calibration))
    methods, report = local_methods(
        samples, animals, groups, frozen.vectors, test_rows=test_rows, calibration_rows=cal_rows,
        scorers=["sift"], shortlist=args.shortlist, upright=False, work=args.work / "pairs",
        target_fmr=args.target_fmr, progress=True,
    )  # fmt: skip
    fused = methods[1]
    cal = cal_rows
    label_idx = np.unique(animals[cal], return_inverse=True)[1]
    group_idx = np.unique(groups[cal], return_inverse=True)[1]
    trials = loo_trials_of(lambda r, c: fused.sims(cal[r], cal[c]), label_idx, group_idx)
    thresholds = {f: float(threshold_for_fmr(trials.impostor_scores, f)) for f in FMRS}
    if args.target_fmr not in thresholds:
        thresholds[args.target_fmr] = float(threshold_for_fmr(trials.impostor_scores,
                                                              args.target_fmr))  # fmt: skip
    p = fused.sims(test_rows, test_rows)
    np.fill_diagonal(p, 1.0)
    cosine = frozen.vectors[test_rows] @ frozen.vectors[test_rows].T
    # occasion = the photo's rank among its animal's photos in time (one photo per occasion)
    occasion = np.zeros(len(test_rows), np.int64)
    for a in population:
        rows = np.flatnonzero(animals[test_rows] == a)
        order = np.argsort([samples[test_rows[r]].date + str(samples[test_rows[r]].path)
                            for r in rows])  # fmt: skip
        occasion[rows[order]] = np.arange(len(rows))
    animal = np.unique(animals[test_rows], return_inverse=True)[1]
    np.savez_compressed(
        args.work / "pool.npz", p=p, cosine=cosine, occasion=occasion, animal=animal
    )  # for looking at the failures
    print(
        f"pairs scored; fused ECE held out {report.ece_held_out.get('fused')}; thresholds "
        f"{json.dumps({str(k): round(v, 3) for k, v in thresholds.items()})}",
        flush=True,
    )
    return p, occasion, animal, thresholds


def survey_curve(args, p, occasion_of_photo, animal_of_photo, thresholds) -> list[dict]:
    """N against the grouping threshold on the first survey's photos (seeded as survey 0)."""
    rng = np.random.default_rng(args.seed)
    capture_p = rng.uniform(args.p_lo, args.p_hi, args.population)
    caught = rng.random((args.population, args.occasions)) < capture_p[:, None]
    rows = np.flatnonzero(caught[animal_of_photo, occasion_of_photo])
    return threshold_curve(p[np.ix_(rows, rows)], occasion_of_photo[rows], args.occasions,
                           [(f, thresholds[f]) for f in FMRS], m0)  # fmt: skip


def summarise(args, surveys, curve, thresholds, seconds) -> dict:
    n = args.population

    def stats(key: str) -> dict:
        est = np.array([s[key][0] for s in surveys])
        # an interval missing (N at its boundary) covers nothing
        covered = [s[key][1] is not None and s[key][1] <= n <= s[key][2] for s in surveys]
        width = np.array([s[key][2] - s[key][1] for s in surveys if s[key][1] is not None])
        return {"coverage": float(np.mean(covered)), "bias": float(est.mean() - n),
                "relative_bias": float(est.mean() / n - 1),
                "rmse": float(np.sqrt(np.mean((est - n) ** 2))),
                "mean_width": float(width.mean())}  # fmt: skip

    return {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "thresholds": {str(k): v for k, v in thresholds.items()},
        "naive": stats("naive"), "aware": stats("aware"), "surveys": surveys,
        "curve": curve, "seconds": round(seconds, 1), "hardware": hardware(),
    }  # fmt: skip


def write(name: str, result: dict) -> None:
    import sys

    from reid.discovery import plot_threshold_curve

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(result, indent=2, default=str))
    s, n = result["settings"], result["settings"]["population"]
    png = plot_threshold_curve(
        result["curve"],
        RESULTS_DIR / f"{name}_threshold.png",
        "N against the identification threshold (survey 0)",
        truth=n,
    )
    nv, aw = result["naive"], result["aware"]
    lines = [
        f"# {name}",
        "",
        f"{s['surveys']} simulated surveys of a closed population of N = {n} synthetic "
        f"salamanders, {s['occasions']} occasions, capture probability uniform in "
        f"[{s['p_lo']}, {s['p_hi']}] per animal; each capture is a different photo at a random "
        f"rotation, identified by the real matching stage (frozen backbone shortlist of "
        f"{s['shortlist']} (all pairs when at least the photos), SIFT, fused P(same) "
        f"calibrated on {s['calibration']} other "
        f"individuals), grouped at the threshold calibrated at a {s['target_fmr']:.0%} "
        "false-match rate; N estimated by M0 (full likelihood, log-normal interval).",
        "",
        "| estimate | coverage of the true N (95 % interval) | bias | relative bias | RMSE | "
        "mean interval width |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| naive (identification taken as certain) | {nv['coverage']:.2f} | {nv['bias']:+.1f} | "
        f"{nv['relative_bias']:+.1%} | {nv['rmse']:.1f} | {nv['mean_width']:.1f} |",
        f"| error-aware (multiple imputation, {s['draws']} draws, Rubin's rules) | "
        f"{aw['coverage']:.2f} | {aw['bias']:+.1f} | {aw['relative_bias']:+.1%} | "
        f"{aw['rmse']:.1f} | {aw['mean_width']:.1f} |",
        "",
        "N against the grouping threshold, survey 0:",
        "",
        "| false-match rate | threshold | individuals identified | N-hat | 95 % interval |",
        "| --- | --- | --- | --- | --- |",
        *[
            f"| {r['fmr']:.0%} | {r['threshold']:.3f} | {r['individuals']:.0f} | "
            + _estimate_cells(r)
            for r in result["curve"]
        ],  # fmt: skip
        "",
        f"![N against the threshold]({png.name})",
        "",
        f"- command: `python -m benchmarks.population {' '.join(sys.argv[1:])}`",
        f"- seconds: {result['seconds']}",
        f"- hardware: {json.dumps(result['hardware'])}",
    ]
    (RESULTS_DIR / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:12]))


def _estimate_cells(r: dict) -> str:
    if r["n_hat"] is None:
        return "not estimable | |"
    if r["lcl"] is None or r["ucl"] is None:
        return f"{r['n_hat']:.1f} | none (at the boundary) |"
    return f"{r['n_hat']:.1f} | {r['lcl']:.1f} - {r['ucl']:.1f} |"


if __name__ == "__main__":
    main()
