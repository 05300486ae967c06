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

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from reid.config import Config, from_dict, to_dict
from reid.errors import ReIDError
from reid.evaluation.loio_report import SCENARIO_TEXT, markdown, plot_roc
from reid.evaluation.loio_settings import (
    MODES,
    LoioSettings,
    fast_split,
    split_enroll_query,
)
from reid.evaluation.openset_scoring import (
    REFERENCE,
    Accumulator,
    EvalSet,
    Method,
    paired_bootstrap_ci,
    score_fold,
)
from reid.features.checkpoint import LoadedModel, load_checkpoint
from reid.features.embedder import Embedder
from reid.gallery.openset import l2_normalize
from reid.io.datasets import ImageRecord
from reid.training.loop import train

__all__ = [
    "MODES", "SCENARIOS", "SCENARIO_TEXT", "LoioSettings", "fast_split", "markdown",
    "paired_bootstrap_ci", "plot_roc", "run_loio", "score_vectors", "split_enroll_query",
]  # fmt: skip

SCENARIOS = ("trained gallery", "never-trained gallery")


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


@dataclass
class _Split:
    """The photos and individuals of one LOIO run, split as its settings say."""

    samples: list[ImageRecord]
    ev: EvalSet
    individuals: list[str]
    left_out: list[str]  # fast mode: never trained on
    ks: list[str]  # the folds: the individual k left out of each
    trained_ids: list[str] = field(init=False)

    def __post_init__(self) -> None:
        out = set(self.left_out)
        self.trained_ids = [i for i in self.individuals if i not in out]


@dataclass
class _Run:
    """What one run needs besides its split: config, settings, work folder, log, timings."""

    cfg: Config
    settings: LoioSettings
    work: Path
    log: Callable[[str], None]
    progress: bool
    timings: dict[str, float] = field(default_factory=dict)
    local_report: dict[str, Any] | None = None


def run_loio(
    samples: Sequence[ImageRecord],
    cfg: Config,
    settings: LoioSettings,
    work: Path,
    *,
    progress: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the benchmark; returns a JSON-ready dict with, per scenario, a per-method summary,
    per-fold rows, a by-condition breakdown and pooled ROC curves.

    ``cfg.data.label_column`` is the identity a match must get right; ``ImageRecord.individual`` is
    the animal left out (for nyala, both flanks of one antelope).
    """
    t_start = time.perf_counter()
    split = _split(list(samples), cfg.data.label_column, settings)
    log(
        f"LOIO {settings.mode}: {len(split.individuals)} individuals, {len(split.ks)} folds; "
        f"{len(split.ev.enroll)} enrolled / {len(split.ev.query)} later query photos"
    )
    run = _Run(cfg, settings, work, log, progress)
    acc = {name: Accumulator() for name in SCENARIOS}
    (_run_fast if settings.mode == "fast" else _run_retrain)(split, run, acc)
    return {
        "mode": settings.mode,
        "settings": asdict(settings),
        "config": to_dict(cfg),
        "num_photos": len(split.samples),
        "num_individuals": len(split.individuals),
        "num_trained_individuals": len(split.trained_ids) - (settings.mode == "retrain"),
        "num_left_out_individuals": len(split.left_out),
        "num_enrolled": len(split.ev.enroll),
        "num_query": len(split.ev.query),
        "folds": split.ks,
        "scenarios": {name: a.result() for name, a in acc.items() if a.per_fold},
        "train_seconds": run.timings,
        "local": run.local_report,
        "seconds": round(time.perf_counter() - t_start, 1),
    }


def _split(samples: list[ImageRecord], label_column: str, settings: LoioSettings) -> _Split:
    """Seeded: the individuals left out, the folds, and the enroll / query photos."""
    rng = random.Random(settings.seed)
    individuals = sorted({s.individual for s in samples})
    if len(individuals) < 4:
        raise ReIDError(f"LOIO needs at least 4 individuals; the data has {len(individuals)}.")
    enroll, query = split_enroll_query(samples, settings.enroll_fraction)
    ev = EvalSet(samples, label_column, enroll, query)
    if settings.mode == "fast":
        left_out, ks = fast_split(individuals, settings, rng)
    else:
        left_out = []
        ks = individuals if settings.folds is None else sorted(
            rng.sample(individuals, min(settings.folds, len(individuals))))  # fmt: skip
    return _Split(samples, ev, individuals, left_out, ks)


def _run_fast(split: _Split, run: _Run, acc: dict[str, Accumulator]) -> None:
    """One model trained on the trained individuals; every left-out k scored in both
    scenarios (the trained one only when the model did not train on its queries)."""
    settings, ev, left_out = run.settings, split.ev, split.left_out
    all_photos = settings.train_photos == "all"
    rows = range(len(split.samples)) if all_photos else ev.enroll
    trained = set(split.trained_ids)
    train_rows = [int(i) for i in rows if split.samples[i].individual in trained]
    paths = [s.path for s in split.samples]
    methods = _frozen(run.cfg, paths, train_rows, ev.labels) if settings.baselines else []
    if settings.train:
        methods += _trained_methods([split.samples[i] for i in train_rows], paths, run.work, run)
    if settings.local_scorers:
        methods += _local(split, run, methods)
    options = {"target_fmr": settings.target_fmr, "softmax_threshold": settings.softmax_threshold}
    for k in split.ks:
        trained_fold, new_fold = ev.fold(k, split.trained_ids), ev.fold(k, left_out)
        # calibrated as `reid calibrate --model` does: never-trained individuals (here the
        # other left-out ones, never k) play the newcomers, so the threshold is honest
        newcomers = ev.enroll[np.isin(ev.animals[ev.enroll], [i for i in left_out if i != k])]
        for m in methods:
            if not all_photos:
                score_fold(m, trained_fold, ev, acc[SCENARIOS[0]], newcomers=newcomers, **options)
            if m.criterion == "similarity" and len(left_out) > 2:
                score_fold(m, new_fold, ev, acc[SCENARIOS[1]], **options)


def _local(split: _Split, run: _Run, methods: list[Method]) -> list[Method]:
    """The local scorers and their fusion with the frozen backbone (see
    :mod:`reid.evaluation.local_methods`); calibrated on a seeded sample of trained individuals
    with as many photos as the never-trained ones have."""
    from reid.evaluation.local_methods import local_methods, report_dict

    frozen = next((m for m in methods if m.name == REFERENCE), None)
    if frozen is None:
        raise ReIDError("Local scorers shortlist by the frozen backbone: keep --baselines.")
    ev, animals = split.ev, split.ev.animals
    test_rows = np.flatnonzero(np.isin(animals, split.left_out))
    trained = list(split.trained_ids)
    random.Random(run.settings.seed).shuffle(trained)
    cal_rows: list[int] = []
    for individual in trained:
        if len(cal_rows) >= len(test_rows):
            break
        cal_rows += np.flatnonzero(animals == individual).tolist()
    run.log(f"  local scorers {run.settings.local_scorers}: {len(test_rows)} test photos, "
            f"{len(cal_rows)} calibration photos, shortlist {run.settings.shortlist}")  # fmt: skip
    local, report = local_methods(
        split.samples, ev.labels, ev.groups, frozen.vectors, test_rows=test_rows,
        calibration_rows=np.array(cal_rows), scorers=run.settings.local_scorers,
        shortlist=run.settings.shortlist, upright=run.settings.upright, work=run.work,
        lnbnn_k=run.settings.lnbnn_k, foreground=run.settings.foreground,
        oversample=run.settings.oversample,
        enrolled=np.isin(np.arange(len(split.samples)), ev.enroll),
        target_fmr=run.settings.target_fmr,
        heat_of=_attention_of(run.cfg, split.samples) if run.settings.foreground < 1 else None,
        heat_key=f"{run.cfg.model.backbone}-{run.cfg.model.pretrained}-{run.cfg.data.input_size}",
        progress=run.progress, log=run.log,
    )  # fmt: skip
    run.local_report = report_dict(report)
    return local


def _attention_of(cfg: Config, samples: Sequence[ImageRecord]) -> Callable:
    """``heat_of(rows)``: the frozen backbone's attention maps (rows, h, w) of those photos
    (:mod:`reid.matching.local.foreground`), for ``--foreground``."""
    from reid.features.model import build_model
    from reid.io.images import prepare_image
    from reid.matching.local.foreground import attention_maps

    model = build_model(cfg, 1).eval()

    def heat_of(rows: list[int]) -> np.ndarray:
        images = np.stack([prepare_image(samples[i].path, cfg.data.input_size) for i in rows])
        return attention_maps(model, images)

    return heat_of


def _run_retrain(split: _Split, run: _Run, acc: dict[str, Accumulator]) -> None:
    """For each k, the models retrained on everyone else; the trained-gallery scenario."""
    paths = [s.path for s in split.samples]
    frozen = _frozen(run.cfg, paths)[0] if run.settings.baselines else None
    options = {"target_fmr": run.settings.target_fmr,
               "softmax_threshold": run.settings.softmax_threshold}  # fmt: skip
    for n, k in enumerate(split.ks, 1):
        run.log(f"fold {n}/{len(split.ks)}: retraining without {k}")
        others = [i for i in split.individuals if i != k]
        train_set = [split.samples[i] for i in split.ev.enroll if split.samples[i].individual != k]
        methods = [frozen] if frozen else []
        methods += _trained_methods(train_set, paths, run.work / f"fold_{k}", run)
        for m in methods:
            score_fold(m, split.ev.fold(k, others), split.ev, acc[SCENARIOS[0]], **options)


def score_vectors(
    samples: Sequence[ImageRecord],
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
    ev = EvalSet(samples, label_column, enroll, query)
    acc = Accumulator()
    for name, v in vectors.items():
        v = v.astype(np.float32)
        method = Method(name, "similarity", l2_normalize(v)[0])
        for k in ks:
            score_fold(method, ev.fold(k, left_out), ev, acc, target_fmr=settings.target_fmr)
    return acc.result()


def _trained_methods(
    train_set: list[ImageRecord], paths: list[Path], work: Path, run: _Run
) -> list[Method]:
    """Train ours (and the classifier-only baseline) on ``train_set``; embed ``paths``."""
    cfg, settings = run.cfg, run.settings
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
        run.log(f"  training {name} on {len(train_set)} photos")
        result = train(c, train_set, work / name, progress=run.progress, log=lambda _m: None)
        run.timings[name] = round(run.timings.get(name, 0.0) + time.perf_counter() - t0, 1)
        run.log(f"  trained {name}: {result.epochs_run} epochs, best {result.best_epoch}, "
                f"{time.perf_counter() - t0:.0f} s")  # fmt: skip
        loaded = load_checkpoint(result.run_dir)
        res = Embedder(loaded).embed_paths(paths, progress=False)
        _check_all_embedded(res)
        probs = torch.softmax(torch.from_numpy(res.logits), 1).numpy()
        if name == "ours":
            out.append(Method("ours", "similarity", res.embeddings))
        else:  # cross-entropy only: its embedding head never learned; use its features
            feats = Embedder(_features_of(loaded)).embed_paths(paths, progress=False)
            out.append(Method("classifier features", "similarity", feats.embeddings))
        # its classes are the trained gallery's individuals: the paper's criterion applies there
        out.append(Method(f"{name} softmax", "softmax", probs=probs, classes=loaded.classes))
    return out


def _frozen(
    cfg: Config, paths: list[Path], train_rows: Sequence[int] = (), labels: np.ndarray | None = None
) -> list[Method]:
    """The frozen pretrained backbone's pooled features; with model.whitening=learned (and
    ``train_rows``), also those features whitened as ours is, fitted on the same training photos'
    ``labels``: what the whitening alone gives, without any fine-tuning."""
    from reid.features.model import build_model
    from reid.features.whiten import fit_whitening

    model = build_model(cfg, 1).eval()
    loaded = LoadedModel(model, ["-"], cfg, "frozen", Path("."), {})
    res = Embedder(_features_of(loaded, normalise=False)).embed_paths(paths, progress=False)
    _check_all_embedded(res)
    methods = [Method(REFERENCE, "similarity", l2_normalize(res.embeddings)[0])]
    if cfg.model.whitening == "learned" and len(train_rows) and labels is not None:
        rows = list(train_rows)
        w = fit_whitening(res.embeddings[rows], labels[rows], cfg.model.embedding_dim,
                          cfg.model.whitening_shrinkage)  # fmt: skip
        whitened = l2_normalize(w.apply(res.embeddings))[0]
        methods.append(Method("frozen + whitening", "similarity", whitened))
    return methods


def _features_of(loaded: LoadedModel, normalise: bool = True) -> LoadedModel:
    model = loaded.model
    return LoadedModel(_Features(model, normalise).eval(), loaded.classes, loaded.config,
                       loaded.fingerprint + "-features", loaded.path, {})  # fmt: skip


def _check_all_embedded(res) -> None:
    if res.failures:
        raise ReIDError(
            f"{len(res.failures)} photos could not be read (first: {res.failures[0]}); "
            "remove them from the data set so every method sees the same photos."
        )
