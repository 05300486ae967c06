"""What every local scorer produces and consumes: keypoints with descriptors, and verified
correspondences between two photos. numpy only, so a gallery can store and reload them without
torch.

A local scorer (:class:`LocalScorer`) works on the photo region that is identified (the crop box,
or the whole photo), resized so that its longer side is the scorer's ``max_side``. Keypoint
coordinates are pixels of that resized region; :attr:`LocalFeatures.size` records its (width,
height) so that a match sheet can draw them on the photo again.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class LocalFeatures:
    """Keypoints of one photo region.

    keypoints: (N, 2) float32 x, y in pixels of the resized region; descriptors: (N, D), float16
    (unit-norm float descriptors) or uint8 (quantised); scores: (N,) float32 detector response,
    strongest first; size: (width, height) of the resized region the keypoints refer to.
    views: None, or (N,) uint8 for extractors that are not rotation invariant and describe the
    region several times: the index ``k`` of the copy each keypoint was found in (the region
    turned by ``k`` x 90 degrees); its keypoints are still pixels of the unturned region.
    """

    keypoints: np.ndarray
    descriptors: np.ndarray
    scores: np.ndarray
    size: tuple[int, int]
    views: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.keypoints)
        if self.keypoints.shape != (n, 2) or len(self.descriptors) != n or len(self.scores) != n:
            raise ValueError(
                f"LocalFeatures: keypoints {self.keypoints.shape}, descriptors "
                f"{self.descriptors.shape} and scores {self.scores.shape} must have one row each"
            )
        if self.views is not None and self.views.shape != (n,):
            raise ValueError(f"LocalFeatures: views {self.views.shape} must have one entry per row")

    def __len__(self) -> int:
        return len(self.keypoints)

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays (what a gallery stores per photo, before the container)."""
        views = 0 if self.views is None else self.views.nbytes
        return int(self.keypoints.nbytes + self.descriptors.nbytes + self.scores.nbytes + views)

    def to_bytes(self) -> bytes:
        """A compact, self-describing serialisation (uncompressed ``.npz``)."""
        buffer = io.BytesIO()
        arrays = {
            "keypoints": self.keypoints.astype(np.float32, copy=False),
            "descriptors": self.descriptors,
            "scores": self.scores.astype(np.float32, copy=False),
            "size": np.asarray(self.size, dtype=np.int32),
        }
        if self.views is not None:
            arrays["views"] = self.views.astype(np.uint8, copy=False)
        np.savez(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> LocalFeatures:
        """The inverse of :meth:`to_bytes`; raises ValueError on data it did not write."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                size = z["size"]
                views = z["views"] if "views" in z.files else None
                return cls(
                    z["keypoints"],
                    z["descriptors"],
                    z["scores"],
                    (int(size[0]), int(size[1])),
                    views,
                )
        except (OSError, KeyError, ValueError, IndexError, EOFError, TypeError, AttributeError,
                zipfile.BadZipFile) as exc:  # fmt: skip
            raise ValueError(f"not a stored set of local features ({exc})") from exc


@dataclass(frozen=True)
class Correspondences:
    """The geometrically verified correspondences between a query and one candidate photo.

    query_xy, candidate_xy: (M, 2) float32, pixels of each side's resized region (see
    :class:`LocalFeatures`); weights: (M,) float32, how much each correspondence counts (1.0
    each unless a distinctiveness weighting lowered it). ``score`` is their sum: the number of
    verified correspondences when unweighted.
    query_idx: None, or (M,) int32 row of each correspondence's query keypoint in the query's
    :class:`LocalFeatures` (what a distinctiveness weighting needs to look up its descriptor,
    :mod:`reid.matching.distinct`); None when the scorer did not record it.
    """

    query_xy: np.ndarray
    candidate_xy: np.ndarray
    weights: np.ndarray
    query_idx: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.query_idx is not None and self.query_idx.shape != (len(self.query_xy),):
            raise ValueError(
                f"Correspondences: query_idx {self.query_idx.shape} must have one entry per "
                f"correspondence ({len(self.query_xy)})"
            )

    @property
    def count(self) -> int:
        return len(self.query_xy)

    @property
    def score(self) -> float:
        return float(self.weights.sum())

    @classmethod
    def empty(cls) -> Correspondences:
        z = np.zeros((0, 2), np.float32)
        return cls(z, z.copy(), np.zeros(0, np.float32))


@runtime_checkable
class LocalScorer(Protocol):
    """A local-feature scorer: extract keypoints once per photo, match pairs.

    ``name`` is the scorer's short name (``sift``, ``xfeat``); ``fingerprint`` names the
    extractor and every setting that changes what ``extract`` returns: features stored under one
    fingerprint are never matched against features from another.
    """

    name: str
    fingerprint: str
    max_side: int

    def extract(self, image: np.ndarray) -> LocalFeatures:
        """Keypoints of ``image``: (H, W, 3) uint8 RGB, already cropped to the region and
        resized to ``max_side`` on its longer side (see :func:`prepare_region`)."""
        ...

    def match(self, query: LocalFeatures, candidate: LocalFeatures) -> Correspondences:
        """The correspondences between two photos that survive the geometric check."""
        ...
