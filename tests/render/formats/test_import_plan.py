"""The import plan, without Blender: what an MMD import will create, in Blender's axes.

Gene_light and the edge-case files of ../shared; small hand-made models for nested group morphs,
whose weights multiply down the nesting and which are refused when they contain themselves.
"""

import re

import numpy as np
import pytest

from tha_studio.render.dataset import annotation
from tha_studio.render.formats.mmd import read_model
from tha_studio.render.formats.mmd import import_plan as P
from tha_studio.render.formats.mmd.model import BONE_TAIL_IS_BONE, Bone, MaterialOffset, Material, Model, Morph

SCALE = 0.08


@pytest.fixture(scope="module")
def gene_file(shared):
    return shared / "assets" / "mmd" / "gene_light" / "Gene_light.pmx"


@pytest.fixture(scope="module")
def gene(gene_file):
    return read_model(gene_file)


@pytest.fixture(scope="module")
def gene_plan(gene, gene_file):
    return P.plan_import(gene, SCALE, gene_file.parent)


def edge_case(shared, name):
    return read_model(shared / "assets" / "mmd" / "edge_cases" / f"{name}.pmx")


# --- Gene_light, the real model


def test_gene_counts_are_the_files(gene, gene_plan):
    plan = gene_plan
    assert plan.counts == {"vertices": 28646, "faces": 47106, "materials": 13, "bones": 224, "morphs": 184,
                           "rigid_bodies": 87, "joints": 92}
    assert plan.vertices.shape == (28646, 3) and plan.vertices.dtype == np.float32
    assert plan.loops.shape == (3 * 47106,) and plan.loop_starts.shape == (47106,)
    assert plan.uvs.shape == (3 * 47106, 2) and plan.normals.shape == (28646, 3)
    assert len(plan.materials) == 13 and len(plan.bones) == 224 and len(plan.morphs) == 184
    # Faces per material in file order: material i draws index_count / 3 faces.
    assert np.bincount(plan.face_materials).tolist() == [m.index_count // 3 for m in gene.materials]
    # A shape key per vertex morph (177) and per group morph (3, each with a vertex part).
    assert len(plan.shape_keys) == 177 + 3
    assert [key.morph for key in plan.shape_keys] == [i for i, m in enumerate(gene.morphs) if m.kind in ("vertex", "group")]


def test_gene_is_in_blenders_axes_facing_minus_y(gene, gene_plan):
    plan = gene_plan
    assert np.array_equal(plan.vertices, gene.positions[:, (0, 2, 1)] * np.float32(SCALE))
    low, high = plan.vertices.min(axis=0), plan.vertices.max(axis=0)
    assert 1.5 < high[2] - low[2] < 1.7  # Z is up: a 1.6 m character at 0.08
    # The mouth (what あ moves) is in front of the head's centre, on the -Y side.
    mouth = plan.shape_key("あ")
    moved = mouth.vertex_indices[np.linalg.norm(mouth.offsets, axis=1) > 1e-6]
    head = plan.bones[gene.bone_index("頭")].head
    assert plan.vertices[moved, 1].mean() < head[1] - 0.02
    # The axis swap mirrors, so each triangle's winding is reversed: its front still faces out.
    assert plan.loops[:6].tolist() == gene.faces[:2, ::-1].ravel().tolist()
    corners = plan.vertices[plan.loops.reshape(-1, 3)]
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    agreement = np.einsum("ij,ij->i", face_normals, plan.normals[plan.loops.reshape(-1, 3)].mean(axis=1))
    assert (agreement > 0).mean() > 0.97
    assert np.allclose(np.linalg.norm(plan.normals, axis=1), 1.0, atol=1e-5)
    # V runs up in Blender, down in MMD.
    assert np.allclose(plan.uvs[:3, 1], 1.0 - gene.uvs[gene.faces[0, ::-1], 1])


def test_gene_textures_are_found_and_bones_keep_names_and_tails(gene, gene_plan, gene_file):
    for planned, material in zip(gene_plan.materials, gene.materials):
        assert planned.texture == gene_file.parent / gene.textures[material.texture]
        assert planned.name == material.name and planned.warnings == ()
    assert gene_plan.warnings == []
    neck, head = (gene_plan.bones[gene.bone_index(name)] for name in ("首", "頭"))
    assert head.parent == gene.bone_index("首") and head.name_en == "head"
    assert head.head[2] > neck.head[2] > 1.0
    for i, (bone, planned) in enumerate(zip(gene.bones, gene_plan.bones)):
        assert np.linalg.norm(planned.tail - planned.head) > 1e-6, bone.name
        if bone.flags & BONE_TAIL_IS_BONE and 0 <= bone.tail_bone < len(gene.bones) and bone.tail_bone != i:
            tail_bone = gene_plan.bones[bone.tail_bone]
            if np.linalg.norm(tail_bone.head - planned.head) > 1e-4:
                assert np.array_equal(planned.tail, tail_bone.head), bone.name
    assert np.allclose(neck.tail, head.head)  # the neck ends where the head starts


def test_gene_weights_group_by_bone_and_weight_and_sum_to_one(gene, gene_plan):
    groups = gene_plan.weight_groups
    keys = [(g.bone, g.weight) for g in groups]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    total = np.zeros(len(gene.positions))
    for group in groups:
        assert 0 <= group.bone < len(gene.bones) and group.weight > 0
        np.add.at(total, group.vertices, group.weight)
    assert np.allclose(total, 1.0, atol=1e-5)  # BDEF1, BDEF2 and BDEF4 weights of every vertex
    # BDEF1 vertices are wholly their one bone's.
    vertex = int(np.flatnonzero(gene.weight_types == 0)[0])
    owners = [g for g in groups if vertex in g.vertices]
    assert [(g.bone, g.weight) for g in owners] == [(int(gene.bone_indices[vertex, 0]), 1.0)]


def test_gene_group_morph_is_flattened_with_its_weights(gene, gene_plan):
    index = gene.morph_index("叫び")
    group = gene.morphs[index]
    key = gene_plan.shape_key("叫び")
    expected = np.zeros((len(gene.positions), 3), np.float32)
    for child, weight in zip(group.morph_indices, group.weights):
        np.add.at(expected, gene.morphs[child].vertex_indices, gene.morphs[child].vertex_offsets * weight)
    moved = key.coordinates(gene_plan.vertices) - gene_plan.vertices
    assert np.allclose(moved, expected[:, (0, 2, 1)] * SCALE, atol=1e-6)
    record = gene_plan.morphs[index]
    assert record.kind == "group" and record.bones == [] and record.materials == []
    assert [(e.morph, round(e.weight, 6)) for e in record.elements] == [("ワ", 0.6), ("mouth_surprise_geo", 0.3)]


def test_gene_material_morph_record_names_blenders_materials(gene, gene_plan):
    index = gene.morph_index("青ざめ")
    record = gene_plan.morphs[index]
    assert record.kind == "material" and record.materials
    targets = [change.material for change in record.materials]
    blender_names = [f"{m.name}.001" for m in gene.materials]  # as if Blender had renamed them all
    entries = record.as_json({}, [b.name for b in gene.bones], blender_names)["materials"]
    assert [e["material"] for e in entries] == [blender_names[t] if 0 <= t < len(blender_names) else None
                                                for t in targets]
    assert all("weight" not in e for e in entries)
    blink = gene_plan.morphs[gene.morph_index("まばたき")].as_json({"mesh": "まばたき"}, [], [])
    assert (blink["kind"], blink["panel"], blink["shape_keys"]) == ("vertex", 2, {"mesh": "まばたき"})
    assert blink["vertex_count"] == len(gene.morphs[gene.morph_index("まばたき")].vertex_indices)


# --- The edge-case files: bones only, tails from tail bones and offsets


def test_bone_tails_follow_the_tail_bone_or_the_offset_and_never_vanish(shared):
    scale = 0.1
    lift = np.array([0, 0, P.MIN_BONE_LENGTH * scale], np.float32)
    plan = P.plan_import(edge_case(shared, "bone_hierarchy_test"), scale)
    root, bone1, bone2, bone3, loose = plan.bones
    # A tail bone that is the bone itself's missing (-1): a short bone pointing up, not zero length.
    assert np.allclose(bone1.tail, bone1.head + lift)
    # Tail bone 0: the tail is the root's head, at the origin.
    assert np.allclose(bone2.tail, root.head) and np.allclose(bone3.tail, root.head)
    assert np.allclose(bone2.head, [0.5, 0, 1.0])  # MMD (5, 10, 0) -> Blender (5, 0, 10) * 0.1
    # A zero offset: a short bone pointing up.
    assert np.allclose(loose.tail, loose.head + lift)
    assert [b.parent for b in plan.bones] == [-1, 0, -1, 0, -1]

    plan = P.plan_import(edge_case(shared, "bone_hierarchy_test2"), scale)
    center, first, second = plan.bones
    # Offset (0, 10, 0) in MMD is +Z in Blender; a parent listed after its child stays its parent.
    assert np.allclose(first.tail - first.head, [0, 0, 1.0]) and first.parent == 2
    assert (center.name, center.name_j) == ("センター", "センター")


@pytest.mark.parametrize("name", ["bone_flag_test", "bone_hierarchy_test", "bone_hierarchy_test2", "constraint_test",
                                  "matcap_sample", "uv_morph_test"])
def test_edge_cases_plan_every_vertex_face_and_bone(shared, name):
    model = edge_case(shared, name)
    folder = shared / "assets" / "mmd" / "edge_cases"
    plan = P.plan_import(model, SCALE, folder)
    assert len(plan.vertices) == len(model.positions) and len(plan.loop_starts) == len(model.faces)
    assert len(plan.bones) == len(model.bones) and plan.morphs == [] and plan.shape_keys == []
    assert all(np.linalg.norm(b.tail - b.head) > 0 for b in plan.bones)
    # The matcap and UV samples name ref.jpg, which the folder lacks: a warning, not a failure.
    missing = [t for t in model.textures if not (folder / t).exists()]
    assert len(plan.warnings) == sum(
        1 for m in model.materials for index in (m.texture, m.sphere_texture, -1 if m.toon_shared else m.toon)
        if 0 <= index < len(model.textures) and model.textures[index] in missing)
    assert all("not found under" in w for w in plan.warnings)
    assert P.plan_import(model, SCALE).warnings == []  # no folder: textures not looked for


# --- Group morphs, nested and broken


def vertex_morph(name, vertex, offset):
    return Morph(name, kind="vertex", vertex_indices=np.array([vertex]), vertex_offsets=np.array([offset], np.float32))


def group(name, children, weights):
    return Morph(name, kind="group", morph_indices=np.array(children), weights=np.array(weights, np.float32))


def triangle_model(morphs):
    return Model(
        name="tri",
        positions=np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32),
        normals=np.array([[0, 0, -1]] * 3, np.float32),
        uvs=np.zeros((3, 2), np.float32),
        weight_types=np.zeros(3, np.uint8),
        bone_indices=np.array([[0, -1, -1, -1]] * 3, np.int32),
        bone_weights=np.array([[1, 0, 0, 0]] * 3, np.float32),
        faces=np.array([[0, 1, 2]]),
        materials=[Material(name="skin", index_count=3)],
        bones=[Bone("root"), Bone("head", position=(0, 1, 0), parent=0)],
        morphs=morphs,
    )


def nested_model():
    bone = Morph("nod", kind="bone", bone_indices=np.array([1, 7]), translations=np.array([[0, 1, 2], [0, 0, 0]], np.float32),
                 rotations=np.array([[0.0, 0.0, 0.6, 0.8], [0, 0, 0, 1]], np.float32))
    pale = Morph("pale", kind="material", material_offsets=[
        MaterialOffset(-1, 0, (1, 1, 1, 1), (0, 0, 0), 1.0, (1, 1, 1), (0, 0, 0, 1), 1.0, (1, 1, 1, 1), (1, 1, 1, 1),
                       (1, 1, 1, 1))])
    return triangle_model([
        vertex_morph("up", 0, (0, 1, 0)),  # 0
        vertex_morph("right", 1, (1, 0, 0)),  # 1
        bone,  # 2
        pale,  # 3
        group("inner", [0, 2, 1, 99], [0.5, 0.5, 1.0, 1.0]),  # 4: 99 is out of range, skipped
        group("outer", [4, 3, 0, 4], [0.5, 1.0, 0.25, 0.5]),  # 5: inner twice (a diamond, not a cycle)
    ])


def test_nested_groups_multiply_weights_down_and_add_them_up():
    model = nested_model()
    assert P.flatten_group(model.morphs, 4) == {0: 0.5, 2: 0.5, 1: 1.0}
    assert P.flatten_group(model.morphs, 5) == {0: 0.75, 2: 0.5, 1: 1.0, 3: 1.0}
    assert P.flatten_group(model.morphs, 0) == {0: 1.0}  # a non-group morph is itself

    plan = P.plan_import(model, 1.0)
    outer = plan.shape_key("outer")
    moved = outer.coordinates(plan.vertices) - plan.vertices
    assert np.allclose(moved, [[0, 0, 0.75], [1.0, 0, 0], [0, 0, 0]])  # MMD +Y is Blender +Z
    record = plan.morphs[5]
    assert [(e.morph, e.weight) for e in record.elements] == [("inner", 0.5), ("pale", 1.0), ("up", 0.25),
                                                              ("inner", 0.5)]
    # The bone morph's bone 7 does not exist: left out. Its turn is mirrored into Blender's axes.
    assert record.bones == [P.BoneOffset(1, (0.0, 2.0, 1.0), (0.800000011920929, -0.0, -0.6000000238418579, -0.0), 0.5)]
    assert [(c.material, c.operation, c.weight) for c in record.materials] == [(-1, "multiply", 1.0)]
    entry = record.as_json({"tri_mesh": "outer"}, ["root", "head.001"], ["skin"])
    assert entry["bones"][0]["bone"] == "head.001" and entry["materials"][0]["material"] is None
    assert entry["materials"][0]["weight"] == 1.0 and entry["shape_keys"] == {"tri_mesh": "outer"}
    # Annotation measures the same flattened offsets (in the file's axes).
    indices, offsets = annotation.morph_offsets(model, 5)
    summed = np.zeros((3, 3))
    np.add.at(summed, indices, offsets)
    assert np.allclose(summed, [[0, 0.75, 0], [1.0, 0, 0], [0, 0, 0]])


@pytest.mark.parametrize("morphs, words", [
    ([vertex_morph("up", 0, (0, 1, 0)), group("あ", [0, 1], [1, 1])], "'あ' contains itself: 'あ' -> 'あ'"),
    ([vertex_morph("up", 0, (0, 1, 0)), group("a", [0, 2], [1, 1]), group("b", [1], [1])],
     "'a' contains itself: 'a' -> 'b' -> 'a'"),
])
def test_a_group_that_contains_itself_is_refused_by_name(morphs, words):
    model = triangle_model(morphs)
    with pytest.raises(P.GroupMorphError, match=re.escape(words)):
        P.plan_import(model)
    # Annotation reads the same groups (named like mouth shapes here) and refuses them too.
    with pytest.raises(annotation.AnnotationError, match="contains itself"):
        annotation.annotate_model(model, "tri.pmx")


def test_nesting_deeper_than_the_limit_is_refused_and_the_limit_is_not():
    def chain(depth):
        # group 1 holds group 2 ... holds group `depth`, which holds the vertex morph 0.
        return [vertex_morph("up", 0, (0, 1, 0))] + [
            group(f"g{level}", [level + 1 if level < depth else 0], [0.5]) for level in range(1, depth + 1)]

    deepest = chain(P.MAX_GROUP_DEPTH)
    plan = P.plan_import(triangle_model(deepest))
    assert P.flatten_group(deepest, 1) == {0: 0.5 ** P.MAX_GROUP_DEPTH}
    assert len(plan.shape_keys) == 1 + P.MAX_GROUP_DEPTH
    # Flattened from the inside out with one cache, the outer groups reuse the inner ones.
    cache = {}
    for index in range(P.MAX_GROUP_DEPTH, 0, -1):
        P.flatten_group(deepest, index, cache)
    assert P.flatten_group(deepest, 1, cache) == {0: 0.5 ** P.MAX_GROUP_DEPTH}

    too_deep = chain(P.MAX_GROUP_DEPTH + 1)
    with pytest.raises(P.GroupMorphError, match=f"'g1' nests group morphs more than {P.MAX_GROUP_DEPTH} deep"):
        P.plan_import(triangle_model(too_deep))
    # Also when the inner groups were flattened (and cached) first.
    cache = {}
    P.flatten_group(too_deep, 2, cache)
    with pytest.raises(P.GroupMorphError, match="more than"):
        P.flatten_group(too_deep, 1, cache)
