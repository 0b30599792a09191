"""Gene_light.pmx imported into Blender: counts, textures, bones, morphs, axes and a front render.

The model is imported once per module (a quarter of a second, but rendering and evaluating it
add up); the conftest's per-test scene reset is replaced here by a module-wide one, and tests
that change the model put it back.
"""

import json

import bpy
import numpy as np
import pytest
from PIL import Image

GENE = ("assets", "mmd", "gene_light", "Gene_light.pmx")


@pytest.fixture(autouse=True)
def empty_scene():
    """Overrides the conftest's per-test reset: the module's tests share one imported model."""
    yield


@pytest.fixture(scope="module")
def gene_file(shared):
    return shared.joinpath(*GENE)


@pytest.fixture(scope="module")
def gene_model(gene_file, ext):
    from tha_studio.render.formats.mmd import read_model

    return read_model(gene_file)


@pytest.fixture(scope="module")
def gene(gene_file, ext):
    import importlib

    model_import = importlib.import_module(f"{ext.__name__}.render.blender.model_import")
    bpy.ops.wm.read_homefile(use_empty=True)
    return model_import.import_model(gene_file)


def test_counts_equal_the_files(gene, gene_model):
    mesh = gene.meshes[0].data
    assert (len(mesh.vertices), len(mesh.polygons)) == (28646, 47106)
    assert len(mesh.vertices) == len(gene_model.positions) and len(mesh.polygons) == len(gene_model.faces)
    assert len(mesh.materials) == len(gene_model.materials) == 13
    assert len(gene.armature.data.bones) == len(gene_model.bones) == 224
    assert len(gene.morphs) == len(gene_model.morphs) == 184
    # A shape key per vertex morph and per group morph with vertex parts (all 3 here), plus Basis.
    kinds = [morph.kind for morph in gene_model.morphs]
    assert len(mesh.shape_keys.key_blocks) == 1 + kinds.count("vertex") + kinds.count("group")
    assert all(key.value == 0.0 for key in mesh.shape_keys.key_blocks[1:])
    info = json.loads(gene.root["tha_studio_model"])
    assert info["counts"]["rigid_bodies"] == len(gene_model.rigid_bodies) == 87


def test_every_texture_is_found_and_shown(gene, gene_model, gene_file):
    assert gene.warnings == []
    # (Found in the model file's own folder: where ../shared is a link, the folder it leads to.)
    folder = gene_file.resolve().parent
    loaded = {bpy.path.abspath(image.filepath) for image in bpy.data.images if image.source == "FILE"}
    wanted = {str(folder / path) for path in gene_model.textures}
    assert loaded == wanted
    for slot, material in zip(gene.meshes[0].data.materials, gene_model.materials):
        images = [n.image for n in slot.node_tree.nodes if n.bl_idname == "ShaderNodeTexImage"]
        assert [bpy.path.abspath(i.filepath) for i in images] == [str(folder / gene_model.textures[material.texture])]
        assert images[0].size[0] > 0  # Blender can read it


def test_neck_and_head_bones_keep_japanese_names_and_record_english_ones(gene):
    bones = gene.armature.data.bones
    assert "首" in bones and "頭" in bones
    assert bones["頭"].parent == bones["首"]
    assert bones["首"]["name_en"] == "neck" and bones["頭"]["name_en"] == "head"
    assert bones["頭"].head_local.z > bones["首"].head_local.z > 1.0  # 1.6 m character, Z up
    assert gene.bone("ｸﾋﾞ") is None and gene.bone("首").name == "首"


def test_vertex_weights_equal_the_files(gene, gene_model):
    obj = gene.meshes[0]
    names = [group.name for group in obj.vertex_groups]
    for vertex in range(0, len(gene_model.positions), 97):
        kind = gene_model.weight_types[vertex]
        bones, weights = gene_model.bone_indices[vertex], gene_model.bone_weights[vertex]
        if kind == 0:
            expected = {bones[0]: 1.0}
        elif kind == 1:
            expected = {bones[0]: weights[0]}
            expected[bones[1]] = expected.get(bones[1], 0.0) + 1.0 - weights[0]
        else:
            expected = {}
            for bone, weight in zip(bones, weights):
                if bone >= 0:
                    expected[bone] = expected.get(bone, 0.0) + weight
        expected = {gene_model.bones[b].name: w for b, w in expected.items() if w > 0}
        actual = {names[g.group]: g.weight for g in obj.data.vertices[vertex].groups}
        assert actual.keys() == expected.keys(), vertex
        assert np.allclose([actual[k] for k in expected], list(expected.values()), atol=1e-6)


def test_mouth_a_moves_the_mouth_and_nothing_below_the_neck(gene, ext_module):
    evaluated_vertices = ext_module("render.blender.scene").evaluated_vertices
    obj = gene.meshes[0]
    rest = evaluated_vertices(obj)
    assert gene.set_morph("あ", 1.0) == 1
    try:
        opened = evaluated_vertices(obj)
    finally:
        gene.set_morph("あ", 0.0)
    moved = np.linalg.norm(opened - rest, axis=1) > 1e-6
    assert moved.sum() > 50
    neck = gene.armature.data.bones["首"].head_local.z
    head = gene.armature.data.bones["頭"].head_local.z
    assert rest[moved, 2].min() > neck
    mouth = rest[moved].mean(axis=0)
    assert neck < mouth[2] < head + 0.1 and abs(mouth[0]) < 0.02  # centred, at mouth height
    assert mouth[1] < 0  # the face is on the -Y side


def test_faces_point_the_way_the_files_normals_do(gene, gene_model):
    mesh = gene.meshes[0].data
    face_normals = np.empty(len(mesh.polygons) * 3, np.float32)
    mesh.polygons.foreach_get("normal", face_normals)
    file_normals = gene_model.normals[gene_model.faces].mean(axis=1)[:, (0, 2, 1)]
    agreement = np.einsum("ij,ij->i", face_normals.reshape(-1, 3), file_normals)
    assert (agreement > 0).mean() > 0.97


def test_group_morph_is_flattened_with_its_weights(gene, gene_model):
    index = gene_model.morph_index("叫び")
    group = gene_model.morphs[index]
    record = gene.morph("叫び")
    assert record["kind"] == "group"
    assert [e["morph"] for e in record["elements"]] == [gene_model.morphs[i].name for i in group.morph_indices]
    keys = gene.meshes[0].data.shape_keys.key_blocks
    basis = np.empty(len(gene_model.positions) * 3, np.float32)
    keys["Basis"].data.foreach_get("co", basis)
    shouted = np.empty_like(basis)
    keys[record["shape_keys"][gene.meshes[0].name]].data.foreach_get("co", shouted)
    expected = np.zeros((len(gene_model.positions), 3), np.float32)
    for child, weight in zip(group.morph_indices, group.weights):
        morph = gene_model.morphs[child]
        np.add.at(expected, morph.vertex_indices, morph.vertex_offsets * weight)
    assert np.allclose((shouted - basis).reshape(-1, 3), expected[:, (0, 2, 1)] * 0.08, atol=1e-6)


def test_material_and_uv_morphs_are_recorded_without_shape_keys(gene, gene_model):
    pale = gene.morph("青ざめ")
    assert pale["kind"] == "material" and pale["shape_keys"] == {}
    offsets = gene_model.morphs[gene_model.morph_index("青ざめ")].material_offsets
    assert len(pale["materials"]) == len(offsets) > 0
    assert pale["materials"][0]["material"] in bpy.data.materials
    assert gene.morph("メッシュなし")["kind"] == "uv"
    assert gene.morph("ｳｲﾝｸ右")["name"] == "ウィンク右"  # name variants meet through normalize_name
    blink = gene.morph("まばたき")
    assert blink["kind"] == "vertex" and blink["panel"] == 2 and blink["shape_keys"]


def test_front_render_shows_the_whole_character(gene, tmp_path, ext):
    import importlib

    scene = importlib.import_module(f"{ext.__name__}.render.blender.scene")
    scene.setup_render(engine="WORKBENCH", resolution=(256, 256))
    low, high = scene.world_bounds(gene.meshes)
    assert np.allclose(high[2] - low[2], 1.6, atol=0.1)  # about 20 MMD units at 0.08
    camera = scene.aim_orthographic_camera(low, high, margin=0.05)
    try:
        path = scene.render_to_png(tmp_path / "front.png")
    finally:
        bpy.data.objects.remove(camera)
    rgba = np.asarray(Image.open(path).convert("RGBA"))
    assert rgba.shape == (256, 256, 4)
    alpha = rgba[..., 3] > 0
    assert 0.12 < alpha.mean() < 0.45  # a slim T-posed figure, not an empty or filled frame
    rows, columns = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    # The model's height fills the frame between the margins (about 12 px each side).
    assert rows[0] <= 14 and rows[-1] >= 241
    assert abs((columns[0] + columns[-1]) / 2 - 127.5) < 4  # centred left-right
    assert columns[-1] - columns[0] > 150  # arms spread (T pose)
    # Head at the top: the top fifth is a narrow head, not the arms.
    head_rows = alpha[rows[0] : rows[0] + 40]
    assert head_rows.any(axis=0).sum() < 70
    # Textured, not flat grey: the face and hair region has varied colours.
    face = rgba[rows[0] : rows[0] + 40][head_rows][:, :3]
    assert face.std(axis=0).max() > 20
