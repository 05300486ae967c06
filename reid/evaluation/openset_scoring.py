"""Open-set scoring of vectors on leave-one-individual-out folds: per-fold metrics at a calibrated
threshold, pooled ROC and TPR over folds, and paired bootstrap intervals against a reference.

The numbers behind the LOIO benchmark (:mod:`reid.evaluation.loio`), kept apart from the training
and the protocol so that vectors made elsewhere are scored the same way.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import roc_curve

from reid.evaluation.metrics import openset_metrics, softmax_openset_metrics
from reid.gallery.openset import loo_trials_of, threshold_for_fmr
from reid.gallery.threshold import TrialScores
from reid.io.datasets import ImageRecord

REFERENCE = "frozen backbone"  # the baseline every other method is paired with
HEADLINE = ("auroc", "pooled_tpr_at_fmr_1", "pooled_tpr_at_fmr_5", "oscr", "rank1", "rank5", "map",
            "baks", "baus", "baks_baus_gmean")  # fmt: skip


PairScores = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Method:
    """How a method scores the photos of the evaluation set: ``vectors`` (N, D), L2-normalised
    (similarity = cosine), or ``pair_scores(rows (Q,), columns (G,)) -> (Q, G)`` for a score
    that is not a dot product (local features, a fused probability); or a softmax."""

    name: str
    criterion: str  # "similarity" | "softmax"
    vectors: np.ndarray | None = None
    probs: np.ndarray | None = None  # (N, C) softmax over ``classes``
    classes: list[str] = field(default_factory=list)
    pair_scores: PairScores | None = None
    # leave-one-individual-out trials among gallery photos ``rows`` (labels, groups as indices)
    # for a score whose rows depend on the whole gallery, so that removing an individual's
    # columns (what loo_trials_of does) would not remove its influence; None: from ``sims``
    loo_trials: Callable[[np.ndarray, np.ndarray, np.ndarray], TrialScores] | None = None

    def sims(self, rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """(Q, G) similarity of photos ``rows`` to photos ``columns``."""
        if self.pair_scores is not None:
            return np.asarray(self.pair_scores(rows, columns), dtype=np.float32)
        return self.vectors[rows] @ self.vectors[columns].T


@dataclass
class Fold:
    k: str
    gallery: np.ndarray  # (G,) row indices into the evaluation set
    queries: np.ndarray  # (Q,) row indices


class EvalSet:
    """Label, animal and sighting arrays over all photos, and the enroll / query split."""

    def __init__(self, samples: list[ImageRecord], label_col: str, enroll, query) -> None:
        self.samples = samples
        self.labels = np.array([s.get(label_col) for s in samples], dtype=object)
        self.animals = np.array([s.individual for s in samples], dtype=object)
        self.groups = np.array([s.group for s in samples], dtype=object)
        self.enroll, self.query = np.array(enroll, int), np.array(query, int)

    def fold(self, k: str, gallery_ids: Sequence[str]) -> Fold:
        """Gallery: enrolled photos of ``gallery_ids`` (k excluded); queries: their later photos
        and every photo of k."""
        ids = set(gallery_ids) - {k}
        in_g = np.array([a in ids for a in self.animals])
        is_k = self.animals == k
        gallery = self.enroll[in_g[self.enroll]]
        queries = np.r_[np.flatnonzero(is_k), self.query[in_g[self.query]]]
        return Fold(k, gallery, queries)


class Accumulator:
    def __init__(self) -> None:
        self.per_fold: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.pooled: dict[str, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
        # method -> known query row -> its top-1 hit in each fold it was queried in
        self.hits: dict[str, dict[int, list[bool]]] = defaultdict(lambda: defaultdict(list))
        self.animal_of: dict[int, str] = {}  # known query row -> its animal (bootstrap cluster)
        self.global_methods: set[str] = set()  # methods scoring by an embedding's cosine

    def result(self) -> dict[str, Any]:
        conditions = sorted({c for rows in self.per_fold.values() for r in rows
                             for c in r["by_condition"]})  # fmt: skip
        summary = {name: _mean_rows(rows) for name, rows in self.per_fold.items()}
        best = self.best_global(summary)
        for name, parts in self.pooled.items():
            summary.setdefault(name, {}).update(_pooled_tpr(parts))
        return {
            "summary": summary,
            "by_condition": {
                name: {
                    c: _mean_rows([r["by_condition"][c] for r in rows if c in r["by_condition"]])
                    for c in conditions
                }
                for name, rows in self.per_fold.items()
                if conditions
            },  # fmt: skip
            "per_fold": {
                name: [
                    {k: v for k, v in r.items() if k not in ("roc", "by_condition")} for r in rows
                ]
                for name, rows in self.per_fold.items()
            },  # fmt: skip
            "roc": {name: _pooled_roc(parts) for name, parts in self.pooled.items()},
            "paired": self.paired(),
            "paired_best_global": self.paired(best) if best != REFERENCE else {},
        }

    def best_global(self, summary: dict[str, dict[str, Any]]) -> str:
        """The global (embedding) method with the highest mean AUROC: the one the local and
        fused methods must also beat (REFERENCE when there is no other)."""
        scored = [(summary[n].get("auroc") or 0.0, n) for n in self.global_methods if n in summary]
        return max(scored)[1] if scored else REFERENCE

    def paired(self, reference: str = REFERENCE) -> dict[str, dict[str, Any]]:
        """Each similarity method minus ``reference`` on the same queries and folds: rank-1
        (per known query, its hit rate over the folds; bootstrap over animals, as one animal's
        photos are not independent) and AUROC (per fold; bootstrap over folds), each with a
        95 % interval. Empty without the reference."""
        if reference not in self.hits:
            return {}
        ref_auroc = {r["k"]: r.get("auroc") for r in self.per_fold[reference]}
        out = {}
        for name, hits in self.hits.items():
            if name == reference:
                continue
            rows = sorted(set(hits) & set(self.hits[reference]))
            diff = np.array([np.mean(hits[q]) - np.mean(self.hits[reference][q]) for q in rows])
            animals = [self.animal_of[q] for q in rows]
            folds = [(r.get("auroc"), ref_auroc.get(r["k"])) for r in self.per_fold[name]]
            auroc = np.array([a - b for a, b in folds if a is not None and b is not None])
            out[name] = {
                "reference": reference,
                "rank1_diff": _round(diff.mean()) if len(diff) else None,
                "rank1_ci95": paired_bootstrap_ci(diff, animals),
                "num_known_queries": len(rows),
                "num_query_animals": len(set(animals)),
                "auroc_diff": _round(auroc.mean()) if len(auroc) else None,
                "auroc_ci95": paired_bootstrap_ci(auroc, range(len(auroc))),
                "num_folds": len(auroc),
            }
        return out


def paired_bootstrap_ci(
    diffs: np.ndarray,
    clusters: Sequence[Any],
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> list[float] | None:
    """Percentile bootstrap interval of the mean of paired differences ``diffs`` (N,),
    resampling whole ``clusters`` (N labels: photos of one animal move together). None for
    fewer than 2 clusters. Seeded: the same inputs give the same interval."""
    diffs = np.asarray(diffs, dtype=float)
    ids = np.unique(np.asarray(list(clusters), dtype=object), return_inverse=True)[1]
    n = int(ids.max()) + 1 if len(ids) else 0
    if n < 2:
        return None
    sums = np.bincount(ids, weights=diffs, minlength=n)
    counts = np.bincount(ids, minlength=n).astype(float)
    picks = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    means = sums[picks].sum(1) / counts[picks].sum(1)
    tail = (1 - confidence) / 2 * 100
    return [_round(np.percentile(means, tail)), _round(np.percentile(means, 100 - tail))]


def _round(x: float) -> float:
    return round(float(x), 4)


def score_fold(
    m: Method,
    fold: Fold,
    ev: EvalSet,
    acc: Accumulator,
    *,
    target_fmr: float,
    softmax_threshold: float = 0.5,
    newcomers: np.ndarray | None = None,
) -> None:
    """Score one fold into ``acc``. A similarity method's threshold is calibrated at
    ``target_fmr`` on the gallery by leave-one-individual-out, or, given ``newcomers`` (rows of
    never-trained photos, k's excluded), with their best gallery scores as the impostor scores;
    a softmax method is judged at the fixed ``softmax_threshold``."""
    q_labels = ev.labels[fold.queries]
    is_known = np.isin(q_labels, ev.labels[fold.gallery])  # (Q,) its individual is in the gallery
    if m.criterion == "similarity":
        row, scores = _score_similarity(m, fold, ev, acc, is_known, target_fmr, newcomers)
    else:
        p = m.probs[fold.queries]
        predicted = [m.classes[j] for j in p.argmax(1)]
        row = softmax_openset_metrics(
            p.max(1), predicted, q_labels, m.classes, threshold=softmax_threshold
        )
        row["by_condition"] = {}
        scores = p.max(1)
    acc.pooled[m.name].append((scores, is_known))
    acc.per_fold[m.name].append({"k": fold.k, **row})


def _score_similarity(
    m: Method,
    fold: Fold,
    ev: EvalSet,
    acc: Accumulator,
    is_known: np.ndarray,
    target_fmr: float,
    newcomers: np.ndarray | None,
) -> tuple[dict[str, Any], np.ndarray]:
    """The fold's metrics row (with ``by_condition``) and each query's score (Q,); records
    the known queries' top-1 hits in ``acc`` for the paired comparison."""
    q_labels, g_labels = ev.labels[fold.queries], ev.labels[fold.gallery]
    if m.vectors is not None:
        acc.global_methods.add(m.name)
    sims = m.sims(fold.queries, fold.gallery)
    if newcomers is not None and len(newcomers):
        impostors = m.sims(newcomers, fold.gallery).max(1)
    else:  # as `reid calibrate` does without model information
        label_idx = np.unique(g_labels, return_inverse=True)[1]
        group_idx = np.unique(ev.groups[fold.gallery], return_inverse=True)[1]
        g = fold.gallery
        if m.loo_trials is not None:
            impostors = m.loo_trials(g, label_idx, group_idx).impostor_scores
        else:
            impostors = loo_trials_of(
                lambda r, c: m.sims(g[r], g[c]), label_idx, group_idx
            ).impostor_scores
    threshold = threshold_for_fmr(impostors, target_fmr)
    row = openset_metrics(sims, g_labels, q_labels, threshold=threshold)
    # the top photo's individual is the rank-1 one (its score is the best)
    top1 = g_labels[sims.argmax(1)] == q_labels
    for q, hit, known in zip(fold.queries, top1, is_known, strict=True):
        if known:
            acc.hits[m.name][int(q)].append(bool(hit))
            acc.animal_of[int(q)] = ev.animals[q]
    conditions = np.array([ev.samples[i].condition for i in fold.queries])
    row["by_condition"] = {
        c: openset_metrics(
            sims[conditions == c], g_labels, q_labels[conditions == c], threshold=threshold
        )  # fmt: skip
        for c in sorted(set(conditions) - {""})
    }
    return row, sims.max(1)  # an individual's score is its best photo's


def _mean_rows(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean (and standard deviation) over folds of every numeric metric."""
    out: dict[str, Any] = {"folds": len(rows)}
    if not rows:
        return out
    for key, value in rows[0].items():
        if key in ("k", "roc", "by_condition") or isinstance(value, (str, dict, list)):
            continue
        vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        if vals:
            out[key] = round(float(np.mean(vals)), 4)
            if key in HEADLINE:
                out[f"{key}_std"] = round(float(np.std(vals)), 4)
    return out


def _pooled_tpr(parts: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, float | None]:
    """TPR at 1 % and 5 % false-match rate over the scores of every fold together.

    A fold's unknowns are the photos of one individual (about a dozen), too few to tell 1 %
    from 5 % (both allow no false match), so these rates are measured on all folds' scores:
    parts are (scores (Q,), is_known (Q,) bool) per fold.
    """
    scores = np.concatenate([s for s, _ in parts]).astype(np.float32)
    known = np.concatenate([k for _, k in parts])
    out: dict[str, float | None] = {}
    for pct in (1, 5):
        ok = known.any() and (~known).any()
        t = threshold_for_fmr(scores[~known], pct / 100) if ok else None
        out[f"pooled_tpr_at_fmr_{pct}"] = float(np.mean(scores[known] >= t)) if ok else None
    return out


def _pooled_roc(parts: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any] | None:
    scores = np.concatenate([s for s, _ in parts])
    known = np.concatenate([k for _, k in parts])
    if known.all() or not known.any():
        return None
    fpr, tpr, _ = roc_curve(known, scores)
    keep = np.unique(np.r_[0, np.linspace(0, len(fpr) - 1, min(300, len(fpr))).astype(int)])
    return {"fpr": np.round(fpr[keep], 5).tolist(), "tpr": np.round(tpr[keep], 5).tolist()}
