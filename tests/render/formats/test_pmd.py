"""PMD 1.0 reading, on files built byte by byte from the format description (mmd_helpers.build_pmd)."""

import math
import struct

import numpy as np
import pytest

from mmd_helpers import PMD_BONES, build_pmd
from tha_studio.render.formats.mmd import MMDFormatError, pmd, pmx, read_model
from tha_studio.render.formats.mmd.model import (
    BDEF1, BDEF2, BONE_IK, BONE_INHERIT_ROTATION, BONE_MOVABLE, BONE_TAIL_IS_BONE, MATERIAL_EDGE,
    MATERIAL_NO_CULL, PANEL_EYE, PANEL_MOUTH,
)


@pytest.fixture(scope="module")
def model():
    data, _ = build_pmd()
    return pmd.parse(data, "test.pmd")


def test_header_vertices_and_faces(model):
    assert (model.format, model.version, model.encoding) == ("pmd", 1.0, "cp932")
    assert (model.name, model.comment) == ("テスト", "コメント")
    assert model.vertex_count == 4 and model.faces.tolist() == [[0, 1, 2], [0, 2, 3]]
    assert model.positions[2].tolist() == [1, 11, 0] and model.uvs[1].tolist() == [1, 0]
    # 100 -> BDEF1 on the first bone; 60 -> BDEF2 0.6/0.4; same bones -> BDEF1; 0 -> all on the second bone.
    assert model.weight_types.tolist() == [BDEF1, BDEF2, BDEF1, BDEF1]
    assert model.bone_indices[:, :2].tolist() == [[0, -1], [0, 1], [1, -1], [0, -1]]
    np.testing.assert_allclose(model.bone_weights[1, :2], [0.6, 0.4], rtol=1e-6)
    assert model.edge_scales.tolist() == [1, 1, 0, 1]


def test_materials_textures_and_toons(model):
    first, second = model.materials
    assert model.textures == ["face.png", "shine.spa"]
    assert (first.texture, first.sphere_texture, first.sphere_mode) == (0, 1, 2)
    assert first.toon_shared and first.toon == 2 and first.flags & MATERIAL_EDGE
    assert first.diffuse == (1, 0.5, 0.25, 1) and first.specular_strength == 5 and first.index_count == 3
    assert second.texture == -1 and second.toon == -1 and not second.toon_shared
    assert second.flags & MATERIAL_NO_CULL  # translucent PMD materials draw both sides


def test_custom_toon_becomes_a_texture():
    data, _ = build_pmd(custom_toon=True)
    model = pmd.parse(data)
    first = model.materials[0]
    assert not first.toon_shared and model.textures[first.toon] == "mytoon.bmp"


def test_bones_ik_and_follow(model):
    names = [b.name for b in model.bones]
    assert names == [b[0] for b in PMD_BONES]
    center, upper, knee, leg_ik, follower = model.bones
    assert center.parent == -1 and center.flags & BONE_MOVABLE and center.position == (0, 8, 0)
    assert upper.flags & BONE_TAIL_IS_BONE and upper.tail_bone == 2
    assert not knee.flags & BONE_TAIL_IS_BONE  # tail 0 means none
    assert leg_ik.flags & BONE_IK and leg_ik.ik.target == 2 and leg_ik.ik.loop_count == 40
    assert leg_ik.ik.limit_angle == pytest.approx(2.0)  # control weight 0.5 x 4
    (link,) = leg_ik.ik.links
    assert link.bone == 2 and link.limits[0][0] == pytest.approx(-math.pi)  # knees get MMD's X limit
    assert follower.flags & BONE_INHERIT_ROTATION
    assert (follower.inherit_parent, follower.inherit_ratio) == (1, 0.5)
    assert [b.name_en for b in model.bones] == ["center", "upper body", "knee_L", "leg IK_L", "eye follow"]


def test_skins_become_vertex_morphs_with_absolute_indices(model):
    a, blink = model.morphs
    assert (a.name, a.name_en, a.panel, a.kind) == ("あ", "a", PANEL_MOUTH, "vertex")
    assert a.vertex_indices.tolist() == [2] and a.vertex_offsets.tolist() == [[0, -0.5, 0]]
    assert (blink.name, blink.panel) == ("まばたき", PANEL_EYE)
    assert blink.vertex_indices.tolist() == [2, 3]


def test_display_frames(model):
    root, expressions, body = model.display_frames
    assert root.special and root.items == [(0, 0)]
    assert expressions.special and expressions.items == [(1, 1), (1, 0)]
    assert (body.name, body.name_en, body.items) == ("体", "Body", [(0, 1), (0, 4)])


def test_rigid_bodies_become_absolute_and_joints(model):
    head, hair = model.rigid_bodies
    assert head.bone == 1 and head.position == (0, 12, 0)  # relative (0, 1, 0) + 上半身 at y 11
    assert hair.bone == -1 and hair.position == (0, 8, 1)  # no bone: relative to the first bone
    assert (head.group, head.no_collision_mask, hair.shape, hair.mode) == (3, 0xFFFE, 2, 1)
    (joint,) = model.joints
    assert (joint.name, joint.rigid_a, joint.rigid_b) == ("髪J", 0, 1)
    assert joint.position == (0, 1, 2) and joint.spring_rotation == (21, 22, 23)


@pytest.mark.parametrize("stop", ["english", "toons", "rigid", "joints"])
def test_a_file_may_stop_before_any_optional_section(stop):
    data, _ = build_pmd(**{stop: False})
    model = pmd.parse(data)
    assert len(model.morphs) == 2 and len(model.bones) == 5
    assert bool(model.rigid_bodies) == (stop == "joints")
    assert (model.bones[0].name_en == "center") == (stop != "english")


def test_cut_inside_a_section_is_an_error_naming_it():
    data, starts = build_pmd()
    for section, start in starts.items():
        with pytest.raises(MMDFormatError) as error:
            pmd.parse(data[: start + 5], "cut.pmd")
        assert error.value.section == section and "cut.pmd" in str(error.value)


def test_names_cut_mid_character_and_read_model_dispatch(tmp_path):
    assert pmd.decode_name("ウィンク".encode("cp932")[:-1] + b"") == "ウィン"
    assert pmd.decode_name(b"abc\x00\xfd\xfd") == "abc"
    data, _ = build_pmd()
    path = tmp_path / "model.pmd"
    path.write_bytes(data)
    assert read_model(path).format == "pmd"


def test_pmd_model_writes_as_pmx(model, tmp_path):
    again = pmx.read(pmx.write(model, tmp_path / "converted.pmx"))
    assert (again.format, again.version, again.encoding) == ("pmx", 2.0, "utf-16-le")
    assert [b.name for b in again.bones] == [b.name for b in model.bones]
    assert np.array_equal(again.positions, model.positions) and np.array_equal(again.faces, model.faces)
    assert again.morphs[0].vertex_indices.tolist() == [2]


def test_bad_pmd_input():
    with pytest.raises(MMDFormatError, match="too short"):
        pmd.parse(b"Pm", "x.pmd")
    with pytest.raises(MMDFormatError, match="not a PMD file"):
        pmd.parse(b"PMX " + bytes(300), "x.pmd")
    data, starts = build_pmd()
    bad = bytearray(data)
    bad[3:7] = b"\x00\x00\x00\x40"  # version 2.0
    with pytest.raises(MMDFormatError, match="unsupported PMD version"):
        pmd.parse(bytes(bad))
    bad = bytearray(data)
    bad[starts["vertices"] : starts["vertices"] + 4] = (10**9).to_bytes(4, "little")
    with pytest.raises(MMDFormatError, match="vertex count 1000000000 needs"):
        pmd.parse(bytes(bad))
    bad = bytearray(data)
    bad[starts["faces"] + 4 : starts["faces"] + 6] = (9).to_bytes(2, "little")
    with pytest.raises(MMDFormatError, match="face index 0 is 9, but there are 4 vertices"):
        pmd.parse(bytes(bad))
    bad = bytearray(data)
    second_y = starts["vertices"] + 4 + 38 + 4  # vertex records are 38 bytes, x first
    bad[second_y : second_y + 4] = struct.pack("<f", float("nan"))
    with pytest.raises(MMDFormatError, match=r"vertices at byte \d+: vertex 1 position \(1, nan, 0\) is not a finite"):
        pmd.parse(bytes(bad))
    bad = bytearray(data)
    bad[second_y : second_y + 4] = struct.pack("<f", -2e5)
    with pytest.raises(MMDFormatError, match="vertex 1 position .* lies past 100,000 MMD units"):
        pmd.parse(bytes(bad))
