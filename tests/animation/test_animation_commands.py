"""The animation subcommands' option checks, made before Blender opens anything."""

import pytest

from tha_studio.animation.commands import parse_range
from tha_studio.commands import CommandError


def test_a_frame_range_is_start_to_end_within_blenders_frames():
    assert parse_range("1-240") == (1, 240)
    assert parse_range("0-1048574") == (0, 1_048_574)
    for text, message in (("5-1", "the range is empty"), ("1", "expected START-END"),
                          # Blender raised a ValueError setting such a scene end, after the scene was built
                          ("0-99999999999", "Blender's last frame is 1,048,574"),
                          ("1-1048575", "Blender's last frame is 1,048,574")):
        with pytest.raises(CommandError, match=message):
            parse_range(text)
