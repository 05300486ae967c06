"""Closed-set classification metrics, as the paper reports them: accuracy, Cohen's kappa and
macro precision/recall/F1, plus a per-individual table and the confusion matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    precision_recall_fscore_support,
)


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
    kappa = cohen_kappa_score(y_true, y_pred, labels=labels)
    return {
        "num_images": len(y_true),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        # kappa is undefined (0/0) when truth and prediction are one and the same single class
        "kappa": (1.0 if list(y_true) == list(y_pred) else 0.0)
        if np.isnan(kappa)
        else float(kappa),
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
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
