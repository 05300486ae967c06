"""The study's crop rule: a square centred on the detected head, sized like it, clipped."""

import numpy as np
import pytest

from reid.detect.crop import crop_box, cut, parse_box
from reid.errors import ReIDError


def test_crop_is_a_square_centred_on_the_box_and_sized_like_it():
    # a 40 x 20 box centred at (100, 60): the square side is 40 * 1.5 = 60
    assert crop_box((80, 50, 120, 70), 400, 300, margin=0.5) == (70, 30, 130, 90)
    # no margin: the longer side only; a tall box grows sideways
    assert crop_box((90, 40, 110, 80), 400, 300, margin=0.0) == (80, 40, 120, 80)


def test_crop_is_clipped_at_every_border_without_moving_its_centre():
    # near the top-left corner: the square (-10, -10, 30, 30) is cut at 0
    assert crop_box((0, 0, 20, 20), 100, 80, margin=1.0) == (0, 0, 30, 30)
    # near the bottom-right corner
    assert crop_box((80, 60, 100, 80), 100, 80, margin=1.0) == (70, 50, 100, 80)
    # a box larger than the photo becomes the whole photo
    assert crop_box((-50, -50, 150, 130), 100, 80) == (0, 0, 100, 80)


def test_fractional_boxes_round_outwards_and_stay_inside():
    # centre (20.3, 18.05), half side 9.9: (10.4, 8.15, 30.2, 27.95) rounded outwards
    assert crop_box((10.4, 10.6, 30.2, 25.5), 50, 50, margin=0.0) == (10, 8, 31, 28)


@pytest.mark.parametrize(
    "box", [(10, 10, 10, 20), (10, 20, 30, 5), (float("nan"), 0, 1, 1), (200, 200, 300, 300)]
)
def test_bad_boxes_are_named(box):
    with pytest.raises(ReIDError, match="Box"):
        crop_box(box, 100, 100)


def test_cut_returns_the_crop_region():
    image = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    part = cut(image, (2, 1, 5, 4))
    assert part.shape == (3, 3, 3) and part[0, 0, 0] == image[1, 2, 0]


def test_parse_box_round_trips_and_rejects_junk():
    assert parse_box("1,2,30,40") == (1, 2, 30, 40)
    for bad in ("1,2,3", "a,b,c,d", "5,5,1,1"):
        with pytest.raises(ReIDError, match="Box"):
            parse_box(bad)
