"""Reading VRM 0.x / 1.0 expressions and glTF morph target names from glTF JSON (no Blender)."""

import json
import struct

import pytest

from tha_studio.render.formats.avatar_expressions import (
    AvatarFormatError,
    describe,
    read_description,
    read_gltf_json,
    shape_key_names,
)


def glb_bytes(document):
    text = json.dumps(document).encode()
    text += b" " * (-len(text) % 4)
    return struct.pack("<4sII", b"glTF", 2, 20 + len(text)) + struct.pack("<II", len(text), 0x4E4F534A) + text


def mesh(name, targets, target_names=None, position=True):
    attributes = {"POSITION": 0} if position else {"NORMAL": 0}
    body = {"primitives": [{"attributes": {"POSITION": 0}, "targets": [dict(attributes) for _ in range(targets)]}]}
    if name:
        body["name"] = name
    if target_names is not None:
        body["extras"] = {"targetNames": target_names}
    return body


def test_shape_key_names_follow_the_importers_rules():
    document = {"asset": {}, "accessors": [{"name": "from_accessor"}]}
    assert shape_key_names(document, mesh("m", 3, ["A", "", "A"])) == ["A", "from_accessor", "A.001"]
    assert shape_key_names(document, mesh("m", 2, ["Basis", "Basis"])) == ["Basis.001", "Basis.002"]
    assert shape_key_names({"asset": {}}, mesh("m", 2)) == ["target_0", "target_1"]
    assert shape_key_names(document, mesh("m", 1, ["N"], position=False)) == [None]


def test_vrm0_groups_weights_presets_and_bad_binds():
    document = {
        "asset": {"version": "2.0"},
        "meshes": [mesh("Face", 2, ["A", "Blink"]), mesh(None, 1, ["A"])],
        "extensions": {"VRM": {"meta": {"title": "T"}, "blendShapeMaster": {"blendShapeGroups": [
            {"name": "A", "presetName": "a", "binds": [{"mesh": 0, "index": 0, "weight": 100},
                                                      {"mesh": 1, "index": 0, "weight": 40}]},
            {"name": "Blink_L", "presetName": "blink_l", "binds": [{"mesh": 5, "index": 0, "weight": 100}]},
            {"name": "Custom", "presetName": "unknown", "binds": []},
        ]}}},
    }
    description = describe(document, "x.vrm")
    assert (description.format, description.name, description.faces_back) == ("vrm0", "T", True)
    assert description.mesh_names == ["Face", "Mesh_1"]
    a, blink, custom = description.expressions
    assert [(b.mesh, b.target, b.weight) for b in a.binds] == [(0, 0, 1.0), (1, 0, 0.4)]
    assert (a.preset, a.panel, blink.panel, custom.preset) == ("a", 3, 2, None)
    assert blink.binds == [] and "mesh 5" in description.warnings[0]


def test_vrm1_expressions_map_nodes_to_meshes():
    document = {
        "asset": {"version": "2.0"},
        "meshes": [mesh("Face", 2, ["A", "Joy"])],
        "nodes": [{"name": "root"}, {"name": "face", "mesh": 0}],
        "extensions": {"VRMC_vrm": {"meta": {"name": "N"}, "expressions": {
            "preset": {"ou": {"morphTargetBinds": [{"node": 1, "index": 0, "weight": 0.5}]},
                       "happy": {"morphTargetBinds": [{"node": 0, "index": 1, "weight": 1.0}],
                                 "overrideBlink": "block"}},
            "custom": {"wow": {"morphTargetBinds": [{"node": 1, "index": 1, "weight": 1.0}]}},
        }}},
    }
    description = describe(document, "x.vrm")
    assert (description.format, description.faces_back) == ("vrm1", False)
    ou, happy, wow = description.expressions
    assert [(b.mesh, b.target, b.weight) for b in ou.binds] == [(0, 0, 0.5)] and ou.panel == 3
    assert happy.binds == [] and happy.other_binds == {"overrideBlink": "block"}
    assert "node 0" in description.warnings[0]
    assert (wow.preset, wow.binds[0].target) == (None, 1)


def test_binds_of_the_wrong_kind_are_left_out_with_a_warning_and_malformed_documents_named(tmp_path):
    """Found by mutating VRM files: an index given as text, a dict or 1.5, a weight that is not a
    number or a name that is a number ended the import in a TypeError."""
    document = {
        "asset": {"version": "2.0"},
        "meshes": [mesh("Face", 2, ["A", "Blink"])],
        "extensions": {"VRM": {"blendShapeMaster": {"blendShapeGroups": [
            {"name": 7, "presetName": "a", "binds": [{"mesh": 0, "index": 1.5, "weight": 100},
                                                    {"mesh": 0, "index": {}, "weight": 100},
                                                    {"mesh": True, "index": 0, "weight": 100},
                                                    {"mesh": 0, "index": 0, "weight": float("nan")},
                                                    {"mesh": 0, "index": 1, "weight": 50}]},
        ]}}},
    }
    description = describe(document, "x.vrm")
    (expression,) = description.expressions
    assert expression.name == "7" and [(b.mesh, b.target, b.weight) for b in expression.binds] == [(0, 1, 0.5)]
    assert len(description.warnings) == 4 and "weighted nan, not a number" in description.warnings[3]
    document["extensions"]["VRM"]["blendShapeMaster"]["blendShapeGroups"] = [3.0]
    path = tmp_path / "odd.vrm"
    path.write_bytes(glb_bytes(document))
    with pytest.raises(AvatarFormatError) as raised:
        read_description(path)
    assert str(raised.value) == (f"{path}: its glTF data is malformed: a VRM blend shape group holds a value of "
                                 "the wrong kind (text, a number, a list or an object where another belongs)")


def test_plain_glb_morphs_group_targets_by_name():
    document = {"asset": {}, "meshes": [mesh("a", 2, ["A", "B"]), mesh("b", 1, ["A"])]}
    description = describe(document, "x.glb")
    assert [(e.name, e.kind, [(b.mesh, b.target) for b in e.binds]) for e in description.expressions] == [
        ("A", "vertex", [(0, 0), (1, 0)]), ("B", "vertex", [(0, 1)])]


@pytest.mark.parametrize("content, problem", [
    (b"PMX \x00\x00\x00@", "no 'glTF' magic"),
    (b"glTF\x01\x00\x00\x00", "truncated"),
    (struct.pack("<4sII", b"glTF", 1, 28) + struct.pack("<II", 8, 0x4E4F534A) + b"{}      ", "version 1"),
    (struct.pack("<4sII", b"glTF", 2, 28) + struct.pack("<II", 100, 0x4E4F534A) + b"{}      ", "complete JSON chunk"),
    (struct.pack("<4sII", b"glTF", 2, 28) + struct.pack("<II", 8, 0x4E4F534A) + b"{nope}  ", "cannot be read"),
    (glb_bytes({"meshes": []}), "no 'asset'"),
])
def test_bad_files_name_the_file_and_the_problem(tmp_path, content, problem):
    path = tmp_path / "bad.vrm"
    path.write_bytes(content)
    with pytest.raises(AvatarFormatError) as error:
        read_gltf_json(path)
    assert str(path) in str(error.value) and problem in str(error.value)


def test_gltf_text_file_is_read(tmp_path):
    path = tmp_path / "a.gltf"
    path.write_text(json.dumps({"asset": {"version": "2.0"}}))
    assert read_gltf_json(path) == {"asset": {"version": "2.0"}}
