"""LOIO methods that match the pattern itself: local scorers on the global shortlist, and their
calibrated fusion with the global score.

For each photo of the never-trained individuals (and of a calibration sample of the trained
ones), the frozen backbone's cosine shortlists its ``shortlist`` most similar photos; each local
scorer (SIFT, XFeat) counts the verified correspondences of those pairs. Pairs outside the
shortlist score 0 (a re-ranker never sees them).

Fusion: every scorer's raw pair score, the global cosine included, is calibrated to P(same
individual) on shortlisted pairs of the TRAINED individuals' photos (none of them is ever
queried or enrolled in the never-trained gallery, so the calibration is honest), and the fused
score of a pair is the mean of those probabilities, mapped to a probability again by a Platt
fit on the same pairs (a monotone map: the order stays the mean's). Held-out pairs of the
never-trained individuals measure how well the calibration holds (expected calibration error,
reliability plot).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reid.evaluation.openset_scoring import Method
from reid.gallery import ImageRecord
from reid.gallery.threshold import TrialScores, loo_trials_of
from reid.matching.calibration import expected_calibration_error, reliability_plot
from reid.matching.fused import FusionCalibration
from reid.matching.fusion import fit_logodds, fuse
from reid.matching.local import make_scorer
from reid.matching.local.foreground import masked_all
from reid.matching.pairs import (
    extract_all,
    lnbnn_normalisers,
    nearest_rows,
    pair_matrix,
    score_pairs,
    shortlist_pairs,
)
from reid.matching.roles import combined_trials, measure_roles, ranked_decided

COSINE = "cosine"


@dataclass
class LocalReport:
    """What the local scoring measured besides the open-set metrics (JSON-ready)."""

    scorers: list[str]
    shortlist: int
    num_pairs: int = 0
    num_calibration_pairs: dict[str, int] = field(default_factory=dict)
    ece_held_out: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    stacking_weights: dict[str, float] = field(default_factory=dict)
    lnbnn_k: int = 0
    reliability_png: str = ""
    roles: dict[str, Any] = field(default_factory=dict)
    foreground: float = 1.0
    oversample: int = 1
    discovery: dict[str, Any] = field(default_factory=dict)


def local_methods(
    samples: Sequence[ImageRecord],
    labels: np.ndarray,
    groups: np.ndarray,
    global_vectors: np.ndarray,
    *,
    test_rows: Sequence[int],
    calibration_rows: Sequence[int],
    scorers: Sequence[str],
    shortlist: int,
    upright: bool,
    work: Path,
    lnbnn_k: int = 0,
    foreground: float = 1.0,
    oversample: int = 1,
    heat_of: Callable[[list[int]], np.ndarray] | None = None,
    heat_key: str = "",
    enrolled: np.ndarray | None = None,
    target_fmr: float = 0.05,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> tuple[list[Method], LocalReport]:
    """One raw method per local scorer and the ``fused`` method, over all photos of ``samples``.

    Args:
        labels, groups: (N,) identity and sighting group of every photo.
        global_vectors: (N, D) float32, L2-normalised: the frozen backbone's embedding, which
            shortlists the pairs and is the global scorer of the fusion.
        test_rows: photos the folds query and enroll (the never-trained individuals').
        calibration_rows: photos whose shortlisted pairs fit the calibrators (trained ones').
        upright: the photos are upright (flanks), so XFeat describes one copy, not four.
        lnbnn_k: > 0: each correspondence weighted by LNBNN against the photo's shortlist
            (normaliser: the k-th nearest pooled descriptor; see ``pairs.lnbnn_normalisers``).
        foreground: < 1: keep only each photo's keypoints in this most attended fraction of it
            (:mod:`reid.matching.local.foreground`), from ``oversample`` times the usual number
            extracted, the usual number at most; ``heat_of(rows)`` gives the (len(rows), h, w)
            attention maps of photos ``rows``; ``heat_key`` names the model that draws them (the
            maps are cached under it).
        enrolled: (N,) bool, the photos the protocol enrolls (the rest are later queries): the
            ``guarded`` method's trials among calibration photos follow the same split.
        target_fmr: the false-match rate of the thresholds at which discovery cuts its groups.
    """
    report = LocalReport(list(scorers), int(shortlist), lnbnn_k=int(lnbnn_k),
                         foreground=float(foreground), oversample=int(oversample))  # fmt: skip
    n = len(samples)
    test_pairs = shortlist_pairs(global_vectors, test_rows, shortlist)
    cal_pairs = shortlist_pairs(global_vectors, calibration_rows, shortlist)
    pairs = np.concatenate([test_pairs, cal_pairs])
    report.num_pairs = len(pairs)
    raw = {COSINE: np.einsum("pd,pd->p", global_vectors[pairs[:, 0]], global_vectors[pairs[:, 1]])}
    for name in scorers:
        settings = {"rotations": 1} if (upright and name == "xfeat") else {}
        budget = None
        if foreground < 1 and oversample > 1:  # more extracted, the usual number kept on the animal
            key = "n_features" if name == "sift" else "top_k"
            budget = int(getattr(make_scorer(name, **settings), key))
            settings[key] = budget * oversample
        scorer = make_scorer(name, **settings)
        t0 = time.perf_counter()
        rows = np.unique(pairs)
        subset = [samples[i] for i in rows]
        found = extract_all(scorer, subset, cache=work / "local_cache", progress=progress)
        features: list = [None] * n
        for i, f in zip(rows, found, strict=True):
            features[int(i)] = f
        if foreground < 1 and heat_of is not None:
            heat = _cached_heat(heat_of, samples, work, heat_key)
            features = masked_all(features, heat, foreground, max_keypoints=budget)
        t1 = time.perf_counter()
        normalisers = None
        if lnbnn_k > 0:
            near = nearest_rows(global_vectors, rows, shortlist, groups)
            normalisers = lnbnn_normalisers(features, near, lnbnn_k)
        variant = "" if foreground >= 1 else f"foreground={foreground}"
        raw[name] = _cached_scores(scorer, features, pairs, samples, work, progress, normalisers,
                                   variant=variant)  # fmt: skip
        report.seconds[name] = round(time.perf_counter() - t0, 1)
        log(f"  {name}: {len(rows)} photos in {t1 - t0:.0f} s, {len(pairs)} pairs in "
            f"{time.perf_counter() - t1:.0f} s")  # fmt: skip
    is_cal = np.r_[np.zeros(len(test_pairs), bool), np.ones(len(cal_pairs), bool)]
    same = labels[pairs[:, 0]] == labels[pairs[:, 1]]
    other_sighting = groups[pairs[:, 0]] != groups[pairs[:, 1]]
    fit_on = is_cal & other_sighting
    # the one recipe `reid calibrate` uses too: isotonic per scorer, the mean, a final Platt fit
    fusion = FusionCalibration.fit({s: raw[s][fit_on] for s in raw}, same[fit_on])
    report.num_calibration_pairs = {"same": int(same[fit_on].sum()),
                                    "different": int((~same[fit_on]).sum())}  # fmt: skip
    probs = fusion.probabilities(raw)
    fused = fusion.fuse(probs)
    # stacking: log-odds weights per scorer fitted on the same pairs, so a scorer that does
    # not separate the calibration pairs gets little say (a guard against local evidence that
    # matches backgrounds)
    weights, bias = fit_logodds({s: p[fit_on] for s, p in probs.items()}, same[fit_on])
    stacked = fuse(probs, "logodds", weights, bias=bias)
    report.stacking_weights = {s: round(w, 3) for s, w in weights.items()}
    held = ~is_cal & other_sighting
    every = {**probs, "fused": fused, "stacked": stacked}
    report.ece_held_out = {
        s: round(expected_calibration_error(p[held], same[held]), 4) for s, p in every.items()
    }
    png = reliability_plot(
        fused[held],
        same[held],
        work / "fused_reliability.png",
        "fused P(same) on held-out pairs (never-trained individuals)",
    )
    report.reliability_png = str(png)
    methods = [_matrix_method(s, pair_matrix(n, pairs, raw[s]), global_vectors) for s in scorers]
    names = "+".join([*scorers, "frozen"])
    methods.append(_matrix_method(f"fused ({names})", pair_matrix(n, pairs, fused)))
    methods.append(_matrix_method(f"stacked ({names})", pair_matrix(n, pairs, stacked)))
    methods.append(_guarded(methods, global_vectors, labels, groups, calibration_rows, enrolled,
                            report))  # fmt: skip
    frozen = Method("frozen backbone", "similarity", vectors=global_vectors)
    report.discovery = {
        m.name: discovery_scores(m, labels, groups, test_rows, calibration_rows, target_fmr)
        for m in (frozen, methods[len(scorers)])  # the frozen cosine and fused
    }
    return methods, report


def discovery_scores(
    method: Method,
    labels: np.ndarray,
    groups: np.ndarray,
    test_rows: Sequence[int],
    calibration_rows: Sequence[int],
    target_fmr: float,
) -> dict[str, Any]:
    """Discovery (:mod:`reid.matching.discover`) of the never-trained individuals: all their
    photos, as one batch of newcomers, grouped by ``method``'s pair scores and cut at its NEW
    threshold at ``target_fmr``, calibrated by leave-one-individual-out trials among the
    calibration photos (as ``reid calibrate`` does on a gallery). Adjusted Rand index against
    the true individuals, proposed and true counts."""
    from sklearn.metrics import adjusted_rand_score

    from reid.gallery.openset import threshold_for_fmr
    from reid.matching.discover import cluster, count_error

    cal, test = np.asarray(calibration_rows), np.asarray(test_rows)
    label_idx = np.unique(labels[cal], return_inverse=True)[1]
    group_idx = np.unique(groups[cal], return_inverse=True)[1]
    trials = loo_trials_of(lambda r, c: method.sims(cal[r], cal[c]), label_idx, group_idx)
    threshold = threshold_for_fmr(trials.impostor_scores, target_fmr)
    found = cluster(method.sims(test, test), threshold)
    truth = np.unique(labels[test], return_inverse=True)[1]
    return {"ari": round(float(adjusted_rand_score(truth, found)), 4),
            "proposed": int(len(np.unique(found))), "true": int(len(np.unique(truth))),
            "count_error": count_error(found, truth), "threshold": round(float(threshold), 4),
            "photos": int(len(test))}  # fmt: skip


def _guarded(
    methods: list[Method],
    global_vectors: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    calibration_rows: Sequence[int],
    enrolled: np.ndarray | None,
    report: LocalReport,
) -> Method:
    """The ``guarded`` method: the score that names the individual and the one that calls NEW
    chosen separately (:mod:`reid.matching.roles`) by leave-one-individual-out trials among the
    calibration photos (trained individuals, never queried here; their later photos querying
    their enrolled ones, as the folds do), the frozen backbone keeping a job unless another
    score beats it by more than ``roles.MARGIN``, so that local evidence is used only for the
    job it did better on other individuals."""
    frozen = Method("frozen", "similarity", vectors=global_vectors)
    # learned global methods (the whitened backbone) are fitted on these very photos, so their
    # trials would be in-sample: the frozen cosine is the global candidate
    every = {m.name: m for m in [frozen, *methods]}
    cal = np.asarray(calibration_rows, dtype=np.int64)
    roles = measure_roles(
        {name: (lambda r, c, m=m: m.sims(cal[r], cal[c])) for name, m in every.items()},
        labels[cal], groups[cal], fallback="frozen",
        enrolled=None if enrolled is None else enrolled[cal],
    )  # fmt: skip
    report.roles = roles.to_dict()
    rank, decide = every[roles.rank_by], every[roles.decide_by]
    name = f"guarded (rank: {roles.rank_by}; NEW: {roles.decide_by})"

    def loo_trials(rows: np.ndarray, label_idx: np.ndarray, group_idx: np.ndarray) -> TrialScores:
        def trials(m: Method) -> TrialScores:
            return loo_trials_of(lambda r, c: m.sims(rows[r], rows[c]), label_idx, group_idx)

        return combined_trials(trials(rank), trials(decide))

    return Method(name, "similarity", pair_scores=ranked_decided(rank.sims, decide.sims, groups),
                  loo_trials=loo_trials)  # fmt: skip


def _cached_scores(
    scorer: Any,
    features: list,
    pairs: np.ndarray,
    samples: Sequence[ImageRecord],
    work: Path,
    progress: bool,
    normalisers: dict[int, np.ndarray] | None = None,
    variant: str = "",
) -> np.ndarray:
    """``score_pairs``, kept in ``work/local_cache`` under the scorer's settings, the photos and
    the pairs, so that a rerun (another fusion rule, another report) matches nothing again."""
    settings = json.dumps({k: v for k, v in vars(scorer).items() if not k.startswith("_")},
                          sort_keys=True, default=str)  # fmt: skip
    key = hashlib.sha1((settings + variant).encode())
    key.update("\n".join(str(s.path) for s in samples).encode())
    key.update(np.ascontiguousarray(pairs).tobytes())
    if normalisers is not None:
        for row in sorted(normalisers):
            key.update(normalisers[row].tobytes())
    file = work / "local_cache" / f"pairs_{scorer.name}_{key.hexdigest()[:16]}.npy"
    if file.is_file():
        return np.load(file)
    scores = score_pairs(scorer, features, pairs, progress=progress, normalisers=normalisers)
    np.save(file, scores)
    return scores


def _cached_heat(
    heat_of: Callable[[list[int]], np.ndarray],
    samples: Sequence[ImageRecord],
    work: Path,
    model_key: str,
) -> Callable[[list[int]], np.ndarray]:
    """``heat_of`` remembered in ``work/local_cache`` under ``model_key`` and the photo paths
    (one file per set of photos asked for)."""

    def cached(rows: list[int]) -> np.ndarray:
        names = "\n".join([model_key, *(str(samples[i].path) for i in rows)])
        key = hashlib.sha1(names.encode()).hexdigest()
        file = work / "local_cache" / f"attention_{key[:16]}.npy"
        if file.is_file():
            return np.load(file)
        maps = heat_of(rows)
        file.parent.mkdir(parents=True, exist_ok=True)
        np.save(file, maps)
        return maps

    return cached


def _matrix_method(name: str, matrix: np.ndarray, tie_break: np.ndarray | None = None) -> Method:
    """A similarity method reading (N, N) ``matrix``; pairs it holds no score for count 0.
    ``tie_break`` (N, D) unit vectors add 0.001 x their cosine: equal counts (most often 0)
    are then ordered by the global score instead of by gallery order."""
    filled = np.nan_to_num(matrix, nan=0.0)
    if tie_break is None:
        return Method(name, "similarity", pair_scores=lambda r, c: filled[np.ix_(r, c)])
    return Method(name, "similarity", pair_scores=lambda r, c: filled[np.ix_(r, c)]
                  + 1e-3 * (tie_break[r] @ tie_break[c].T))  # fmt: skip


def report_dict(report: LocalReport) -> dict[str, Any]:
    """The report as JSON-ready data."""
    from dataclasses import asdict

    return asdict(report)
