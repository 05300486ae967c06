"""Leave-one-individual-out (LOIO): can the model tell an individual it has never seen?

The paper proposed this test and did not run it. For each individual k of a seeded sample, k is
left out; k's photos are then queries that should be flagged NEW, while later photos of the other
individuals are queries that should be matched to them. Two modes:

``fast``
    A seeded share of the individuals (``test_fraction``) is left out of training; one model is
    trained on the earliest sightings of the rest, and each left-out individual in turn plays k.
    Two scenarios are scored from the same model. *Trained gallery*: the gallery is the trained
    individuals, as in the paper's test, but without a retraining per k. *Never-trained
    gallery*: the gallery is the other left-out individuals, enrolled without retraining, as
    new animals are in the field; this one measures how well the embedding generalises.
``retrain``
    Faithful to the paper: for each k, the models are retrained on every individual but k, and
    the gallery holds the same individuals the model learned (the trained-gallery scenario).

Methods, on the same splits in the same run: ``frozen backbone`` (the pretrained backbone's
pooled features, no fine-tuning, nearest neighbour), ``classifier`` (trained with cross-entropy
only: its softmax, the paper's approach, where the gallery is its classes; its features as an
embedding) and ``ours`` (classifier plus metric-learning embedding head: its embedding, and its
softmax). Each fold's threshold is calibrated as ``reid calibrate`` does it, at a target
false-match rate, and BAKS/BAUS are measured at that threshold: with never-trained individuals
(other than k) as the newcomers where there are some (``reid calibrate --model``), otherwise by
leave-one-individual-out on the gallery itself, which is optimistic when the model trained on
the gallery's individuals (retrain mode).

Within an individual, photos are split by sighting in time order: the earliest sightings are
enrolled in the gallery (and trained on), later ones are the known queries.
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_curve
from torch import nn

from reid.config import Config, from_dict, to_dict
from reid.errors import ReIDError
from reid.evaluation.metrics import openset_metrics, softmax_openset_metrics
from reid.features.checkpoint import LoadedModel, load_checkpoint
from reid.features.embedder import Embedder
from reid.gallery.openset import l2_normalize, loo_trials, threshold_for_fmr
from reid.io.datasets import Sample
from reid.training.loop import train

MODES = ("fast", "retrain")
REFERENCE = "frozen backbone"  # the baseline every other method is paired with
HEADLINE = ("auroc", "pooled_tpr_at_fmr_1", "pooled_tpr_at_fmr_5", "oscr", "rank1", "rank5", "map",
            "baks", "baus", "baks_baus_gmean")  # fmt: skip


@dataclass
class LoioSettings:
    mode: str = "fast"
    folds: int | None = None  # individuals k to leave out (seeded sample); None: all eligible
    test_fraction: float = 0.5  # fast mode: share of individuals never trained on
    enroll_fraction: float = 0.5  # per individual: earliest sightings enrolled, rest queried
    # fast mode: "enroll" trains on the trained individuals' enrolled photos (both scenarios);
    # "all" on all their photos (more data; only the never-trained gallery is then scored, as
    # the trained gallery's queries would be training photos)
    train_photos: str = "enroll"
    target_fmr: float = 0.05  # the calibrated threshold's false-match rate
    softmax_threshold: float = 0.5  # the softmax criterion has no gallery to calibrate on
    seed: int = 0
    baselines: bool = True
    classifier_baseline: bool = True  # with baselines: also train the classifier alone


@dataclass
class _Method:
    """Vectors (N, D) for the photos ``rows`` of the evaluation set, optional softmax."""

    name: str
    criterion: str  # "similarity" | "softmax"
    vectors: np.ndarray | None = None
    probs: np.ndarray | None = None  # (N, C) softmax over ``classes``
    classes: list[str] = field(default_factory=list)


@dataclass
class _Fold:
    k: str
    gallery: np.ndarray  # (G,) row indices into the evaluation set
    queries: np.ndarray  # (Q,) row indices


class _Features(nn.Module):
    """A ReIDModel's pooled backbone features (L2-normalised unless ``normalise`` is False) as
    its "embedding"."""

    def __init__(self, model: nn.Module, normalise: bool = True) -> None:
        super().__init__()
        self.model, self.normalise = model, normalise

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.model.features(x).float()
        f = F.normalize(f, dim=1) if self.normalise else f
        return f, f[:, :0]


def split_enroll_query(
    samples: Sequence[Sample], enroll_fraction: float
) -> tuple[list[int], list[int]]:
    """Indices (enroll, query): per individual, the earliest sightings (date, time, name order)
    are enrolled and the later ones queried; one-sighting individuals are enrolled only."""
    by_ind: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, s in enumerate(samples):
        by_ind[s.individual][s.group].append(i)
    enroll, query = [], []
    for groups in by_ind.values():
        order = sorted(groups, key=lambda g: min((samples[i].date, samples[i].time, str(
            samples[i].path)) for i in groups[g]))  # fmt: skip
        n_enroll = len(order) if len(order) == 1 else round(len(order) * enroll_fraction)
        n_enroll = min(max(n_enroll, 1), len(order))
        for j, g in enumerate(order):
            (enroll if j < n_enroll else query).extend(groups[g])
    return sorted(enroll), sorted(query)


def run_loio(
    samples: Sequence[Sample],
    cfg: Config,
    settings: LoioSettings,
    work: Path,
    *,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the benchmark; returns a JSON-ready dict with, per scenario, a per-method summary,
    per-fold rows, a by-condition breakdown and pooled ROC curves.

    ``cfg.data.label_column`` is the identity a match must get right; ``Sample.individual`` is
    the animal left out (for nyala, both flanks of one antelope).
    """
    if settings.mode not in MODES:
        raise ReIDError(f"LOIO mode {settings.mode!r} is unknown: use one of {', '.join(MODES)}.")
    if settings.train_photos not in ("enroll", "all"):
        raise ReIDError(
            f"LOIO train photos {settings.train_photos!r} is unknown: use enroll or all."
        )
    all_photos = settings.mode == "fast" and settings.train_photos == "all"
    t_start = time.perf_counter()
    rng = random.Random(settings.seed)
    samples = list(samples)
    individuals = sorted({s.individual for s in samples})
    if len(individuals) < 4:
        raise ReIDError(f"LOIO needs at least 4 individuals; the data has {len(individuals)}.")
    enroll, query = split_enroll_query(samples, settings.enroll_fraction)
    ev = _EvalSet(samples, cfg.data.label_column, enroll, query)
    if settings.mode == "fast":
        left_out, ks = fast_split(individuals, settings, rng)
    else:
        left_out = []
        ks = individuals if settings.folds is None else sorted(
            rng.sample(individuals, min(settings.folds, len(individuals))))  # fmt: skip
    trained_ids = [i for i in individuals if i not in set(left_out)]
    log(
        f"LOIO {settings.mode}: {len(individuals)} individuals, {len(ks)} folds; "
        f"{len(enroll)} enrolled / {len(query)} later query photos"
    )
    paths = [s.path for s in samples]
    timings: dict[str, float] = {}
    acc = {name: _Accumulator() for name in SCENARIOS}
    if settings.mode == "fast":
        rows = range(len(samples)) if all_photos else enroll
        train_rows = [i for i in rows if samples[i].individual in set(trained_ids)]
        train_set = [samples[i] for i in train_rows]
        methods = _frozen(cfg, paths, train_rows, ev.labels) if settings.baselines else []
        methods += _trained_methods(cfg, train_set, paths, work, settings, timings, log, progress)
        for k in ks:
            trained_fold = ev.fold(k, trained_ids)
            new_fold = ev.fold(k, left_out)
            # calibrated as `reid calibrate --model` does: never-trained individuals (here the
            # other left-out ones, never k) play the newcomers, so the threshold is honest
            newcomers = ev.enroll[np.isin(ev.animals[ev.enroll], [i for i in left_out if i != k])]
            for m in methods:
                if not all_photos:
                    _score_fold(m, trained_fold, ev, settings, acc[SCENARIOS[0]], newcomers)
                if m.criterion == "similarity" and len(left_out) > 2:
                    _score_fold(m, new_fold, ev, settings, acc[SCENARIOS[1]])
    else:
        frozen = _frozen(cfg, paths)[0] if settings.baselines else None
        for n, k in enumerate(ks, 1):
            log(f"fold {n}/{len(ks)}: retraining without {k}")
            others = [i for i in individuals if i != k]
            train_set = [samples[i] for i in enroll if samples[i].individual != k]
            methods = [frozen] if frozen else []
            methods += _trained_methods(cfg, train_set, paths, work / f"fold_{k}", settings,
                                        timings, log, progress)  # fmt: skip
            for m in methods:
                _score_fold(m, ev.fold(k, others), ev, settings, acc[SCENARIOS[0]])
    return {
        "mode": settings.mode,
        "settings": vars(settings),
        "config": to_dict(cfg),
        "num_photos": len(samples),
        "num_individuals": len(individuals),
        "num_trained_individuals": len(trained_ids) - (settings.mode == "retrain"),
        "num_left_out_individuals": len(left_out),
        "num_enrolled": len(enroll),
        "num_query": len(query),
        "folds": ks,
        "scenarios": {name: a.result() for name, a in acc.items() if a.per_fold},
        "train_seconds": timings,
        "seconds": round(time.perf_counter() - t_start, 1),
    }


def fast_split(
    individuals: list[str], settings: LoioSettings, rng: random.Random
) -> tuple[list[str], list[str]]:
    """Fast mode: (individuals left out of training, the folds k among them), seeded by ``rng``;
    the split `run_loio` and `score_vectors` use."""
    shuffled = individuals[:]
    rng.shuffle(shuffled)
    n_out = min(len(shuffled) - 2, max(2, round(len(shuffled) * settings.test_fraction)))
    left_out = sorted(shuffled[:n_out])
    ks = left_out if settings.folds is None else sorted(
        rng.sample(left_out, min(settings.folds, len(left_out))))  # fmt: skip
    return left_out, ks


def score_vectors(
    samples: Sequence[Sample],
    vectors: dict[str, np.ndarray],
    label_column: str,
    settings: LoioSettings | None = None,
) -> dict[str, Any]:
    """Score precomputed vectors on fast mode's never-trained gallery, split as ``run_loio``
    splits (same seed, same left-out individuals, same enrolled and query photos).

    ``vectors`` maps a method name to (N, D) vectors, one row per sample in order (normalised
    here). For embeddings made elsewhere (another backbone, another tool), or for probing which
    features carry identity. Returns the scenario result that ``markdown`` and ``plot_roc``
    read: summary, per-fold rows and pooled ROC per method.
    """
    settings = settings or LoioSettings()
    samples = list(samples)
    for name, v in vectors.items():
        if v.ndim != 2 or len(v) != len(samples):
            raise ReIDError(
                f"Vectors of {name!r} have shape {v.shape}: give one row per photo "
                f"({len(samples)} rows)."
            )
    individuals = sorted({s.individual for s in samples})
    left_out, ks = fast_split(individuals, settings, random.Random(settings.seed))
    if len(left_out) < 3:  # k, and at least two others in the gallery
        raise ReIDError(
            f"{len(left_out)} of {len(individuals)} individuals are left out; the never-trained "
            "gallery needs at least 3: give more individuals or a larger test fraction."
        )
    enroll, query = split_enroll_query(samples, settings.enroll_fraction)
    ev = _EvalSet(samples, label_column, enroll, query)
    acc = _Accumulator()
    for name, v in vectors.items():
        v = v.astype(np.float32)
        method = _Method(name, "similarity", l2_normalize(v)[0])
        for k in ks:
            _score_fold(method, ev.fold(k, left_out), ev, settings, acc)
    return acc.result()


SCENARIOS = ("trained gallery", "never-trained gallery")
SCENARIO_TEXT = {
    "trained gallery": "the gallery holds the individuals the model trained on (their earliest "
    "sightings); known queries are their later photos, unknown queries every photo of the "
    "never-trained individual k (the paper's test). The threshold is calibrated with the other "
    "never-trained individuals as newcomers in fast mode, on the gallery itself (optimistic) in "
    "retrain mode",
    "never-trained gallery": "the gallery holds individuals the model never trained on, enrolled "
    "without retraining (how new animals are added in the field); known queries are their later "
    "photos, unknown queries every photo of k, another never-trained individual",
}


class _EvalSet:
    """Label, animal and sighting arrays over all photos, and the enroll / query split."""

    def __init__(self, samples: list[Sample], label_col: str, enroll, query) -> None:
        self.samples = samples
        self.labels = np.array([s.get(label_col) for s in samples], dtype=object)
        self.animals = np.array([s.individual for s in samples], dtype=object)
        self.groups = np.array([s.group for s in samples], dtype=object)
        self.enroll, self.query = np.array(enroll, int), np.array(query, int)

    def fold(self, k: str, gallery_ids: Sequence[str]) -> _Fold:
        """Gallery: enrolled photos of ``gallery_ids`` (k excluded); queries: their later photos
        and every photo of k."""
        ids = set(gallery_ids) - {k}
        in_g = np.array([a in ids for a in self.animals])
        is_k = self.animals == k
        gallery = self.enroll[in_g[self.enroll]]
        queries = np.r_[np.flatnonzero(is_k), self.query[in_g[self.query]]]
        return _Fold(k, gallery, queries)


class _Accumulator:
    def __init__(self) -> None:
        self.per_fold: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.pooled: dict[str, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
        # method -> known query row -> its top-1 hit in each fold it was queried in
        self.hits: dict[str, dict[int, list[bool]]] = defaultdict(lambda: defaultdict(list))
        self.animal_of: dict[int, str] = {}  # known query row -> its animal (bootstrap cluster)

    def result(self) -> dict[str, Any]:
        conditions = sorted({c for rows in self.per_fold.values() for r in rows
                             for c in r["by_condition"]})  # fmt: skip
        summary = {name: _mean_rows(rows) for name, rows in self.per_fold.items()}
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
        }

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


def _trained_methods(
    cfg, train_set, paths, work, settings, timings, log, progress
) -> list[_Method]:
    """Train ours (and the classifier-only baseline) on ``train_set``; embed ``paths``."""
    variants = [("ours", cfg)]
    if settings.baselines and settings.classifier_baseline:
        ce_only = from_dict(to_dict(cfg))
        ce_only.loss.metric_weight = 0.0
        # the study's classifier as it was: no whitened head, no linear probe
        ce_only.model.whitening, ce_only.train.head_init = "none", "random"
        variants.append(("classifier", ce_only))
    out = []
    for name, c in variants:
        t0 = time.perf_counter()
        log(f"  training {name} on {len(train_set)} photos")
        result = train(c, train_set, work / name, progress=progress, log=lambda _m: None)
        timings[name] = round(timings.get(name, 0.0) + time.perf_counter() - t0, 1)
        log(f"  trained {name}: {result.epochs_run} epochs, best {result.best_epoch}, "
            f"{time.perf_counter() - t0:.0f} s")  # fmt: skip
        loaded = load_checkpoint(result.run_dir)
        res = Embedder(loaded).embed_paths(paths, progress=False)
        _check_all_embedded(res, paths)
        probs = torch.softmax(torch.from_numpy(res.logits), 1).numpy()
        if name == "ours":
            out.append(_Method("ours", "similarity", res.embeddings))
        else:  # cross-entropy only: its embedding head never learned; use its features
            feats = Embedder(_features_of(loaded)).embed_paths(paths, progress=False)
            out.append(_Method("classifier features", "similarity", feats.embeddings))
        # its classes are the trained gallery's individuals: the paper's criterion applies there
        out.append(_Method(f"{name} softmax", "softmax", probs=probs, classes=loaded.classes))
    return out


def _frozen(
    cfg: Config, paths: list[Path], train_rows: Sequence[int] = (), labels: np.ndarray | None = None
) -> list[_Method]:
    """The frozen pretrained backbone's pooled features; with model.whitening=learned (and
    ``train_rows``), also those features whitened as ours is, fitted on the same training photos'
    ``labels``: what the whitening alone gives, without any fine-tuning."""
    from reid.features.model import build_model
    from reid.features.whiten import fit_whitening

    model = build_model(cfg, 1).eval()
    loaded = LoadedModel(model, ["-"], cfg, "frozen", Path("."), {})
    res = Embedder(_features_of(loaded, normalise=False)).embed_paths(paths, progress=False)
    _check_all_embedded(res, paths)
    methods = [_Method(REFERENCE, "similarity", l2_normalize(res.embeddings)[0])]
    if cfg.model.whitening == "learned" and len(train_rows) and labels is not None:
        rows = list(train_rows)
        w = fit_whitening(res.embeddings[rows], labels[rows], cfg.model.embedding_dim,
                          cfg.model.whitening_shrinkage)  # fmt: skip
        whitened = l2_normalize(w.apply(res.embeddings))[0]
        methods.append(_Method("frozen + whitening", "similarity", whitened))
    return methods


def _features_of(loaded: LoadedModel, normalise: bool = True) -> LoadedModel:
    model = loaded.model
    return LoadedModel(_Features(model, normalise).eval(), loaded.classes, loaded.config,
                       loaded.fingerprint + "-features", loaded.path, {})  # fmt: skip


def _check_all_embedded(res, paths) -> None:
    if res.failures:
        raise ReIDError(
            f"{len(res.failures)} photos could not be read (first: {res.failures[0]}); "
            "remove them from the data set so every method sees the same photos."
        )


def _score_fold(
    m: _Method,
    fold: _Fold,
    ev: _EvalSet,
    settings: LoioSettings,
    acc: _Accumulator,
    newcomers: np.ndarray | None = None,
) -> None:
    """Score one fold. The threshold is calibrated on the gallery by leave-one-individual-out,
    or, given ``newcomers`` (rows of never-trained photos, k's excluded), with their best
    gallery scores as the impostor scores."""
    q_labels = ev.labels[fold.queries]
    g_labels = ev.labels[fold.gallery]
    is_known = np.isin(q_labels, g_labels)  # (Q,) the query's individual is in the gallery
    by_condition: dict[str, Any] = {}
    if m.criterion == "similarity":
        g = m.vectors[fold.gallery]
        sims = m.vectors[fold.queries] @ g.T
        label_idx = np.unique(g_labels, return_inverse=True)[1]
        group_idx = np.unique(ev.groups[fold.gallery], return_inverse=True)[1]
        if newcomers is not None and len(newcomers):
            impostors = (m.vectors[newcomers] @ g.T).max(1)
        else:  # as `reid calibrate` does without model information
            impostors = loo_trials(g, label_idx, group_idx).impostor_scores
        threshold = threshold_for_fmr(impostors, settings.target_fmr)
        row = openset_metrics(sims, g_labels, q_labels, threshold=threshold)
        scores = sims.max(1)  # an individual's score is its best photo's
        # the top photo's individual is the rank-1 one (its score is the best)
        top1 = g_labels[sims.argmax(1)] == q_labels
        for q, hit, known in zip(fold.queries, top1, is_known, strict=True):
            if known:
                acc.hits[m.name][int(q)].append(bool(hit))
                acc.animal_of[int(q)] = ev.animals[q]
        conditions = np.array([ev.samples[i].condition for i in fold.queries])
        for c in sorted(set(conditions) - {""}):
            keep = conditions == c
            by_condition[c] = openset_metrics(sims[keep], g_labels, q_labels[keep],
                                              threshold=threshold)  # fmt: skip
    else:
        p = m.probs[fold.queries]
        predicted = [m.classes[j] for j in p.argmax(1)]
        row = softmax_openset_metrics(
            p.max(1), predicted, q_labels, m.classes, threshold=settings.softmax_threshold
        )
        scores = p.max(1)
    acc.pooled[m.name].append((scores, is_known))
    acc.per_fold[m.name].append({"k": fold.k, **row, "by_condition": by_condition})


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


def plot_roc(result: dict[str, Any], path: Path, title: str) -> Path:
    """One panel per scenario, one ROC curve (known = positive) per method, pooled over folds,
    AUROC (mean over folds) in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = result["scenarios"]
    fig, axes = plt.subplots(1, len(scenarios), figsize=(5.5 * len(scenarios), 5), squeeze=False)
    for ax, (scenario, sc) in zip(axes[0], scenarios.items(), strict=True):
        for name, roc in sc["roc"].items():
            if roc is None:
                continue
            auc = sc["summary"][name].get("auroc")
            ax.plot(roc["fpr"], roc["tpr"], label=f"{name} (AUROC {auc:.3f})", lw=1.6)
        ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
        ax.set_xlabel("false-match rate (never-seen photos accepted)")
        ax.set_ylabel("known photos accepted")
        ax.set_xlim(0, 1), ax.set_ylim(0, 1.01)
        ax.set_title(f"{title}\n{scenario}", fontsize=10)
        ax.legend(loc="lower right", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _fmt(r: dict[str, Any], key: str) -> str:
    v = r.get(key)
    if v is None:
        return "-"
    std = r.get(f"{key}_std")
    return f"{v:.3f}" + (f" ± {std:.3f}" if std and key in ("auroc", "rank1") else "")


def _paired_lines(paired: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown: each method minus the reference, with its 95 % bootstrap interval."""
    if not paired:
        return []

    def diff(p: dict[str, Any], key: str) -> str:
        ci = p[f"{key}_ci95"]
        if p[f"{key}_diff"] is None:
            return "- | -"
        verdict = "" if ci is None or ci[0] <= 0 <= ci[1] else " (interval excludes 0)"
        return f"{p[f'{key}_diff']:+.3f} | " + (
            f"{ci[0]:+.3f} to {ci[1]:+.3f}{verdict}" if ci else "-"
        )

    ref = next(iter(paired.values()))
    lines = [
        "",
        f"Paired with `{ref['reference']}` (same queries, same folds): the difference and its "
        f"95 % bootstrap interval — rank-1 over {ref['num_known_queries']} known queries, "
        f"resampling their {ref['num_query_animals']} animals; AUROC over {ref['num_folds']} "
        "folds. An interval that holds 0 means this split cannot tell the two apart.",
        "",
        "| method | rank-1 difference | 95 % interval | AUROC difference | 95 % interval |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, p in paired.items():
        lines.append(f"| {name} | {diff(p, 'rank1')} | {diff(p, 'auroc')} |")
    return lines


def markdown(result: dict[str, Any], title: str) -> str:
    """Per scenario: a summary table per method, a by-condition table when the photos have
    conditions, and the per-fold table of ``ours``."""
    s = result["settings"]
    lines = [
        f"{title}. Mode **{result['mode']}**: {result['num_individuals']} individuals, "
        f"{len(result['folds'])} folds (individuals k left out), {result['num_enrolled']} "
        f"enrolled and {result['num_query']} later query photos. Mean over folds (± std), "
        "except TPR at 1 %/5 % false-match rate, measured on all folds' scores together (one "
        "fold's dozen unknown photos cannot tell 1 % from 5 %); "
        f"BAKS/BAUS at each fold's calibrated threshold (target FMR {s['target_fmr']:.0%}; "
        f"softmax criteria at a fixed {s['softmax_threshold']}).",
    ]
    if s.get("train_photos") == "all" and result["mode"] == "fast":
        lines.append(
            "The model trained on every photo of the trained individuals, so only the "
            "never-trained gallery is scored."
        )
    for scenario, sc in result["scenarios"].items():
        lines += [
            "", f"### {scenario}", "", SCENARIO_TEXT[scenario] + ".", "",
            "| method | AUROC | TPR@1% | TPR@5% | OSCR | rank-1 | rank-5 | mAP | BAKS | BAUS | "
            "gmean |",
            "| --- | " + "--- | " * 10,
        ]  # fmt: skip
        for name, r in sc["summary"].items():
            lines.append(f"| {name} | " + " | ".join(_fmt(r, k) for k in HEADLINE) + " |")
        lines += _paired_lines(sc.get("paired", {}))
        if sc["by_condition"].get("ours"):
            lines += ["", "By lighting condition of the query photo (`ours`; mixed = all):", "",
                      "| condition | AUROC | rank-1 | BAKS | BAUS |",
                      "| --- | --- | --- | --- | --- |"]  # fmt: skip
            rows = {**sc["by_condition"]["ours"], "mixed": sc["summary"]["ours"]}
            for c, r in rows.items():
                lines.append(f"| {c} | {_fmt(r, 'auroc')} | {_fmt(r, 'rank1')} | "
                             f"{_fmt(r, 'baks')} | {_fmt(r, 'baus')} |")  # fmt: skip
        rows = sc["per_fold"].get("ours", [])
        if rows:
            lines += ["", "Per fold (`ours`): the individual k left out, and how it fared.", "",
                      "| k | AUROC | rank-1 | k's photos flagged NEW | known accepted | "
                      "threshold |", "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
            for r in rows:
                lines.append(
                    f"| {r['k']} | {_fmt(r, 'auroc')} | {_fmt(r, 'rank1')} | "
                    f"{_fmt(r, 'unknown_flagged')} | {_fmt(r, 'known_accepted')} | "
                    f"{_fmt(r, 'threshold')} |"
                )
    c = result.get("config", {})
    setup = (
        f"{c['model']['backbone']}, {c['data']['input_size']} px, up to {c['train']['epochs']} "
        f"epochs, photo_norm {c['model'].get('photo_norm', 'none')}; "
        if c
        else ""
    )
    lines += ["", f"Seed {s['seed']}; {setup}training time (s): "
              f"{json.dumps(result['train_seconds'])}; total {result['seconds']} s."]  # fmt: skip
    return "\n".join(lines)
