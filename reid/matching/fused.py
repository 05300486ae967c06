"""Fused matching: the global cosine and a local scorer (SIFT, XFeat) calibrated to P(same
individual) per photo pair and fused into one probability, with its own NEW threshold.

The recipe (shared with the LOIO benchmark, :class:`FusionCalibration`): every scorer's raw pair
score is mapped to P(same) by an isotonic :class:`PairCalibrator` fitted on pairs of known truth
from different sightings; the fused score is the mean of those probabilities (a robust rule when
the scorers see the same evidence, :mod:`reid.matching.fusion`), mapped to a probability again by
a final Platt fit on the same pairs (monotone: the mean's order is kept).

A gallery stores one :class:`FusedCalibration` (``reid calibrate``, :mod:`reid.matching.
fused_calibrate`): the local scorer it belongs to, the calibrators, the thresholds measured on
the fused score and on the local scorer alone, and the shortlist size. :func:`choose_scorer`
turns ``reid match --scorer`` into a re-ranker (:class:`reid.matching.rerank.LocalReranker`) and
its threshold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from reid.errors import ReIDError
from reid.gallery import ThresholdFit
from reid.matching.calibration import PairCalibrator
from reid.matching.fusion import fuse
from reid.matching.local import LocalScorer, make_scorer
from reid.matching.roles import Roles

if TYPE_CHECKING:
    from reid.gallery import Gallery
    from reid.matching.rerank import Reranker

COSINE = "cosine"
FUSED = "fused"
GLOBAL = "global"
AUTO = "auto"
SCORERS = (AUTO, GLOBAL, "sift", "xfeat", FUSED)  # what `reid match --scorer` accepts
DEFAULT_SHORTLIST = 50  # gallery photos re-ranked per query (see docs/gallery.md: cost)
FORMAT = 1


# ------------------------------------------------------------------ the shared recipe
@dataclass(frozen=True)
class FusionCalibration:
    """Per-scorer calibrators and the final map of their mean to P(same); plain data.

    ``calibrators``: scorer name (``cosine``, ``sift`` ...) -> its isotonic calibrator;
    ``final``: the Platt calibrator of the mean of their probabilities.
    """

    calibrators: dict[str, PairCalibrator]
    final: PairCalibrator

    @classmethod
    def fit(cls, raw: Mapping[str, Any], same: Any) -> FusionCalibration:
        """Fit on P pairs of known truth: ``raw`` scorer name -> (P,) raw scores (finite),
        ``same`` (P,) bool. Raises ValueError when either class has fewer than
        ``calibration.MIN_PER_CLASS`` pairs."""
        y = np.asarray(same, dtype=bool)
        calibrators = {s: PairCalibrator.fit(v, y, scorer=s) for s, v in raw.items()}
        mean = fuse({s: c(raw[s]) for s, c in calibrators.items()})
        # the mean of calibrated probabilities ranks well but is pulled towards the middle;
        # a Platt fit on the same pairs makes it a probability again without changing its order
        final = PairCalibrator.fit(mean, y, "platt", scorer=FUSED, transform="identity")
        return cls(calibrators, final)

    def probabilities(self, raw: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Each scorer's calibrated P(same) of its raw scores (any shape, NaN stays NaN)."""
        return {s: self.calibrators[s](raw[s]) for s in self.calibrators}

    def fuse(self, probs: Mapping[str, Any]) -> np.ndarray:
        """The fused P(same) from the scorers' calibrated probabilities (same shapes)."""
        return self.final(fuse({s: probs[s] for s in self.calibrators}))

    def __call__(self, raw: Mapping[str, Any]) -> np.ndarray:
        """The fused P(same) of raw scores: ``raw`` names every calibrated scorer."""
        return self.fuse(self.probabilities(raw))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data; :meth:`from_dict` restores it."""
        return {
            "calibrators": {s: c.to_dict() for s, c in self.calibrators.items()},
            "final": self.final.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FusionCalibration:
        """The inverse of :meth:`to_dict`; ValueError on data it did not write."""
        try:
            calibrators = {s: PairCalibrator.from_dict(c) for s, c in data["calibrators"].items()}
            return cls(calibrators, PairCalibrator.from_dict(data["final"]))
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"incomplete fusion calibration data ({exc!r})") from exc


# ------------------------------------------------------------------ a gallery's calibration
@dataclass(frozen=True)
class FusedCalibration:
    """What ``reid calibrate`` stores for fused matching in a gallery (JSON, one setting).

    ``scorer``/``settings``: the local scorer (rebuilt by ``make_scorer(scorer, **settings)``),
    whose features have ``local_fingerprint``; ``fits``: ``"fused"`` and the local scorer's name
    -> the threshold fitted on that probability and its rates; ``pair_pool``: whose pairs fitted
    the calibrators (``never-trained`` | ``trained`` | ``unspecified``); ``unknown_pool``: whose
    unknown trials set the thresholds (as for the cosine calibration).
    """

    scorer: str
    settings: dict[str, Any]
    local_fingerprint: str
    model_fingerprint: str
    shortlist: int
    fusion: FusionCalibration
    fits: dict[str, ThresholdFit]
    pair_pool: str
    unknown_pool: str
    num_pairs: dict[str, int]
    num_unknown_individuals: int
    at: str
    generation: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    roles: Roles | None = None  # which score names and which calls NEW by default (measured)

    def fit_for(self, name: str) -> ThresholdFit:
        """The threshold fit for ``fused`` or the local scorer's name."""
        return self.fits[FUSED if name == FUSED else self.scorer]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; ``summary`` is what the audit log keeps."""
        data = {
            "format": FORMAT, "scorer": self.scorer, "settings": dict(self.settings),
            "local_fingerprint": self.local_fingerprint,
            "model_fingerprint": self.model_fingerprint, "shortlist": self.shortlist,
            "fusion": self.fusion.to_dict(),
            "fits": {k: asdict(v) for k, v in self.fits.items()},
            "pair_pool": self.pair_pool, "unknown_pool": self.unknown_pool,
            "num_pairs": dict(self.num_pairs),
            "num_unknown_individuals": self.num_unknown_individuals, "at": self.at,
            "generation": self.generation, "extra": dict(self.extra),
            "roles": None if self.roles is None else self.roles.to_dict(),
        }  # fmt: skip
        data["summary"] = {k: data[k] for k in ("scorer", "shortlist", "fits", "num_pairs")}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FusedCalibration:
        """The inverse of :meth:`to_dict`; ValueError on data it did not write."""
        if data.get("format") != FORMAT:
            raise ValueError(f"not a fused calibration of format {FORMAT}: {data.get('format')!r}")
        try:
            return cls(
                str(data["scorer"]), dict(data["settings"]), str(data["local_fingerprint"]),
                str(data["model_fingerprint"]), int(data["shortlist"]),
                FusionCalibration.from_dict(data["fusion"]),
                {k: ThresholdFit(**v) for k, v in data["fits"].items()},
                str(data["pair_pool"]), str(data["unknown_pool"]),
                {k: int(v) for k, v in data["num_pairs"].items()},
                int(data["num_unknown_individuals"]), str(data["at"]),
                int(data.get("generation", 0)), dict(data.get("extra") or {}),
                Roles.from_dict(data["roles"]) if data.get("roles") else None,
            )  # fmt: skip
        except (KeyError, TypeError) as exc:
            raise ValueError(f"incomplete fused calibration data ({exc!r})") from exc


def read_fused(gallery: Gallery) -> FusedCalibration | None:
    """The gallery's fused calibration, or None when it has none that still applies (another
    model or local extractor than the one it was measured with, or unreadable data)."""
    data = gallery.fused_calibration
    if data is None:
        return None
    try:
        fused = FusedCalibration.from_dict(data)
    except ValueError:
        return None
    current = (gallery.model_fingerprint, gallery.local_fingerprint)
    return fused if (fused.model_fingerprint, fused.local_fingerprint) == current else None


def gallery_scorer(gallery: Gallery, wanted: str | None = None) -> LocalScorer:
    """The local scorer that extracted the gallery's stored features, rebuilt from the spec
    recorded at enroll (or, for a gallery without one, from the fingerprint's name with default
    settings). ``wanted``: the scorer the caller asked for; another one is refused."""
    fingerprint = gallery.local_fingerprint
    if fingerprint is None:
        raise ReIDError(
            f"Gallery {gallery.directory} holds no local features; enroll with `--local sift` "
            f"or run `reid gallery reembed {gallery.directory} --model RUN --local sift` first."
        )
    spec = gallery.local_scorer_spec or {"name": fingerprint.split("-")[0], "settings": {}}
    name = str(spec["name"])
    if wanted is not None and wanted != name:
        raise ReIDError(
            f"Gallery {gallery.directory} holds {name} local features, so it cannot be matched "
            f"with --scorer {wanted}; use --scorer {name} or fused, or re-extract them with "
            f"`reid gallery reembed {gallery.directory} --model RUN --local {wanted}`."
        )
    scorer = make_scorer(name, **dict(spec.get("settings") or {}))
    if scorer.fingerprint != fingerprint:
        raise ReIDError(
            f"Gallery {gallery.directory} holds local features {fingerprint!r} but its recorded "
            f"scorer {spec} now extracts {scorer.fingerprint!r}; re-extract them with "
            f"`reid gallery reembed {gallery.directory} --model RUN --local {name}`."
        )
    return scorer


def scorer_spec(name: str, **settings: Any) -> tuple[LocalScorer, dict[str, Any]]:
    """A local scorer and the JSON spec a gallery records to rebuild it."""
    return make_scorer(name, **settings), {"name": name, "settings": dict(settings)}


# ------------------------------------------------------------------ --scorer -> re-ranker
@dataclass
class ScorerChoice:
    """How ``reid match`` scores: ``name`` (auto | global | sift | xfeat | fused), the re-ranker
    (None: the search's cosine), the threshold to decide at (None: the gallery's cosine one),
    the fused calibration used (None for global) and a one-line note for people ('' if none);
    ``decides``: the score whose threshold calls NEW (``auto`` may name by one, decide by
    another)."""

    name: str
    reranker: Reranker | None = None
    threshold: float | None = None
    calibration: FusedCalibration | None = None
    note: str = ""
    decides: str = GLOBAL  # the score the threshold is on: global | fused | sift | xfeat


def choose_scorer(
    gallery: Gallery,
    name: str | None,
    *,
    top_k: int,
    shortlist: int | None = None,
    workers: int = 2,
) -> ScorerChoice:
    """The scorer ``name`` for matching against ``gallery``: ``global`` (today's cosine),
    ``fused``, a local scorer alone (ranked by its calibrated probability), or ``auto`` (None):
    what ``reid calibrate`` measured best on this gallery for each job, naming the individual
    and calling NEW (:mod:`reid.matching.roles`; ``global`` when the gallery holds no fused
    calibration, with a note). ``shortlist``: photos re-ranked per query (None: calibrated)."""
    from reid.matching.rerank import LocalReranker

    if name is not None and name not in SCORERS:
        raise ReIDError(f"--scorer {name!r} is not one of {', '.join(SCORERS)}.")
    fused = read_fused(gallery)
    rank_by = decide_by = None
    if name in (None, AUTO):
        if fused is None:
            return ScorerChoice(GLOBAL, note=_no_fusion_note(gallery))
        if fused.roles is None:  # calibrated before roles were measured
            name = FUSED
        else:
            rank_by, decide_by = fused.roles.rank_by, fused.roles.decide_by
            if rank_by == decide_by == GLOBAL:
                return ScorerChoice(GLOBAL, calibration=fused, note=_roles_note(fused.roles))
            name = AUTO
    if name == GLOBAL:
        return ScorerChoice(GLOBAL)
    scorer = gallery_scorer(gallery, None if name in (FUSED, AUTO) else name)
    if fused is None:
        raise ReIDError(
            f"--scorer {name} needs a fused calibration of gallery {gallery.directory} (its "
            f"scores are calibrated probabilities); run `reid calibrate {gallery.directory} "
            "--model RUN` first, or match with --scorer global."
        )
    # the global score deciding means the gallery's own cosine threshold (None here)
    deciding = decide_by or name
    threshold = None if deciding == GLOBAL else fused.fit_for(deciding).threshold
    reranker = LocalReranker(
        gallery, scorer, fused.fusion,
        rank_by=_probability_name(rank_by) if rank_by else name,
        decide_by=_probability_name(decide_by) if decide_by else None,
        top_k=top_k, shortlist=shortlist or fused.shortlist, workers=workers,
    )  # fmt: skip
    note = _roles_note(fused.roles) if name == AUTO else ""
    return ScorerChoice(name, reranker, threshold, fused, note, deciding)


def _probability_name(role: str) -> str:
    """A role's score as the re-ranker names it (the global score is its ``cosine``)."""
    return COSINE if role == GLOBAL else role


def _roles_note(roles: Roles) -> str:
    """What ``auto`` does on this gallery and why, in one line."""
    q = roles.quality

    def figures(name: str) -> str:
        auroc = "–" if q[name].auroc is None else f"{q[name].auroc:.2f}"
        return f"{name} rank-1 {q[name].rank1:.2f} AUROC {auroc}"

    return (
        f"note: auto scorer: {roles.rank_by} names the individual, {roles.decide_by} calls NEW "
        f"(measured by reid calibrate on this gallery: {'; '.join(figures(n) for n in q)})."
    )


def _no_fusion_note(gallery: Gallery) -> str:
    """Why matching falls back to the global score, and what to run."""
    if gallery.local_fingerprint is None:
        return (
            "note: scoring by the global embedding only; the gallery holds no local features "
            "(enroll with --local sift) for re-ranking."
        )
    return (
        "note: scoring by the global embedding only; run `reid calibrate "
        f"{gallery.directory} --model RUN` to calibrate fused re-ranking with local features."
    )


__all__ = [
    "AUTO",
    "COSINE",
    "DEFAULT_SHORTLIST",
    "FUSED",
    "FusedCalibration",
    "FusionCalibration",
    "ScorerChoice",
    "choose_scorer",
    "gallery_scorer",
    "read_fused",
    "scorer_spec",
]
