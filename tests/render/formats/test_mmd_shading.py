"""MMD's shading facts (render.formats.mmd.shading) and what the import plan keeps of each
material for the toon style (MMDShading): outline, sphere map, toon ramp, ambient, specular."""

import numpy as np

from tha_studio.render.formats.mmd import import_plan, shading
from tha_studio.render.formats.mmd.model import MATERIAL_EDGE
from tha_studio.render.formats.mmd.procedural import make_character


def test_the_light_comes_from_the_viewers_upper_right_front_in_blenders_axes():
    towards = np.array(shading.light_towards())
    assert np.isclose(np.linalg.norm(towards), 1.0)
    # Blender: the model faces -Y (the viewer), Z up, X the viewer's right.
    assert towards[0] > 0 and towards[1] < 0 and towards[2] > 0
    mmd = np.array(shading.light_towards(blender_axes=False))
    assert np.allclose(mmd, -np.array(shading.LIGHT_DIRECTION) / np.linalg.norm(shading.LIGHT_DIRECTION))


def test_the_lit_colour_is_diffuse_times_light_plus_ambient_clamped():
    assert np.allclose(shading.base_color((0.5, 1.0, 0.0, 1.0), (0.1, 0.6, 0.2)),
                       (0.5 * 154 / 255 + 0.1, 1.0, 0.2))


def test_shared_toons_are_white_on_the_lit_side_and_their_shadow_below():
    for number in range(10):
        pixels = shading.shared_toon_pixels(number)
        assert pixels.shape == (32, 32, 4) and (pixels[..., 3] == 1).all()
        assert np.allclose(pixels[:, 0], pixels[:, -1])  # the same in every column
    toon03 = shading.shared_toon_pixels(2)
    assert np.allclose(toon03[0, 0, :3], 1.0) and toon03[-1, 0, :3].max() < 0.65  # the darkest grey
    skin = shading.shared_toon_pixels(1)[-1, 0, :3]
    assert skin[0] > skin[2] and skin.min() < 0.9  # warm
    for plain in (None, 6, 7, 8, 9):
        assert np.allclose(shading.shared_toon_pixels(plain)[..., :3], 1.0)


def _character_with_materials(tmp_path):
    model = make_character()
    (tmp_path / "gold.spa").write_bytes(b"not read by the plan")
    (tmp_path / "ramp.png").write_bytes(b"not read by the plan")
    model.textures = model.textures + ["gold.spa", "toon05.bmp", "ramp.png"]
    gold, reserved, ramp = len(model.textures) - 3, len(model.textures) - 2, len(model.textures) - 1
    first, second, third = model.materials[:3]
    first.sphere_texture, first.sphere_mode = gold, 2
    first.toon_shared, first.toon = True, 1
    second.toon_shared, second.toon = False, reserved  # named like a shared toon and not in the folder: MMD's own toon05
    third.toon_shared, third.toon = False, ramp
    third.sphere_texture, third.sphere_mode = gold, 3  # sub-texture: not a sphere map
    return model


def test_the_plan_keeps_each_materials_mmd_shading(tmp_path):
    model = _character_with_materials(tmp_path)
    plan = import_plan.plan_import(model, folder=tmp_path)
    first, second, third = (material.shading for material in plan.materials[:3])
    source = model.materials[0]
    assert first.sphere == tmp_path / "gold.spa" and first.sphere_mode == 2
    assert first.shared_toon == 1 and first.toon is None
    assert first.ambient == tuple(float(v) for v in source.ambient)
    assert first.draw_edge == bool(source.flags & MATERIAL_EDGE)
    assert first.edge_color == tuple(float(v) for v in source.edge_color)
    assert second.shared_toon == 4 and second.toon is None
    assert third.toon == tmp_path / "ramp.png" and third.shared_toon is None
    assert third.sphere is None and third.sphere_mode == 0
    assert first.as_json()["sphere"] == str(tmp_path / "gold.spa")
    assert plan.edge_scales is None  # every vertex at MMD's default 1
    assert not any("toon05.bmp" in warning for warning in plan.warnings)  # MMD's own: not missing


def test_per_vertex_edge_scales_are_kept_when_they_differ(tmp_path):
    model = make_character()
    model.edge_scales = np.linspace(0.0, 2.0, len(model.positions)).astype(np.float32)
    plan = import_plan.plan_import(model, folder=tmp_path)
    assert np.allclose(plan.edge_scales, model.edge_scales)
