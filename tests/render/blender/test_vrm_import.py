"""VRM 0.x, VRM 1.0 and plain glb avatars through Blender's glTF importer, expressions recorded.

The avatars are made here (gltf_fixtures): two meshes with shape keys exported by Blender's
glTF exporter, and the same glb with VRM 0.x or VRM 1.0 expression JSON added.
"""

import json

import bpy
import numpy as np
import pytest

import gltf_fixtures


@pytest.fixture(scope="module")
def avatars(tmp_path_factory, ext):
    folder = tmp_path_factory.mktemp("avatars")
    glb = gltf_fixtures.export_face_glb(folder / "face.glb")
    return {
        "glb": glb,
        "vrm0": gltf_fixtures.make_vrm0(glb, folder / "face0.vrm"),
        "vrm1": gltf_fixtures.make_vrm1(glb, folder / "face1.vrm"),
    }


@pytest.fixture
def model_import(ext_module):
    return ext_module("render.blender.model_import")


def key_offsets(obj, key_name):
    keys = obj.data.shape_keys.key_blocks
    basis = np.array([p.co for p in keys["Basis"].data])
    return np.array([p.co for p in keys[key_name].data]) - basis


def test_plain_glb_records_each_shape_key_name_once_across_meshes(avatars, model_import):
    imported = model_import.import_model(avatars["glb"])
    assert imported.format == "glb"
    assert sorted(o.name for o in imported.meshes) == ["Face", "Teeth"]
    names = [m["name"] for m in imported.morphs]
    assert names == list(gltf_fixtures.FACE_KEYS)
    assert imported.morph("a")["shape_keys"] == {"Face": "A", "Teeth": "A"}
    assert all(m["kind"] == "vertex" for m in imported.morphs)
    assert imported.set_morph("A", 1.0) == 2


def test_vrm0_expressions_with_weights_and_a_flattened_mix(avatars, model_import):
    imported = model_import.import_model(avatars["vrm0"])
    assert imported.format == "vrm0"
    assert [m["name"] for m in imported.morphs] == ["A", "Blink", "Joy", "Surprised"]
    a = imported.morph("A")
    assert a["preset"] == "a" and a["panel"] == 3 and a["kind"] == "group"
    assert a["shape_keys"] == {"Face": "A", "Teeth": "A"}  # one target at full weight: reused
    assert imported.morph("blink")["panel"] == 2
    joy = imported.morph("Joy")
    assert [(e["shape_key"], e["weight"]) for e in joy["elements"]] == [("Smile_L", 0.5), ("Smile_R", 1.0)]
    face = bpy.data.objects["Face"]
    mixed = key_offsets(face, joy["shape_keys"]["Face"])
    expected = 0.5 * key_offsets(face, "Smile_L") + key_offsets(face, "Smile_R")
    assert np.allclose(mixed, expected, atol=1e-6) and np.abs(mixed).max() > 0.05
    surprised = imported.morph("Surprised")
    assert surprised["preset"] is None and surprised["shape_keys"] == {}
    assert surprised["other_binds"]["materialValues"][0]["propertyName"] == "_Color"


def test_vrm0_is_turned_to_face_minus_y_like_mmd_models(avatars, model_import):
    def world_face(imported):
        bpy.context.view_layer.update()
        face = next(o for o in imported.meshes if o.name == "Face")
        return np.array([face.matrix_world @ v.co for v in face.data.vertices])

    plain_face = world_face(model_import.import_model(avatars["glb"]))
    bpy.ops.wm.read_homefile(use_empty=True)
    turned = world_face(model_import.import_model(avatars["vrm0"]))
    # The same geometry, turned half a turn about Z: x and y change sign, z stays.
    assert np.allclose(turned, plain_face * (-1, -1, 1), atol=1e-5)


def test_vrm1_presets_and_custom_expressions(avatars, model_import):
    imported = model_import.import_model(avatars["vrm1"])
    assert imported.format == "vrm1"
    assert [m["name"] for m in imported.morphs] == ["aa", "blink", "happy", "smirk"]
    assert imported.morph("aa")["shape_keys"] == {"Face": "A", "Teeth": "A"}
    assert imported.morph("smirk")["preset"] is None and imported.morph("smirk")["shape_keys"] == {"Face": "Smile_L"}
    happy = imported.morph("happy")
    face = bpy.data.objects["Face"]
    expected = 0.5 * key_offsets(face, "Smile_L") + 0.5 * key_offsets(face, "Smile_R")
    assert np.allclose(key_offsets(face, happy["shape_keys"]["Face"]), expected, atol=1e-6)


def test_avatar_morphs_survive_a_saved_blend(avatars, model_import, tmp_path):
    imported = model_import.import_model(avatars["vrm0"])
    path = tmp_path / "avatar.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True)
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=str(path))
    again = model_import.ImportedModel.from_object(bpy.data.objects["Teeth"])
    assert again.morphs == json.loads(json.dumps(imported.morphs))
    assert again.format == "vrm0" and sorted(o.name for o in again.meshes) == ["Face", "Teeth"]
    assert again.set_morph("Joy", 1.0) == 1


def test_a_pose_moves_every_mesh_an_expression_binds(avatars, ext_module, model_import):
    # The VRM 0.x "A" opens the mouth on the face and on the teeth, two meshes: posing sets both
    # (it once set the shape keys of the first mesh alone), and a one-sided role gets each mesh's
    # half by where the mesh sits in the scene.
    imported = model_import.import_model(avatars["vrm0"])
    annotations = ext_module("render.dataset.annotation")
    annotation = annotations.annotate_model_file(avatars["vrm0"])
    assert annotation.morphs_for("mouth_aaa") == [("A", 1.0, None)]
    annotation.set_morph_role("eye_wink_left", "Blink", side="left")
    schema = ext_module("pose.schema").get_schema("tha3")
    poser = ext_module("render.blender.posing").ModelPoser(imported, annotation, schema)
    pose = schema.neutral()
    pose[schema.index("mouth_aaa")] = 0.75
    pose[schema.index("eye_wink_left")] = 1.0
    poser.apply(pose)
    keys = {obj.name: obj.data.shape_keys.key_blocks for obj in imported.meshes}
    assert keys["Face"]["A"].value == keys["Teeth"]["A"].value == 0.75
    assert keys["Face"]["Blink.tha_left"].value == 1.0 and keys["Face"]["Blink"].value == 0.0
    left = bpy.data.objects["Face"].vertex_groups["tha_side_left"]
    world = np.array([bpy.data.objects["Face"].matrix_world @ v.co for v in bpy.data.objects["Face"].data.vertices])
    in_group = np.array([any(g.group == left.index for g in v.groups) for v in bpy.data.objects["Face"].data.vertices])
    assert in_group.any() and (world[in_group, 0] > 0).all() and (world[~in_group, 0] <= 0).all()
    poser.reset()
    assert keys["Face"]["A"].value == keys["Teeth"]["A"].value == keys["Face"]["Blink.tha_left"].value == 0.0
