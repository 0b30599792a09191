"""Frame rates as a Blender scene holds them, whole or NTSC's fractions."""

import math

import pytest

from tha_studio.animation.core.frame_rate import scene_frame_rate


@pytest.mark.parametrize("rate, held", [
    (24, (24, 1.0)), (30.0, (30, 1.0)), (1, (1, 1.0)), (32767, (32767, 1.0)),
    # NTSC as written, however rounded: Blender's own presets (fps over fps_base 1.001).
    (23.976, (24, 1.001)), (23.98, (24, 1.001)), (29.97, (30, 1.001)), (59.94, (60, 1.001)),
    (47.952, (48, 1.001)), (119.88, (120, 1.001)), (24 / 1.001, (24, 1.001)),
])
def test_whole_and_ntsc_rates_are_held_as_blenders_presets_hold_them(rate, held):
    assert scene_frame_rate(rate) == held


@pytest.mark.parametrize("rate", [12.5, 0.5, 7.3, 23.5, 1000.25, 32766.5, 1e-6])
def test_any_other_rate_plays_at_that_rate(rate):
    fps, base = scene_frame_rate(rate)
    assert isinstance(fps, int) and 1 <= fps <= 32767 and fps >= rate
    assert fps / base == pytest.approx(rate, rel=1e-12) and base <= 1e6  # (Blender's largest fps_base)


@pytest.mark.parametrize("rate", [0, 1e-7, -24, math.nan, math.inf, 32767.5, 1e9])
def test_a_rate_no_scene_plays_is_refused(rate):
    with pytest.raises(ValueError, match="frames per second"):
        scene_frame_rate(rate)
