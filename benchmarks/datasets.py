"""The data sets the benchmarks run on, by name: synthetic salamanders and the real photo sets in
``../shared/data`` (never copied into the repository; a missing folder is one clear error).

Each loader returns ``(samples, label_column)``: ``ImageRecord.individual`` is the animal (what an
open-set split keeps together) and ``label_column`` names the identity a match must get right.
For most sets both are the individual; for nyala the identity is the flank (left and right of one
antelope are different patterns), so an animal left out takes both of its flanks with it.
"""

from __future__ import annotations

import re
from pathlib import Path

from reid.io.datasets import ImageRecord, read_dataset
from reid.synthetic.salamanders import synthesize

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
NYALA_PHOTO = re.compile(r"^(?P<sighting>[^_]+)_(?P<side>left|right)photo$")


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
) -> tuple[list[ImageRecord], str]:
    """``synthetic`` | ``att_faces`` | ``nyala`` | a folder or manifest of your own."""
    if name == "synthetic":
        manifest = synthesize(
            work / "synthetic", individuals, images_per, seed=seed, size=size,
            num_dates=dates, progress=False,
        )  # fmt: skip
        return read_dataset(manifest), "individual"
    if name in ("att_faces", "nyala"):
        root = SHARED / ("att_faces" if name == "att_faces" else "nyala_train")
        if not root.is_dir():
            raise SystemExit(f"{root} not found: the {name} benchmark needs ../shared/data.")
        if name == "nyala":
            return nyala_samples(root), "flank"
        return read_dataset(root), "individual"
    return read_dataset(Path(name)), "individual"
