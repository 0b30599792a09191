"""The procedural sample character: exact content, a front that shows eyes, mouth and hair,
morphs that close the right eye and open the mouth, and a PMX round trip through our writer."""

import numpy as np
import pytest
from PIL import Image

from mmd_helpers import assert_models_equal
from tha_studio.render.formats.mmd import pmx, procedural, read_model
from tha_studio.render.formats.mmd.model import BDEF1, BDEF2, PANEL_EYE, PANEL_MOUTH


@pytest.fixture(scope="module")
def character():
    return procedural.make_character()


def material_of_faces(model):
    counts = [m.index_count // 3 for m in model.materials]
    return np.repeat(np.arange(len(counts)), counts)


def front_material(model, x, y, positions=None):
    """Name of the material seen from the front (the camera at -Z) at (x, y), or None."""
    p = (model.positions if positions is None else positions)[model.faces].astype(float)
    a, b, c = p[:, 0], p[:, 1], p[:, 2]
    d = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])
    ok = np.abs(d) > 1e-12
    d = np.where(ok, d, 1.0)
    l1 = ((x - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (y - a[:, 1])) / d
    l2 = ((b[:, 0] - a[:, 0]) * (y - a[:, 1]) - (x - a[:, 0]) * (b[:, 1] - a[:, 1])) / d
    inside = ok & (l1 >= 0) & (l2 >= 0) & (l1 + l2 <= 1)
    if not inside.any():
        return None
    z = (1 - l1 - l2) * a[:, 2] + l1 * b[:, 2] + l2 * c[:, 2]
    nearest = np.argmin(np.where(inside, z, np.inf))
    return model.materials[material_of_faces(model)[nearest]].name


def morphed(model, name, weight=1.0):
    positions = model.positions.astype(float).copy()
    morph = model.morphs[model.morph_index(name)]
    positions[morph.vertex_indices] += weight * morph.vertex_offsets
    return positions


def projected_area(model, material, positions):
    p = positions[model.faces[material_of_faces(model) == [m.name for m in model.materials].index(material)]]
    cross = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 2, 0] - p[:, 0, 0]) * (p[:, 1, 1] - p[:, 0, 1])
    return 0.5 * np.abs(cross).sum()


def test_deterministic(character):
    again = procedural.make_character()
    assert_models_equal(again, character)
    assert pmx.to_bytes(again) == pmx.to_bytes(character)


def test_bones(character):
    names = [b.name for b in character.bones]
    assert names == ["全ての親", "センター", "上半身", "首", "頭"]
    assert [b.name_en for b in character.bones] == ["root", "center", "upper body", "neck", "head"]
    assert [b.parent for b in character.bones] == [-1, 0, 1, 2, 3]  # 頭 under 首
    assert character.bones[4].position == (0.0, float(np.float32(16.8)), 0.0)  # as float32, like the file
    # Head parts follow 頭; the neck and shirt blend into their neighbours with BDEF2.
    assert set(np.unique(character.weight_types)) == {BDEF1, BDEF2}
    np.testing.assert_allclose(character.bone_weights.sum(axis=1), 1.0, atol=1e-6)
    assert character.bone_indices.max() == 4


def test_morphs(character):
    assert [(m.name, m.name_en) for m in character.morphs] == [
        ("まばたき", "blink"), ("ウィンク", "wink"), ("ウィンク右", "wink_r"),
        ("あ", "a"), ("い", "i"), ("う", "u"), ("え", "e"), ("お", "o")]
    assert [m.panel for m in character.morphs] == [PANEL_EYE] * 3 + [PANEL_MOUTH] * 5
    assert all(m.kind == "vertex" and len(m.vertex_indices) for m in character.morphs)
    x = character.positions[:, 0]
    wink, wink_r, blink = (character.morphs[character.morph_index(n)] for n in ("ウィンク", "ウィンク右", "まばたき"))
    assert (x[wink.vertex_indices] > 0).all() and (x[wink_r.vertex_indices] < 0).all()  # ウィンク: the model's left
    assert sorted(blink.vertex_indices) == sorted(np.concatenate([wink.vertex_indices, wink_r.vertex_indices]))
    for vowel in "あいうえお":
        moved = character.positions[character.morphs[character.morph_index(vowel)].vertex_indices]
        assert np.abs(moved[:, 0]).max() < 0.4 and np.abs(moved[:, 1] - procedural.MOUTH_Y).max() < 0.1


def test_size_like_a_real_mmd_model(character):
    low, high = character.positions.min(axis=0), character.positions.max(axis=0)
    assert 20.0 < high[1] < 20.5  # hair top near 20 units, like Gene (19.96)
    assert 12.0 < low[1] < 13.0  # cut at the chest
    assert 4.4 < high[0] - low[0] < 5.0  # shoulders
    assert character.materials[0].name == "肌" and len(character.materials) == len(procedural.MATERIALS)
    assert sum(m.index_count for m in character.materials) == 3 * len(character.faces)


def test_front_shows_a_face(character):
    """From the front: hair on top, eyes with irises, skin between them, a mouth, a shirt."""
    assert front_material(character, 0.0, 19.8) == "髪"
    assert front_material(character, 0.0, 18.0) == "肌"
    for side in (1, -1):
        assert front_material(character, side * procedural.EYE_X, procedural.EYE_Y - 0.05) == "瞳孔"
        assert front_material(character, side * (procedural.EYE_X + 0.17), procedural.EYE_Y) == "瞳"
        assert front_material(character, side * 1.45, 16.8) == "髪"  # side locks
    assert front_material(character, 0.0, procedural.MOUTH_Y) == "口"
    assert front_material(character, 1.8, 14.5) == "服"
    assert front_material(character, 0.0, 16.2) == "肌"  # the neck


def test_blink_closes_and_vowels_open(character):
    for name, side in (("まばたき", 1), ("まばたき", -1), ("ウィンク", 1), ("ウィンク右", -1)):
        closed = morphed(character, name)
        spot = (side * procedural.EYE_X, procedural.EYE_Y - 0.05)
        assert front_material(character, *spot, closed) == "肌", name
    winked = morphed(character, "ウィンク")
    assert front_material(character, -procedural.EYE_X, procedural.EYE_Y - 0.05, winked) == "瞳孔"
    assert projected_area(character, "白目", morphed(character, "まばたき")) < 1e-4
    rest_mouth = projected_area(character, "口", character.positions)
    for vowel in "あいうえお":
        assert projected_area(character, "口", morphed(character, vowel)) > 3 * rest_mouth, vowel
    assert front_material(character, 0.0, procedural.MOUTH_Y - 0.25, morphed(character, "あ")) in ("口", "舌")


def test_winding_faces_outward(character):
    """MMD's front face: cross(b - a, c - a) along the outward normal (as in Gene_light)."""
    p, f = character.positions.astype(float), character.faces
    cross = np.cross(p[f[:, 1]] - p[f[:, 0]], p[f[:, 2]] - p[f[:, 0]])
    head = material_of_faces(character) == 0
    outward = p[f].mean(axis=1) - procedural.HEAD_CENTER
    skull = head & (p[f].mean(axis=1)[:, 1] > 16.6)
    assert ((cross[skull] * outward[skull]).sum(axis=1) > 0).all()
    assert ((cross * character.normals[f].mean(axis=1)).sum(axis=1) >= 0).mean() > 0.99


def test_written_character_reads_back_equal(character, tmp_path):
    path = procedural.write_character(tmp_path / "sample")
    assert path.name == procedural.PMX_NAME
    assert_models_equal(read_model(path), character)
    texture = Image.open(path.parent / character.textures[0])
    assert texture.size == (256, 128)
    pixels = np.asarray(texture.convert("RGB"))
    assert (pixels[0, 0] < 100).all() or pixels[0, 0, 2] > pixels[0, 0, 0]  # navy collar at the back top
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([procedural.PMX_NAME, procedural.TEXTURE_NAME])
