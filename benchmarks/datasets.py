"""The data sets the benchmarks run on, by name: synthetic salamanders and the real photo sets in
``../shared/data`` (never copied into the repository; a missing folder is one clear error).

Each loader returns ``(samples, label_column)``: ``ImageRecord.individual`` is the animal (what an
open-set split keeps together) and ``label_column`` names the identity a match must get right.
For most sets both are the individual; for nyala the identity is the flank (left and right of one
antelope are different patterns), so an animal left out takes both of its flanks with it.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from reid.io.datasets import ImageRecord, read_dataset
from reid.synthetic.salamanders import synthesize

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
NYALA_PHOTO = re.compile(r"^(?P<sighting>[^_]+)_(?P<side>left|right)photo$")


def _rotated(samples: list[ImageRecord], seed: int) -> list[ImageRecord]:
    """Each photo turned by a random angle (seeded per photo), written beside the originals in
    a ``rotated/`` folder; the borders the turn uncovers take the photo's median colour."""
    rng = random.Random(seed)
    out = []
    for s in samples:
        target = s.path.parent.parent / "rotated" / s.path.parent.name / s.path.name
        angle = rng.uniform(-180, 180)
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            img = Image.open(s.path).convert("RGB")
            fill = tuple(int(v) for v in np.median(np.asarray(img).reshape(-1, 3), axis=0))
            img.rotate(angle, resample=Image.BICUBIC, fillcolor=fill).save(target, quality=95)
        out.append(replace(s, path=target))
    return out


def nyala_samples(root: Path) -> list[ImageRecord]:
    """``<individual>/<sighting>_{left,right}photo.jpg``; the class is individual + flank."""
    samples = []
    for file in sorted(root.glob("*/*.jpg")):
        m = NYALA_PHOTO.match(file.stem)
        if not m:
            continue
        ind = file.parent.name
        samples.append(
            ImageRecord(
                path=file,
                individual=ind,
                side=m["side"],
                sighting=m["sighting"],
                attrs={"flank": f"{ind}-{m['side']}"},
            )
        )
    return samples


def load(
    name: str,
    work: Path,
    *,
    individuals: int = 60,
    images_per: int = 12,
    dates: int = 3,
    size: int = 256,
    seed: int = 0,
    rotate: bool = False,
) -> tuple[list[ImageRecord], str]:
    """``synthetic`` | ``att_faces`` | ``nyala`` | a folder or manifest of your own. ``rotate``
    (synthetic only): every photo turned by a seeded random angle in [-180, 180) degrees, as a
    phone held any way round (the generator itself turns heads by at most 25 degrees)."""
    if name == "synthetic":
        manifest = synthesize(
            work / "synthetic", individuals, images_per, seed=seed, size=size,
            num_dates=dates, progress=False,
        )  # fmt: skip
        samples = read_dataset(manifest)
        return (_rotated(samples, seed) if rotate else samples), "individual"
    if name in ("att_faces", "nyala"):
        root = SHARED / ("att_faces" if name == "att_faces" else "nyala_train")
        if not root.is_dir():
            raise SystemExit(f"{root} not found: the {name} benchmark needs ../shared/data.")
        if name == "nyala":
            return nyala_samples(root), "flank"
        return read_dataset(root), "individual"
    return read_dataset(Path(name)), "individual"
