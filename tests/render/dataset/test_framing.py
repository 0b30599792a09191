"""Camera framing: the annotated head lands on THA's head-box rows."""

import numpy as np
import pytest

from tha_studio.pose.schema import get_schema
from tha_studio.render.dataset import framing


@pytest.mark.parametrize("schema_name", ["tha1", "tha2", "tha3"])
def test_head_top_and_bottom_land_on_the_box_rows(schema_name):
    schema = get_schema(schema_name)
    frame = framing.frame_head(1.6, 1.35, schema.head_box, schema.image_size, center_x=0.02, front_y=-0.2)
    top_row, bottom_row, left, right = schema.head_box
    assert frame.height_to_row(1.6) == pytest.approx(top_row)
    assert frame.height_to_row(1.35) == pytest.approx(bottom_row)
    column, row = frame.world_to_pixel([(0.02, 5.0, 1.475)])[0]
    assert column == pytest.approx((left + right) / 2)
    assert row == pytest.approx((top_row + bottom_row) / 2)
    assert frame.ortho_scale == pytest.approx(0.25 / (bottom_row - top_row) * schema.image_size)
    assert frame.camera_y < -0.2 and frame.clip_end > 0.2 - frame.camera_y


def test_tha3_head_sits_in_the_top_half():
    schema = get_schema("tha3")
    frame = framing.frame_head(20.0, 16.0, schema.head_box, 512)
    # 4 units over 128 rows: the image spans 16 units, its centre 6 units below the top.
    assert frame.ortho_scale == pytest.approx(16.0)
    assert frame.center_z == pytest.approx(14.0)


def test_rows_in_band():
    box = (64, 192, 64, 192)
    assert framing.rows_in_band([64, 100, 192], box)
    assert not framing.rows_in_band([60, 100], box)
    assert framing.rows_in_band([60, 196], box, tolerance=4)


def test_a_head_upside_down_is_refused():
    with pytest.raises(ValueError, match="must be above"):
        framing.frame_head(1.0, 1.2, (64, 192, 64, 192), 256)
