"""Closed-set classification metrics, as the paper reports them: accuracy, Cohen's kappa and
macro precision/recall/F1, plus a per-individual table and the confusion matrix.

Open-set metrics (pure numpy/sklearn): ``openset_scores`` and ``openset_metrics`` for a
similarity-to-gallery criterion, ``softmax_openset_metrics`` for a closed-set classifier whose
maximum softmax probability is the score (AUROC, TPR/CCR at a fixed FMR, OSCR, rank-k, mAP,
BAKS/BAUS)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    cohen_kappa_score,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from reid.gallery.threshold import threshold_for_fmr


def classification_metrics(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str] | None = None
) -> dict[str, Any]:
    """Metrics over ``labels`` (default: every label seen in truth or prediction, sorted).

    A test photo of an individual the model never learned counts as an error (its true label is
    a row of the confusion matrix that no prediction can hit), not as a dropped query.
    Returns accuracy, kappa, macro_precision/recall/f1, per_class rows, labels and the
    confusion matrix ((L, L) int, rows = truth, columns = prediction).
    """
    if len(y_true) != len(y_pred) or not len(y_true):
        raise ValueError("y_true and y_pred must be non-empty and of equal length")
    labels = list(labels) if labels is not None else sorted(set(y_true) | set(y_pred))
    p, r, f, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0
    )
    present = [k for k, lab in enumerate(labels) if lab in set(y_true)]  # macro over true classes
    # One and the same class in truth and prediction: kappa is 0/0 (sklearn warns and gives
    # nan); the prediction is then perfect, so 1.
    single = len(set(y_true) | set(y_pred)) == 1
    kappa = 1.0 if single else float(cohen_kappa_score(y_true, y_pred, labels=labels))
    return {
        "num_images": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "kappa": kappa,
        "macro_precision": float(np.mean(p[present])),
        "macro_recall": float(np.mean(r[present])),
        "macro_f1": float(np.mean(f[present])),
        "per_class": [
            {
                "label": lab,
                "support": int(support[k]),
                "precision": float(p[k]),
                "recall": float(r[k]),
                "f1": float(f[k]),
            }
            for k, lab in enumerate(labels)
        ],
        "labels": labels,
        "confusion": _confusion(y_true, y_pred, labels).tolist(),
    }


def _confusion(y_true: Sequence[str], y_pred: Sequence[str], labels: list[str]) -> np.ndarray:
    """(L, L) int counts, rows = truth, columns = prediction; pairs outside ``labels`` are left
    out. Counted here: sklearn's confusion_matrix warns on a correct 1 x 1 matrix."""
    index = {label: k for k, label in enumerate(labels)}
    out = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        if t in index and p in index:
            out[index[t], index[p]] += 1
    return out


# --------------------------------------------------------------------------------------------
# Open-set metrics
#
# Q queries, G gallery images of I distinct gallery individuals. A query whose true label is
# among the known labels (gallery individuals, or the classifier's classes) is KNOWN, any other
# query is UNKNOWN and should be flagged as a new individual. Every query gets one score (higher
# = more confident it is a known individual) and one predicted label. At a threshold t a query is
# accepted (decided as its predicted label) if score >= t, otherwise it is decided NEW.
# --------------------------------------------------------------------------------------------

_ROC_MAX_POINTS = 200


def _fmr_key(fmr: float) -> str:
    """0.01 -> "1", 0.05 -> "5", 0.005 -> "0.5": the FMR in percent without trailing zeros."""
    return f"{fmr * 100:g}"


def _check_sims(sims: np.ndarray, gallery_labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Validates sims ((Q, G), finite, Q > 0, G > 0) against gallery_labels ((G,)); returns
    sims as float64 (Q, G) and the gallery labels as an object array (G,)."""
    sims = np.asarray(sims, dtype=np.float64)
    if sims.ndim != 2:
        raise ValueError(f"sims must be a 2-D (queries, gallery) array, got shape {sims.shape}")
    q, g = sims.shape
    if q == 0 or g == 0:
        raise ValueError(f"sims needs at least one query and one gallery image, got {sims.shape}")
    labels = _as_object_array(gallery_labels)
    if len(labels) != g:
        raise ValueError(f"gallery_labels has {len(labels)} entries but sims has {g} columns")
    if not np.isfinite(sims).all():
        raise ValueError("sims contains NaN or infinite values")
    return sims, labels


def _as_object_array(values: Sequence[Any]) -> np.ndarray:
    """(N,) object array of the given labels (never a 2-D array, whatever the labels are)."""
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def _oscr(scores: np.ndarray, correct: np.ndarray, is_known: np.ndarray) -> float:
    """Area under the open-set classification rate curve (Dhamija et al., 2018).

    scores, correct, is_known: (Q,). For each threshold t in the distinct scores, x = FPR(t) =
    fraction of unknowns with score >= t and y = CCR(t) = fraction of knowns that are predicted
    correctly with score >= t; the points run from (0, 0) (t = +inf) to (1, closed-set rank-1),
    and the area is trapezoidal (a tie between known and unknown scores is a diagonal step).
    """
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    fpr = np.cumsum(~is_known[order]) / np.count_nonzero(~is_known)
    ccr = np.cumsum(correct[order]) / np.count_nonzero(is_known)
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # last index of each tie group
    x = np.r_[0.0, fpr[last], 1.0]
    y = np.r_[0.0, ccr[last], ccr[-1]]
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def _roc_points(is_known: np.ndarray, scores: np.ndarray) -> dict[str, list[float]]:
    """sklearn's ROC curve (known = positive) as {"fpr", "tpr"} lists rounded to 5 decimals and
    downsampled to at most 200 points, first and last kept."""
    fpr, tpr, _ = roc_curve(is_known, scores)
    if len(fpr) > _ROC_MAX_POINTS:
        idx = np.unique(np.linspace(0, len(fpr) - 1, _ROC_MAX_POINTS).round().astype(int))
        fpr, tpr = fpr[idx], tpr[idx]
    return {"fpr": [round(float(v), 5) for v in fpr], "tpr": [round(float(v), 5) for v in tpr]}


def _group_mean(values: np.ndarray, groups: np.ndarray) -> float | None:
    """Mean over the distinct ``groups`` (N,) of each group's mean of ``values`` (N,) (a
    balanced accuracy); None when N == 0."""
    if not len(values):
        return None
    _, inv = np.unique(groups, return_inverse=True)
    inv = inv.ravel()
    per_group = np.bincount(inv, weights=values.astype(np.float64)) / np.bincount(inv)
    return float(per_group.mean())


def _score_openset_metrics(
    scores: np.ndarray,
    predicted: np.ndarray,
    truth: np.ndarray,
    is_known: np.ndarray,
    *,
    threshold: float | None,
    fmr_points: Sequence[float],
) -> dict[str, Any]:
    """The metrics that need only one score and one prediction per query.

    scores (Q,) float, predicted (Q,) and truth (Q,) labels, is_known (Q,) bool. Returns
    num_known, num_unknown, auroc, threshold/tpr/ccr_at_fmr_{pct}, oscr, rank1, the threshold
    metrics (if ``threshold`` is given) and roc, as plain Python values (None where undefined).
    """
    scores = np.asarray(scores, dtype=np.float64)
    is_known = np.asarray(is_known, dtype=bool)
    correct = is_known & (predicted == truth)
    n_known, n_unknown = int(is_known.sum()), int((~is_known).sum())
    both = n_known > 0 and n_unknown > 0
    known_scores, unknown_scores = scores[is_known], scores[~is_known]
    known_correct = correct[is_known]

    out: dict[str, Any] = {"num_known": n_known, "num_unknown": n_unknown}
    out["auroc"] = float(roc_auc_score(is_known, scores)) if both else None
    for fmr in fmr_points:
        if not 0 <= fmr <= 1:
            raise ValueError(f"fmr_points must lie in [0, 1], got {fmr}")
        key = _fmr_key(fmr)
        # every unknown may pass (f = 1): the lowest score of all, so every known passes too
        t = (
            threshold_for_fmr(unknown_scores, fmr, lowest=scores.min(), dtype=np.float64)
            if n_unknown
            else None
        )
        ok = t is not None and n_known > 0
        out[f"threshold_at_fmr_{key}"] = t
        out[f"tpr_at_fmr_{key}"] = float(np.mean(known_scores >= t)) if ok else None
        out[f"ccr_at_fmr_{key}"] = (
            float(np.mean(known_correct & (known_scores >= t))) if ok else None
        )
    out["oscr"] = _oscr(scores, correct, is_known) if both else None
    out["rank1"] = float(known_correct.mean()) if n_known else None
    if threshold is not None:
        accepted = scores >= threshold
        decided_right = accepted & correct  # a NEW decision on a known query is wrong
        flagged = ~accepted
        baks = _group_mean(decided_right[is_known], truth[is_known])
        baus = _group_mean(flagged[~is_known], truth[~is_known])
        out["threshold"] = float(threshold)
        out["baks"] = baks
        out["baus"] = baus
        out["baks_baus_gmean"] = (
            math.sqrt(baks * baus) if baks is not None and baus is not None else None
        )
        out["known_accepted"] = float(decided_right[is_known].mean()) if n_known else None
        out["unknown_flagged"] = float(flagged[~is_known].mean()) if n_unknown else None
    out["roc"] = _roc_points(is_known, scores) if both else None
    return out


def openset_scores(
    sims: np.ndarray, gallery_labels: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores every gallery individual by its best image similarity.

    sims: (Q, G) cosine similarity of each query to each gallery image; gallery_labels: (G,).
    Returns ``individuals`` (I,) the sorted unique gallery labels (object array),
    ``per_individual`` (Q, I) float64 the best similarity of each query to each individual, and
    ``order`` (Q, I) int indices into ``individuals`` by descending score, ties broken stably
    (the individual that sorts first wins).
    """
    return _openset_scores(*_check_sims(sims, gallery_labels))


def _openset_scores(
    sims: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``openset_scores`` on already validated sims (Q, G) and gallery labels (G,)."""
    individuals = _as_object_array(sorted(set(labels)))
    index = {lab: i for i, lab in enumerate(individuals)}
    inv = np.fromiter((index[lab] for lab in labels), dtype=np.intp, count=len(labels))
    perm = np.argsort(inv, kind="stable")
    starts = np.searchsorted(inv[perm], np.arange(len(individuals)))
    per_individual = np.maximum.reduceat(sims[:, perm], starts, axis=1)
    order = np.argsort(-per_individual, axis=1, kind="stable")
    return individuals, per_individual, order


def openset_metrics(
    sims: np.ndarray,
    gallery_labels: Sequence[str],
    query_labels: Sequence[str],
    *,
    threshold: float | None = None,
    fmr_points: Sequence[float] = (0.01, 0.05),
    ranks: Sequence[int] = (1, 5),
) -> dict[str, Any]:
    """Open-set re-identification metrics of queries against a gallery.

    sims: (Q, G) cosine similarity of each query to each gallery image; gallery_labels: (G,);
    query_labels: (Q,) true labels. A query whose label is not a gallery label is UNKNOWN, the
    others are KNOWN. A query's score is its best individual's similarity (see
    ``openset_scores``), its prediction that individual.

    Returns (JSON-serialisable; None where a needed group is empty):

    - num_known, num_unknown, num_gallery_images, num_gallery_individuals
    - auroc: known vs unknown by score (known = positive)
    - for f in fmr_points, pct = 100 f: threshold_at_fmr_{pct} = the smallest t with at most
      floor(f * num_unknown) unknown scores >= t; tpr_at_fmr_{pct} = fraction of knowns with
      score >= t; ccr_at_fmr_{pct} = fraction of knowns with score >= t and predicted correctly
    - oscr: area under the CCR-vs-FPR curve over all thresholds (Dhamija et al., 2018)
    - rank{k} for k in ranks: closed-set, over knowns: true individual among the top k
    - map: image-level mean average precision over knowns (relevant = same label; sklearn AP,
      so tied similarities are one rank step)
    - if ``threshold`` is given (decision = prediction if score >= threshold else NEW):
      threshold, baks (mean over known individuals of their fraction decided correctly), baus
      (mean over unknown individuals of their fraction decided NEW), baks_baus_gmean,
      known_accepted, unknown_flagged
    - roc: {"fpr": [...], "tpr": [...]} (at most 200 points)
    """
    sims, gallery = _check_sims(sims, gallery_labels)
    individuals, per_individual, order = _openset_scores(sims, gallery)
    truth = _as_object_array(query_labels)
    n_queries = sims.shape[0]
    if len(truth) != n_queries:
        raise ValueError(f"query_labels has {len(truth)} entries but sims has {n_queries} rows")
    if any(int(k) != k or k < 1 for k in ranks):
        raise ValueError(f"ranks must be positive integers, got {tuple(ranks)}")
    index = {lab: i for i, lab in enumerate(individuals)}
    is_known = np.fromiter((lab in index for lab in truth), dtype=bool, count=n_queries)
    best = order[:, 0]
    scores = per_individual[np.arange(n_queries), best]
    base = _score_openset_metrics(
        scores, individuals[best], truth, is_known, threshold=threshold, fmr_points=fmr_points
    )
    roc = base.pop("roc")
    out: dict[str, Any] = {
        "num_known": base.pop("num_known"),
        "num_unknown": base.pop("num_unknown"),
        "num_gallery_images": int(sims.shape[1]),
        "num_gallery_individuals": len(individuals),
        **base,
    }

    known = np.flatnonzero(is_known)
    true_idx = np.array([index[lab] for lab in truth[known]], dtype=np.intp)
    position = (order[known] == true_idx[:, None]).argmax(axis=1)  # 0 = top individual
    for k in ranks:
        out[f"rank{int(k)}"] = float(np.mean(position < k)) if len(known) else None
    out["map"] = (
        float(np.mean([average_precision_score(gallery == truth[q], sims[q]) for q in known]))
        if len(known)
        else None
    )
    out["roc"] = roc
    return out


def softmax_openset_metrics(
    max_prob: np.ndarray,
    predicted: Sequence[str],
    query_labels: Sequence[str],
    known_labels: Sequence[str],
    *,
    threshold: float | None = None,
    fmr_points: Sequence[float] = (0.01, 0.05),
) -> dict[str, Any]:
    """Open-set metrics of a closed-set classifier, maximum softmax probability as the score.

    max_prob: (Q,) the classifier's maximum softmax probability per query; predicted: (Q,) its
    argmax class; query_labels: (Q,) true labels; known_labels: the classifier's classes (a
    query whose label is not among them is UNKNOWN). Returns num_known, num_unknown,
    num_known_classes and the same auroc / threshold,tpr,ccr_at_fmr_{pct} / oscr / rank1 /
    threshold metrics (baks, baus, ...) / roc as ``openset_metrics``; rank5 and map are None.
    """
    scores = np.asarray(max_prob, dtype=np.float64)
    if scores.ndim != 1 or not len(scores):
        raise ValueError(f"max_prob must be a non-empty 1-D array, got shape {scores.shape}")
    pred, truth = _as_object_array(predicted), _as_object_array(query_labels)
    if not len(pred) == len(truth) == len(scores):
        raise ValueError(
            f"max_prob, predicted and query_labels must have equal lengths, got "
            f"{len(scores)}, {len(pred)} and {len(truth)}"
        )
    if not np.isfinite(scores).all():
        raise ValueError("max_prob contains NaN or infinite values")
    classes = set(known_labels)
    if not classes:
        raise ValueError("known_labels must not be empty")
    is_known = np.fromiter((lab in classes for lab in truth), dtype=bool, count=len(truth))
    base = _score_openset_metrics(
        scores, pred, truth, is_known, threshold=threshold, fmr_points=fmr_points
    )
    roc = base.pop("roc")
    return {
        "num_known": base.pop("num_known"),
        "num_unknown": base.pop("num_unknown"),
        "num_known_classes": len(classes),
        **base,
        "rank5": None,
        "map": None,
        "roc": roc,
    }
