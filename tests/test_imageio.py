"""The one image loader: every odd file a field team may hand us."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from reid.errors import ImageLoadError
from reid.io.datasets import ImageRecord, load_images
from reid.io.images import load_image, prepare_image


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def test_exif_orientation_is_applied(tmp_path):
    # a 40x20 landscape image tagged "rotate 90 CW to display" (orientation 6) is shown 20x40
    img = Image.new("RGB", (40, 20), (200, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(img, tmp_path / "rot.jpg", exif=exif)
    assert load_image(path).size == (20, 40)


@pytest.mark.parametrize(
    "mode, value", [("L", 128), ("CMYK", (0, 0, 0, 0)), ("RGBA", (10, 20, 30, 255))]
)
def test_modes_become_rgb(tmp_path, mode, value):
    suffix = ".jpg" if mode == "CMYK" else ".png"
    path = _save(Image.new(mode, (8, 8), value), tmp_path / f"x{suffix}")
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (8, 8)


def test_sixteen_bit_is_rescaled_not_clipped(tmp_path):
    arr = np.full((4, 4), 32768, dtype=np.uint16)  # half of the 16-bit range
    path = _save(Image.fromarray(arr), tmp_path / "x16.png")
    out = np.asarray(load_image(path))
    assert out.shape == (4, 4, 3)
    assert abs(int(out[0, 0, 0]) - 128) <= 1  # Pillow's own convert would give 255


def test_transparent_pixels_become_black(tmp_path):
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[..., 0] = 255
    arr[:2, :, 3] = 255  # top half opaque red, bottom half fully transparent
    out = np.asarray(load_image(_save(Image.fromarray(arr, "RGBA"), tmp_path / "a.png")))
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[3, 0]) == (0, 0, 0)


def test_heic_is_accepted(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")
    if not pillow_heif.libheif_info().get("HEIF"):
        pytest.skip("this pillow-heif build cannot write HEIC to make the test file")
    path = _save(Image.new("RGB", (32, 24), (30, 160, 60)), tmp_path / "phone.heic", quality=90)
    out = load_image(path)
    assert out.size == (32, 24)
    assert np.abs(np.asarray(out).astype(int) - [30, 160, 60]).max() < 20


def test_prepare_image_crops_then_resizes(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, 20:] = 255  # right half white
    path = _save(Image.fromarray(arr), tmp_path / "half.png")
    out = prepare_image(path, 16, box=(20, 0, 40, 20))
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8 and out.min() == 255


def _bad_files(tmp_path):
    good = _save(Image.new("RGB", (16, 16), (1, 2, 3)), tmp_path / "good.jpg")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("these are field notes, not a photo")
    full = tmp_path / "full.jpg"
    _save(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)), full)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    bomb = _save(Image.new("L", (3000, 3000)), tmp_path / "bomb.png")  # 9 MP; limit set to 1 MP
    missing = tmp_path / "gone.jpg"
    return good, {
        empty: "empty",
        text: "not an image",
        truncated: "truncated",
        bomb: "decompression bomb",
        missing: "not found",
    }


def test_each_bad_kind_is_named(tmp_path):
    _, bad = _bad_files(tmp_path)
    for path, reason in bad.items():
        with pytest.raises(ImageLoadError, match=reason) as info:
            load_image(path, max_pixels=1_000_000)
        assert info.value.path == path


def test_bad_items_are_reported_and_the_batch_goes_on(tmp_path):
    good, bad = _bad_files(tmp_path)
    samples = [ImageRecord(path=p, individual="a") for p in [*bad, good]]
    seen = []
    result = load_images(samples, 8, max_pixels=1_000_000, progress=False, on_skip=seen.append)
    assert [s.path for s in result.samples] == [good]
    assert result.images[0].shape == (8, 8, 3)
    assert {e.path for e in result.skipped} == set(bad) and len(seen) == len(bad)
    summary = result.summary()
    assert "1 images loaded, 5 skipped" in summary
    for path, reason in bad.items():
        assert str(path) in summary and reason in summary
