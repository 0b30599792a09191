"""PMX reading and writing on real files (Gene_light, the babylon-mmd edge cases) and on
models with every feature of the format, written by our writer and read back."""

import os

import numpy as np
import pytest

from mmd_helpers import assert_models_equal
from tha_studio.render.formats.mmd import MMDFormatError, pmx, read_model
from tha_studio.render.formats.mmd.model import (
    BDEF1, BDEF2, BDEF4, BONE_EXTERNAL_PARENT, BONE_FIXED_AXIS, BONE_IK, BONE_INHERIT_ROTATION,
    BONE_LOCAL_AXIS, IK, QDEF, SDEF, Bone, DisplayFrame, IKLink, ImpulseOffset, Joint,
    Material, MaterialOffset, Model, Morph, RigidBody, SoftBody,
)

EDGE_CASES = ("bone_flag_test", "bone_hierarchy_test", "bone_hierarchy_test2", "constraint_test",
              "matcap_sample", "uv_morph_test")


@pytest.fixture(scope="module")
def gene_path(shared):
    return shared / "assets/mmd/gene_light/Gene_light.pmx"


@pytest.fixture(scope="module")
def gene(gene_path):
    return pmx.read(gene_path)


def test_gene_counts_match_the_file(gene):
    assert gene.version == 2.0 and gene.encoding == "utf-16-le"
    assert gene.vertex_count == 28646
    assert len(gene.faces) == 47106
    assert len(gene.materials) == 13 and len(gene.textures) == 10
    assert len(gene.bones) == 224 and len(gene.morphs) == 184
    assert len(gene.rigid_bodies) == 87 and len(gene.joints) == 92 and len(gene.display_frames) == 15
    # Every face index is drawn by some material, in order.
    assert sum(m.index_count for m in gene.materials) == 3 * len(gene.faces)
    assert set(np.unique(gene.weight_types)) == {BDEF1, BDEF2, BDEF4}


def test_gene_names_and_contents(gene):
    assert gene.name.startswith("ジェネ")
    for bone in ("全ての親", "センター", "グルーブ", "上半身2", "首", "頭", "両目"):
        assert gene.bone_index(bone) >= 0, bone
    assert gene.bones[gene.bone_index("頭")].parent == gene.bone_index("首")
    for morph in ("あ", "い", "う", "え", "お", "まばたき", "ウィンク", "ウィンク右", "jawOpen", "eyeBlinkLeft"):
        assert gene.morph_index(morph) >= 0, morph
    kinds = {m.kind for m in gene.morphs}
    assert {"vertex", "material", "uv", "group"} <= kinds
    assert gene.morphs[gene.morph_index("青ざめ")].kind == "material"
    assert gene.morphs[gene.morph_index("叫び")].kind == "group"
    assert gene.textures[0] == "light/hair2.png"
    # ウィンク closes the model's left eye (+X); the face looks towards -Z.
    wink = gene.morphs[gene.morph_index("ウィンク")]
    assert gene.positions[wink.vertex_indices, 0].mean() > 0.3
    assert gene.positions[wink.vertex_indices, 2].mean() < -0.5
    # Weights of every vertex sum to one.
    np.testing.assert_allclose(gene.bone_weights.sum(axis=1), 1.0, atol=1e-5)


def test_gene_writes_back_byte_identical(gene, gene_path, tmp_path):
    out = pmx.write(gene, tmp_path / "gene.pmx")
    assert out.read_bytes() == gene_path.read_bytes()
    assert os.listdir(tmp_path) == ["gene.pmx"]  # the temp file was renamed, nothing left over
    assert_models_equal(pmx.read(out), gene)


def test_gene_faces_follow_mmd_winding(gene):
    """cross(b - a, c - a) points along the stored normals: the convention our character follows."""
    p, f = gene.positions, gene.faces
    cross = np.cross(p[f[:, 1]] - p[f[:, 0]], p[f[:, 2]] - p[f[:, 0]])
    assert ((cross * gene.normals[f].mean(axis=1)).sum(axis=1) > 0).mean() > 0.99


@pytest.mark.parametrize("stem", EDGE_CASES)
def test_edge_cases_load_and_write_back_identical(shared, stem):
    path = shared / "assets/mmd/edge_cases" / f"{stem}.pmx"
    model = read_model(path)
    assert model.format == "pmx" and model.bones
    assert pmx.to_bytes(model) == path.read_bytes()


def test_edge_case_contents(shared):
    folder = shared / "assets/mmd/edge_cases"
    flags = read_model(folder / "bone_flag_test.pmx")
    assert flags.vertex_count == 0 and not flags.materials  # a bone-only model
    assert [hex(b.flags) for b in flags.bones] == ["0x1e", "0x39a", "0x31a"]  # inherit rotation/translation
    hierarchy = read_model(folder / "bone_hierarchy_test2.pmx")
    assert [b.parent for b in hierarchy.bones] == [-1, 2, 0]  # a parent listed after its child
    uv = read_model(folder / "uv_morph_test.pmx")
    assert uv.name == "Uv Morph Test" and uv.vertex_count == 24 and uv.textures == ["ref.jpg"]
    matcap = read_model(folder / "matcap_sample.pmx")
    assert matcap.vertex_count == 2452 and len(matcap.faces) == 4900
    assert matcap.materials[0].texture == -1 and matcap.materials[0].sphere_texture == 0
    assert matcap.materials[0].sphere_mode == 1
    constraint = read_model(folder / "constraint_test.pmx")
    assert constraint.vertex_count == 48 and len(constraint.rigid_bodies) == 2
    assert constraint.rigid_bodies[1].mode == 1 and constraint.joints[0].rigid_b == 1
    assert constraint.materials[0].toon_shared and constraint.materials[0].toon == 1


def full_model(version=2.1, encoding="utf-16-le", vertices=6, additional_uvs=2):
    """A model using every weight type, morph kind, bone block and section of the format."""
    rng = np.random.default_rng(7)
    n = vertices
    m = Model(format="pmx", version=version, encoding=encoding, name="全部", name_en="everything",
              comment="コメント\r\n二行目", comment_en="comment")
    m.positions = rng.normal(size=(n, 3)).astype(np.float32)
    m.normals = rng.normal(size=(n, 3)).astype(np.float32)
    m.uvs = rng.random((n, 2)).astype(np.float32)
    m.additional_uvs = rng.random((n, additional_uvs, 4)).astype(np.float32)
    kinds = [BDEF1, BDEF2, BDEF4, SDEF] + ([QDEF] if version >= 2.1 else [])
    m.weight_types = np.array([kinds[i % len(kinds)] for i in range(n)], np.uint8)
    m.bone_indices = np.full((n, 4), -1, np.int32)
    m.bone_weights = np.zeros((n, 4), np.float32)
    m.sdef_c, m.sdef_r0, m.sdef_r1 = (np.zeros((n, 3), np.float32) for _ in range(3))
    for i, kind in enumerate(m.weight_types):
        if kind == BDEF1:
            m.bone_indices[i, 0], m.bone_weights[i, 0] = 1, 1.0
        elif kind in (BDEF2, SDEF):
            m.bone_indices[i, :2] = (0, 2)
            m.bone_weights[i, :2] = (np.float32(0.25), np.float32(1.0) - np.float32(0.25))
            if kind == SDEF:
                m.sdef_c[i], m.sdef_r0[i], m.sdef_r1[i] = (1, 2, 3), (4, 5, 6), (7, 8, 9)
        else:
            m.bone_indices[i] = (0, 1, 2, -1)
            m.bone_weights[i] = (0.5, 0.25, 0.25, 0.0)
    m.edge_scales = rng.random(n).astype(np.float32)
    m.faces = np.array([[0, 1, 2], [3, 4, 5]], np.int64)
    m.textures = ["tex/a.png", "tex/b.spa", "toon.bmp"]
    m.materials = [
        Material("材質", "mat", (1.0, 0.5, 0.25, 1.0), (0.5, 0.5, 0.5), 5.0, (0.25, 0.25, 0.25), 0x1F,
                 (0.0, 0.0, 0.0, 1.0), 1.5, 0, 1, 2, True, 3, "メモ", 3),
        Material("材質2", "", (1.0, 1.0, 1.0, 0.5), (0.0, 0.0, 0.0), 0.0, (0.5, 0.5, 0.5), 0x01,
                 (1.0, 0.0, 0.0, 1.0), 0.0, -1, -1, 0, False, 2, "", 3),
    ]
    m.bones = [
        Bone("センター", "center", (0.0, 8.0, 0.0), -1, 0, 0x001E, tail_offset=(0.0, 1.0, 0.0)),
        Bone("上半身", "upper", (0.0, 11.0, 0.0), 0, 0, 0x001B | BONE_FIXED_AXIS | BONE_LOCAL_AXIS,
             tail_bone=2, fixed_axis=(0.0, 1.0, 0.0), local_x=(1.0, 0.0, 0.0), local_z=(0.0, 0.0, 1.0)),
        Bone("首", "neck", (0.0, 15.0, 0.0), 1, 1, 0x001A | BONE_INHERIT_ROTATION | BONE_EXTERNAL_PARENT,
             inherit_parent=0, inherit_ratio=0.5, external_key=42),
        Bone("足ＩＫ", "leg IK", (1.0, 1.0, 0.0), 0, 2, 0x003E | BONE_IK, tail_offset=(0.0, 0.0, 1.0),
             ik=IK(target=2, loop_count=40, limit_angle=2.0,
                   links=[IKLink(1, ((-3.0, 0.0, 0.0), (-0.5, 0.0, 0.0))), IKLink(0)])),
    ]
    vec = np.array([[0.5, 0.0, 0.0]], np.float32)
    m.morphs = [
        Morph("あ", "a", 3, "vertex", vertex_indices=np.array([0, 5]), vertex_offsets=np.repeat(vec, 2, 0)),
        Morph("uv", "", 4, "uv", vertex_indices=np.array([1]), uv_offsets=np.ones((1, 4), np.float32)),
        Morph("uv2", "", 4, "uv2", vertex_indices=np.array([2]), uv_offsets=np.ones((1, 4), np.float32)),
        Morph("群", "", 4, "group", morph_indices=np.array([0, 1]), weights=np.array([1.0, 0.5], np.float32)),
        Morph("骨", "", 4, "bone", bone_indices=np.array([2]), translations=vec,
              rotations=np.array([[0.0, 0.0, 0.0, 1.0]], np.float32)),
        Morph("材", "", 4, "material", material_offsets=[MaterialOffset(
            -1, 1, (0.0, 0.0, 0.0, 0.5), (0.0, 0.0, 0.0), 0.0, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0), 0.0,
            (0.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0, 0.0), (1.0, 1.0, 1.0, 1.0))]),
    ]
    if version >= 2.1:
        m.morphs += [
            Morph("反転", "", 4, "flip", morph_indices=np.array([0]), weights=np.array([1.0], np.float32)),
            Morph("衝撃", "", 4, "impulse", impulse_offsets=[ImpulseOffset(0, True, (1.0, 0.0, 0.0), (0.0, 1.0, 0.0))]),
        ]
    m.display_frames = [DisplayFrame("Root", "Root", True, [(0, 0)]),
                        DisplayFrame("表情", "Exp", True, [(1, 0), (1, 3)]),
                        DisplayFrame("体", "", False, [(0, 1), (0, 2)])]
    m.rigid_bodies = [RigidBody("頭", "head", 2, 1, 0xFFFE, 0, (1.0, 1.0, 1.0), (0.0, 15.0, 0.0)),
                      RigidBody("髪", "", -1, 2, 0xFFFF, 2, (0.5, 2.0, 0.0), (0.0, 16.0, 1.0), mode=1)]
    m.joints = [Joint("髪J", "", 0, 0, 1, (0.0, 16.0, 0.0), rotation_max=(0.5, 0.5, 0.5))]
    if version >= 2.1:
        m.joints.append(Joint("ヒンジ", "", 5, 1, -1))
        fields = {"shape": 0, "material": 1, "group": 3, "no_collision_mask": 0xFFF0, "flags": 0x03,
                  "b_link_distance": 2, "cluster_count": 4, "mass": 1.5, "collision_margin": 0.25, "aero_model": 1}
        fields.update({key: float(i) for i, key in enumerate(pmx.SOFT_BODY_FLOATS)})
        fields.update({key: i for i, key in enumerate(pmx.SOFT_BODY_ITERATIONS)})
        fields.update({key: 0.5 for key in pmx.SOFT_BODY_MATERIAL})
        fields.update({"anchors": [(0, 3, 1), (-1, 4, 0)], "pins": [0, 5]})
        m.soft_bodies = [SoftBody("布", "cloth", fields)]
    return m


@pytest.mark.parametrize("version,encoding", [(2.0, "utf-16-le"), (2.0, "utf-8"), (2.1, "utf-16-le"), (2.1, "utf-8")])
def test_every_feature_round_trips(version, encoding, tmp_path):
    model = full_model(version, encoding)
    path = pmx.write(model, tmp_path / "full.pmx")
    again = pmx.read(path)
    assert_models_equal(again, model)
    assert pmx.to_bytes(again) == path.read_bytes()


def test_index_sizes_grow_with_counts_and_keep_signed_none():
    """300 vertices need 2-byte (unsigned) vertex indices; -1 texture and bone references survive."""
    model = full_model(2.0, vertices=300, additional_uvs=0)
    model.faces = np.array([[0, 1, 299], [255, 256, 257]], np.int64)
    model.materials[0].index_count = 6
    model.materials[1].index_count = 0
    data = pmx.to_bytes(model)
    assert data[9:17] == bytes([0, 0, 2, 1, 1, 1, 1, 1])  # encoding, add UV, then v/t/m/b/mo/r sizes
    again = pmx.parse(data)
    assert again.faces.tolist() == [[0, 1, 299], [255, 256, 257]]
    assert again.materials[1].texture == -1 and again.bones[0].parent == -1
    assert_models_equal(again, model)


def test_writer_refuses_what_pmx_2_0_cannot_hold():
    model = full_model(2.0)
    model.weight_types[0] = QDEF
    with pytest.raises(ValueError, match="QDEF"):
        pmx.to_bytes(model)
    model = full_model(2.0)
    model.morphs.append(Morph("反転", kind="flip"))
    with pytest.raises(ValueError, match="flip"):
        pmx.to_bytes(model)


def test_read_model_dispatches_on_magic_not_suffix(tmp_path):
    path = tmp_path / "model.pmd"  # a PMX file with the wrong suffix still reads as PMX
    pmx.write(full_model(2.0), path)
    assert read_model(path).format == "pmx"
    other = tmp_path / "image.pmx"
    other.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(MMDFormatError, match="not an MMD model"):
        read_model(other)
