"""render.blender.scene's generic helpers: engines, camera aimed at a box, lights, atomic PNG output."""

import bpy
import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def scene_helpers(ext_module):
    return ext_module("render.blender.scene")


def add_cube(size, location):
    mesh = bpy.data.meshes.new("cube")
    half = size / 2
    corners = [(x, y, z) for x in (-half, half) for y in (-half, half) for z in (-half, half)]
    faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    mesh.from_pydata(corners, [], faces)
    cube = bpy.data.objects.new("cube", mesh)
    cube.location = location
    bpy.context.scene.collection.objects.link(cube)
    return cube


def silhouette(path):
    alpha = np.asarray(Image.open(path).convert("RGBA"))[..., 3] > 128
    rows, columns = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    return alpha, (rows[0], rows[-1]), (columns[0], columns[-1])


def test_cycles_render_frames_a_box_in_a_wide_image(scene_helpers, tmp_path):
    cube = add_cube(2.0, (1.0, 2.0, 3.0))
    scene_helpers.setup_render(engine="CYCLES", resolution=(64, 48), samples=4)
    scene_helpers.add_sun()
    scene_helpers.set_world_color((0.2, 0.2, 0.2))
    low, high = scene_helpers.world_bounds([cube])
    assert np.allclose(low, (0, 1, 2)) and np.allclose(high, (2, 3, 4))
    camera = scene_helpers.aim_orthographic_camera(low, high, margin=0.0)
    assert camera.data.type == "ORTHO" and np.isclose(camera.data.ortho_scale, 2 * 64 / 48)
    path = scene_helpers.render_to_png(tmp_path / "cube.png")
    assert [p.name for p in tmp_path.iterdir()] == ["cube.png"]  # no temporary file left
    alpha, rows, columns = silhouette(path)
    assert alpha.shape == (48, 64)
    assert rows[0] <= 1 and rows[1] >= 46  # the box's height fills the frame
    assert abs(columns[0] - 8) <= 1 and abs(columns[1] - 55) <= 1  # 48 px wide, centred
    assert not alpha[:, :6].any()  # transparent film around it


def test_side_view_of_a_long_box_in_a_tall_image(scene_helpers, tmp_path):
    long_box = add_cube(1.0, (0.0, 0.0, 0.0))
    long_box.scale = (1.0, 3.0, 1.0)  # 3 long along Y: seen from the side, it is wide
    scene_helpers.setup_render(engine="WORKBENCH", resolution=(32, 64))
    low, high = scene_helpers.world_bounds([long_box])
    scene_helpers.aim_orthographic_camera(low, high, view=scene_helpers.LEFT, margin=0.0)
    alpha, rows, columns = silhouette(scene_helpers.render_to_png(tmp_path / "side.png"))
    assert columns[0] <= 1 and columns[1] >= 30  # the 3-unit length spans the 32 px width
    assert abs((rows[0] + rows[1]) / 2 - 31.5) <= 1 and 8 <= rows[1] - rows[0] + 1 <= 13  # 1/3 as tall


def test_render_without_camera_is_refused(scene_helpers, tmp_path):
    scene_helpers.setup_render()
    with pytest.raises(ValueError, match="no camera"):
        scene_helpers.render_to_png(tmp_path / "x.png")
    with pytest.raises(ValueError, match="engine"):
        scene_helpers.setup_render(engine="EEVEE")
