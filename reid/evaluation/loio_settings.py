"""The LOIO benchmark's options and how they split a data set: which individuals are left out,
which photos are enrolled and which queried. No torch here, so a front end can list the options
(defaults and help) without loading a model.
"""

from __future__ import annotations

import argparse
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from reid.errors import ReIDError
from reid.io.datasets import ImageRecord

MODES = ("fast", "retrain")
TRAIN_PHOTOS = ("enroll", "all")


def _opt(default: Any, text: str, **extra: Any) -> Any:
    """A settings field whose help text both front ends show (``benchmarks/loio.py`` and
    ``reid benchmark loio``)."""
    return field(default=default, metadata={"help": text, **extra})


@dataclass
class LoioSettings:
    """Every option of the LOIO benchmark, with its default and help text: the one place that
    ``benchmarks/loio.py`` and ``reid benchmark loio`` both fill. Bad values raise with the
    option's name."""

    mode: str = _opt(
        "fast",
        "fast: one model, folds over never-trained individuals; retrain: a "
        "model per left-out individual (the paper's test).",
        choices=MODES,
    )
    folds: int | None = _opt(None, "Individuals left out, a seeded sample (default: all).")
    test_fraction: float = _opt(0.5, "fast mode: share of individuals never trained on.")
    enroll_fraction: float = _opt(
        0.5, "Per individual: share of (earliest) sightings enrolled, the rest queried."
    )
    train_photos: str = _opt(
        "enroll",
        "fast mode: train on the trained individuals' enrolled "
        "photos (enroll: both scenarios) or on all their photos (all: more "
        "data, never-trained gallery only).",
        choices=TRAIN_PHOTOS,
    )
    target_fmr: float = _opt(0.05, "False-match rate the threshold is calibrated for.")
    softmax_threshold: float = _opt(
        0.5, "Fixed threshold of the softmax criteria (they have no gallery to calibrate on)."
    )
    seed: int = _opt(0, "Seeds the split, the folds and training.")
    baselines: bool = _opt(True, "Also score the frozen backbone and the classifier alone.")
    classifier_baseline: bool = _opt(True, "With baselines: also train the classifier alone "
                                     "(about half the time).")  # fmt: skip
    train: bool = _opt(True, "fast mode: train ours; --no-train scores the frozen backbone "
                       "(and local scorers) only.")  # fmt: skip
    local: str = _opt("", "fast mode: local scorers to add, comma-separated (sift, xfeat), "
                      "each alone and fused with the frozen backbone's global score.")  # fmt: skip
    shortlist: int = _opt(50, "With --local: photos per query the global score shortlists "
                          "for the local scorers.")  # fmt: skip
    lnbnn_k: int = _opt(0, "With --local: weigh each correspondence by its distinctiveness "
                        "(LNBNN) against the k-th nearest descriptor of the photo's "
                        "shortlist; 0: count every correspondence as 1.")  # fmt: skip
    foreground: float = _opt(1.0, "With --local: keep only the keypoints in this most attended "
                             "fraction of each photo (the frozen backbone's attention: the "
                             "animal, not the scene); 1: keep all.")  # fmt: skip
    oversample: int = _opt(1, "With --foreground: extract this many times the usual number of "
                           "keypoints, keep at most the usual number on the animal.")  # fmt: skip
    upright: bool = _opt(False, "With --local: the photos are upright (flanks, faces), so "
                         "XFeat describes one copy, not four turned ones.")  # fmt: skip

    @property
    def local_scorers(self) -> list[str]:
        """The names given to ``local``, in order."""
        return [s.strip() for s in self.local.split(",") if s.strip()]

    def __post_init__(self) -> None:
        for f in fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise ReIDError(
                    f"LOIO {f.name.replace('_', ' ')} {getattr(self, f.name)!r} is unknown: use "
                    f"one of {', '.join(choices)}."
                )
        if self.oversample < 1:
            raise ReIDError(f"LOIO oversample is {self.oversample}: give a whole number >= 1.")
        if not 0 < self.foreground <= 1:
            raise ReIDError(
                f"LOIO foreground is {self.foreground}: give the fraction of each photo to keep, "
                "more than 0 and at most 1."
            )
        for name in ("test_fraction", "enroll_fraction", "target_fmr"):
            if not 0 < getattr(self, name) < 1:
                raise ReIDError(
                    f"LOIO {name.replace('_', ' ')} is {getattr(self, name)}: give a number "
                    "between 0 and 1."
                )

    @staticmethod
    def help(name: str) -> str:
        """The help text of option ``name``."""
        return next(f.metadata["help"] for f in fields(LoioSettings) if f.name == name)


_TYPES = {"int": int, "float": float, "str": str}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One command-line option per settings field, its default and help from the field:
    ``--mode``, ``--test-fraction``, ``--baselines/--no-baselines`` ..."""
    for f in fields(LoioSettings):
        flag, text = "--" + f.name.replace("_", "-"), f.metadata["help"]
        if isinstance(f.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default,
                                help=text)  # fmt: skip
        else:
            kind = _TYPES[str(f.type).split(" |")[0]]
            parser.add_argument(flag, type=kind, default=f.default, help=text,
                                choices=f.metadata.get("choices"))  # fmt: skip


def from_arguments(args: argparse.Namespace) -> LoioSettings:
    """The settings that ``add_arguments``' options were given."""
    return LoioSettings(**{f.name: getattr(args, f.name) for f in fields(LoioSettings)})


def split_enroll_query(
    samples: Sequence[ImageRecord], enroll_fraction: float
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
