"""The avatar geometry reader (render/formats/avatar_model.py) on small glTF files made here.

Each file's numbers are chosen so the expected scene positions can be worked out by hand: a
joint posed away from its bind pose, a node with its own scale, a sparse morph target, VRM 0.x's
half turn. (The reader against Blender's own import of a real avatar: tests/render/blender/
test_avatar_dataset.py.)
"""

import base64
import json
import math
import struct

import numpy as np
import pytest

from tha_studio.render.dataset.annotation import annotate_model
from tha_studio.render.formats.avatar_expressions import AvatarFormatError
from tha_studio.render.formats.avatar_model import read_avatar_model


class Buffer:
    """One glTF buffer being written, its views and accessors alongside."""

    def __init__(self):
        self.data = bytearray()
        self.views, self.accessors = [], []

    def add(self, values, dtype, kind, **extra):
        array = np.asarray(values, dtype)
        self.views.append({"buffer": 0, "byteOffset": len(self.data), "byteLength": array.nbytes})
        self.data += array.tobytes()
        self.data += bytes(-len(self.data) % 4)
        component = {"float32": 5126, "uint8": 5121, "uint16": 5123, "uint32": 5125}[np.dtype(dtype).name]
        count = len(array) if kind != "MAT4" else len(array) // 16
        self.accessors.append({"bufferView": len(self.views) - 1, "componentType": component, "count": count,
                               "type": kind, **extra})
        return len(self.accessors) - 1


def rotation_y(degrees):
    half = math.radians(degrees) / 2
    return [0.0, math.sin(half), 0.0, math.cos(half)]


def avatar_document(vrm=None):
    """Two joints (a root, and a head posed 90 degrees about Y from where it was bound), a skinned
    triangle on the head with a sparse morph target, and a plain quad under a scaled node."""
    buffer = Buffer()
    triangle = buffer.add([[0, 1.5, 0.1], [0.1, 1.6, 0.1], [-0.1, 1.6, 0.1]], "float32", "VEC3")
    joints = buffer.add([[1, 0, 0, 0]] * 3, "uint8", "VEC4")
    weights = buffer.add([[1, 0, 0, 0]] * 3, "float32", "VEC4")
    # Bound with the root at the origin and the head at (0, 1, 0), unturned (column-major).
    bind = np.stack([np.eye(4), np.eye(4)])
    bind[1][1, 3] = -1.0
    inverse_bind = buffer.add(bind.transpose(0, 2, 1).reshape(-1), "float32", "MAT4")
    sparse_indices = buffer.add([0], "uint16", "SCALAR")
    sparse_values = buffer.add([[0, 0, 0.1]], "float32", "VEC3")
    morph = len(buffer.accessors)
    buffer.accessors.append({"componentType": 5126, "count": 3, "type": "VEC3", "sparse": {
        "count": 1, "indices": {"bufferView": buffer.accessors[sparse_indices]["bufferView"], "componentType": 5123},
        "values": {"bufferView": buffer.accessors[sparse_values]["bufferView"]}}})
    quad = buffer.add([[0, 0, 1], [0, 0.1, 1], [0.1, 0, 1], [0.1, 0.1, 1]], "float32", "VEC3")
    document = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0, 2, 3]}],
        "nodes": [
            {"name": "Root", "children": [1]},
            {"name": "Head", "translation": [0, 1, 0], "rotation": rotation_y(90)},
            {"name": "Face", "mesh": 0, "skin": 0},
            {"name": "Badge", "mesh": 1, "translation": [1, 0, 0], "scale": [2, 2, 2]},
        ],
        "skins": [{"joints": [0, 1], "inverseBindMatrices": inverse_bind}],
        "meshes": [
            {"name": "Face", "primitives": [{"attributes": {"POSITION": triangle, "JOINTS_0": joints, "WEIGHTS_0": weights},
                                             "targets": [{"POSITION": morph}]}],
             "extras": {"targetNames": ["Blink"]}},
            {"name": "Badge", "primitives": [{"attributes": {"POSITION": quad}}]},
        ],
        "accessors": buffer.accessors,
        "bufferViews": buffer.views,
        "buffers": [{"byteLength": len(buffer.data)}],
    }
    if vrm == "vrm0":
        document["extensions"] = {"VRM": {
            "meta": {"title": "Test"}, "humanoid": {"humanBones": [{"bone": "head", "node": 1}]},
            "blendShapeMaster": {"blendShapeGroups": [
                {"name": "Blink_L", "presetName": "blink_l", "binds": [{"mesh": 0, "index": 0, "weight": 50}]}]}}}
    elif vrm == "vrm1":
        document["extensions"] = {"VRMC_vrm": {
            "meta": {"name": "Test"}, "humanoid": {"humanBones": {"head": {"node": 1}}},
            "expressions": {"preset": {"blinkLeft": {"morphTargetBinds": [{"node": 2, "index": 0, "weight": 0.5}]}}}}}
    return document, bytes(buffer.data)


def write_gltf(path, document, data, external=False):
    """A .gltf with its buffer as a data URI (or beside it as a .bin), or a .glb/.vrm."""
    document = json.loads(json.dumps(document))
    if path.suffix == ".gltf":
        if external:
            (path.parent / "buffer.bin").write_bytes(data)
            document["buffers"][0]["uri"] = "buffer.bin"
        else:
            document["buffers"][0]["uri"] = "data:application/octet-stream;base64," + base64.b64encode(data).decode()
        path.write_text(json.dumps(document))
        return path
    text = json.dumps(document).encode()
    text += b" " * (-len(text) % 4)
    data = data + bytes(-len(data) % 4)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text + struct.pack("<II", len(data), 0x004E4942) + data
    path.write_bytes(struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body)
    return path


# The head joint turned 90 degrees about Y from its bind pose carries the triangle with it: a
# vertex bound at (0, 1.5, 0.1), 0.5 above and 0.1 in front of the joint, ends up at (0.1, 1.5, 0);
# then glTF's front (+Z) becomes MMD's (-Z). The quad: translated by 1, scaled by 2.
TRIANGLE = [[0.1, 1.5, 0.0], [0.1, 1.6, 0.1], [0.1, 1.6, -0.1]]
QUAD = [[1.0, 0.0, -2.0], [1.0, 0.2, -2.0], [1.2, 0.0, -2.0], [1.2, 0.2, -2.0]]


@pytest.mark.parametrize("name, external", [("a.gltf", False), ("b.gltf", True), ("c.glb", False)])
def test_a_glb_or_gltf_is_placed_as_the_scene_shows_it(tmp_path, name, external):
    path = write_gltf(tmp_path / name, *avatar_document(), external=external)
    model = read_avatar_model(path)
    np.testing.assert_allclose(model.positions, TRIANGLE + QUAD, atol=1e-6)
    assert [(bone.name, bone.parent) for bone in model.bones] == [("Root", -1), ("Head", 0)]
    np.testing.assert_allclose(model.bones[1].position, [0, 1, 0], atol=1e-6)
    assert model.bones[0].tail_bone == 1
    assert model.bone_indices[:3, 0].tolist() == [1, 1, 1] and model.bone_indices[3:, 0].tolist() == [-1] * 4
    [blink] = model.morphs
    # The morph moves vertex 0 by 0.1 along glTF's +Z, turned with the head: +X.
    assert (blink.name, blink.vertex_indices.tolist()) == ("Blink", [0])
    np.testing.assert_allclose(blink.vertex_offsets, [[0.1, 0, 0]], atol=1e-6)


@pytest.mark.parametrize("vrm", ["vrm0", "vrm1"])
def test_a_vrm_gives_humanoid_names_its_expressions_and_vrm0_its_half_turn(tmp_path, vrm):
    model = read_avatar_model(write_gltf(tmp_path / "a.vrm", *avatar_document(vrm)))
    expected = np.array(TRIANGLE + QUAD)
    if vrm == "vrm0":  # it faces glTF's -Z and is turned to face the front: x and depth change sign
        expected *= [-1, 1, -1]
    np.testing.assert_allclose(model.positions, expected, atol=1e-6)
    assert model.bones[1].name_en == "head"
    [blink] = model.morphs
    assert (blink.name, blink.name_en) == (("Blink_L", "blink_l") if vrm == "vrm0" else ("blinkLeft", "blinkLeft"))
    np.testing.assert_allclose(blink.vertex_offsets, [[0.05 if vrm == "vrm1" else -0.05, 0, 0]], atol=1e-6)


def test_the_annotation_reads_an_avatar_through_the_reader(tmp_path):
    model = read_avatar_model(write_gltf(tmp_path / "a.vrm", *avatar_document("vrm1")))
    annotation = annotate_model(model, "a.vrm")
    assert annotation.bone_for("head") == "Head"  # by its humanoid name; the node is called Head too


def test_damaged_avatars_are_named(tmp_path):
    document, data = avatar_document()

    def damaged(change, cut=None):
        broken = json.loads(json.dumps(document))
        change(broken)
        path = tmp_path / f"bad{len(list(tmp_path.glob('bad*')))}.gltf"
        return write_gltf(path, broken, data if cut is None else data[:cut])

    cases = [
        (damaged(lambda d: d["accessors"][0].update(count=10**6)), "accessor 0 reaches past the end of its buffer view"),
        (damaged(lambda d: d["accessors"][0].update(count=10**9)), "accessor 0 counts 1000000000 elements"),
        (damaged(lambda d: d["skins"][0]["joints"].append(99)), "a skin's joints names node 99, which does not exist"),
        (damaged(lambda d: d["nodes"][0].update(children=[1, 0])), "node 0 is its own ancestor"),
        # A cycle of nodes that are not joints above a joint: the walk up to the bone's parent went
        # round for ever (the run hung), before any world matrix was asked for.
        (damaged(lambda d: d["nodes"].extend([{"name": "A", "children": [0, 5]}, {"name": "B", "children": [4]}])),
         "node 4 is its own ancestor"),
        (damaged(lambda d: d["meshes"][0]["primitives"][0]["attributes"].update(POSITION=77)),
         "an attribute names accessor 77, which does not exist"),
        (damaged(lambda d: d["accessors"][0].update(type="VEC7")), "accessor 0's type 'VEC7' is none that glTF defines"),
        (damaged(lambda d: d["accessors"][1].update(componentType=5124)),
         "accessor 1's componentType 5124 is none that glTF defines"),
        # Entries of the wrong kind, named by where they are and in words, not Python's ("KeyError: 'count'").
        (damaged(lambda d: d["accessors"][2].pop("count")), "its glTF data is malformed: accessor 2 has no 'count'"),
        (damaged(lambda d: d["bufferViews"][0].pop("byteLength")),
         "its glTF data is malformed: buffer view 0 has no 'byteLength'"),
        (damaged(lambda d: d["nodes"][1].update(rotation="turned")),
         "its glTF data is malformed: node 1 holds a value of the wrong size or out of range"),
        (damaged(lambda d: d["nodes"][1].update(matrix=[1, 0, 0])),
         "its glTF data is malformed: node 1 holds a value of the wrong size or out of range"),
        (damaged(lambda d: d["buffers"][0].update(byteLength="all")),
         "its glTF data is malformed: buffer 0 holds a value of the wrong kind"),
        (damaged(lambda d: d["meshes"][0]["primitives"][0].update(targets=[7])),
         "its glTF data is malformed: mesh 0 holds a value of the wrong kind"),
        (damaged(lambda d: d["skins"][0].pop("joints")), "node 2's vertices name joint slots its skin lacks"),
        (damaged(lambda d: d.update(nodes=5)), "its glTF data is malformed: 'nodes' is not a list of objects"),
        (damaged(lambda d: d.update(extensions=["VRM"])), "its glTF data is malformed: 'extensions' is not an object"),
        (damaged(lambda d: d["nodes"][0].update(children=3)),
         "its glTF data is malformed: node 0 holds a value of the wrong kind"),
        (damaged(lambda d: None, cut=40), "buffer 0 holds 40 bytes, fewer than its byteLength"),
        (damaged(lambda d: d["meshes"][0]["primitives"][0].update(extensions={"KHR_draco_mesh_compression": {}})),
         "mesh 0 is compressed (KHR_draco_mesh_compression), which THA Studio does not read"),
        (damaged(lambda d: d["bufferViews"][0].update(extensions={"EXT_meshopt_compression": {}})),
         "buffer view 0 is compressed (EXT_meshopt_compression)"),
    ]
    missing = write_gltf(tmp_path / "missing.gltf", document, data, external=True)
    (tmp_path / "buffer.bin").unlink()
    cases.append((missing, "buffer 0's file 'buffer.bin' cannot be read"))
    vertices = json.loads(json.dumps(document))
    nan = np.frombuffer(data, np.float32).copy()
    nan[0] = np.nan
    cases.append((write_gltf(tmp_path / "nan.gltf", vertices, nan.tobytes()), "vertex 0 (nan, "))
    for path, problem in cases:
        with pytest.raises(AvatarFormatError) as raised:
            read_avatar_model(path)
        assert str(raised.value).startswith(f"{path}: ") and problem in str(raised.value), str(raised.value)


@pytest.mark.filterwarnings("error")  # numpy's RuntimeWarning on a signalling NaN included
def test_an_expression_that_would_throw_the_face_away_is_refused_by_name(tmp_path):
    """As an MMD morph's offsets are (test_pmx_errors.py): a morph target holding NaN, a signalling
    one (numpy warned of it before any error) or the largest float, or a bind weighted 1e300,
    was read, and the face flew kilometres whenever the expression was keyed (NaN: left out
    silently). Found by writing such numbers over every 4 bytes and every JSON number of a VRM."""
    document, data = avatar_document("vrm1")
    z = data.index(struct.pack("<3f", 0, 0, 0.1)) + 8  # the sparse target's one offset, its z
    cases = []
    for name, value in (("signalling", bytes.fromhex("0100807f")), ("nan", struct.pack("<f", float("nan"))),
                        ("largest", struct.pack("<f", 3.4e38))):
        damaged = bytearray(data)
        damaged[z : z + 4] = value
        cases.append(write_gltf(tmp_path / f"{name}.vrm", document, bytes(damaged)))
    heavy = json.loads(json.dumps(document))
    heavy["extensions"]["VRMC_vrm"]["expressions"]["preset"]["blinkLeft"]["morphTargetBinds"][0]["weight"] = 1e300
    cases.append(write_gltf(tmp_path / "heavy.vrm", heavy, data))
    for path in cases:
        with pytest.raises(AvatarFormatError) as raised:
            read_avatar_model(path)
        message = str(raised.value)
        assert message.startswith(f"{path}: expression 'blinkLeft': the offset of vertex 0 ("), message
        assert message.endswith(("is not a finite number", "lies past 8,000 metres, where no real model reaches"))


def test_names_that_are_not_text_are_taken_as_text_or_left_to_the_default(tmp_path):
    # A hand-made or damaged file: a number where a name belongs is its text, as JSON would hold
    # it; anything else is no name. The annotation then reads the model like any other, where a
    # numeric bone name was a TypeError in its side-name matching.
    document, data = avatar_document("vrm1")
    document["nodes"][0]["name"] = 2
    document["nodes"][1]["name"] = {"not": "a name"}
    document["meshes"][0]["name"] = ["Face"]
    document["extensions"]["VRMC_vrm"]["meta"]["name"] = 7
    model = read_avatar_model(write_gltf(tmp_path / "odd.vrm", document, data))
    assert [bone.name for bone in model.bones] == ["2", "Node_1"]
    assert model.name == "7"
    annotation = annotate_model(model, "odd.vrm")
    assert annotation.bone_roles["head"]["bone"] == "Node_1"  # still found by its humanoid name


def empty_targets_document(vertices, targets):
    """A mesh of `vertices` points with `targets` morph targets that hold no data (zeros): a few
    hundred KB asking Blender's importer for gigabytes of shape keys."""
    buffer = Buffer()
    position = buffer.add(np.zeros((vertices, 3)), "float32", "VEC3")
    empty = [len(buffer.accessors) + i for i in range(targets)]
    buffer.accessors += [{"componentType": 5126, "count": vertices, "type": "VEC3"}] * targets
    document = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": [0]}],
                "nodes": [{"name": "Body", "mesh": 0}],
                "meshes": [{"name": "Body", "primitives": [{"attributes": {"POSITION": position},
                                                            "targets": [{"POSITION": i} for i in empty]}]}],
                "accessors": buffer.accessors, "bufferViews": buffer.views, "buffers": [{"byteLength": len(buffer.data)}]}
    return document, bytes(buffer.data)


@pytest.mark.parametrize("vertices, targets, words", [
    # (Blender's importer took 34 s and 4.9 GB for the first, from a file of 950 KB.)
    (60_000, 3_000, "3,000 morph targets on 60,000 vertices would need 2.2 GB of shape keys"),
    (30, 6_000, "6,000 morph targets, more than the 5,000 this importer takes"),
])
def test_an_avatar_asking_for_more_shape_keys_than_any_real_one_is_refused_before_import(tmp_path, vertices,
                                                                                          targets, words):
    from tha_studio.render.formats.avatar_expressions import read_description

    path = write_gltf(tmp_path / "crafted.glb", *empty_targets_document(vertices, targets))
    assert path.stat().st_size < 1_000_000
    for read in (read_description, read_avatar_model):
        with pytest.raises(AvatarFormatError, match=words):
            read(path)
    read_description(write_gltf(tmp_path / "fine.glb", *empty_targets_document(vertices, 100)))


def test_an_image_declaring_too_many_pixels_is_found_from_its_header_and_named_shortly(tmp_path):
    import zlib

    from tha_studio.render.formats.avatar_expressions import read_description, read_gltf_json
    from tha_studio.render.formats.avatar_model import oversized_images

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # Only the header is read: 20,000 squared pixels declared, no pixel data at all.
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20_000, 20_000, 8, 6, 0, 0, 0))
           + chunk(b"IEND", b""))
    (tmp_path / "face.png").write_bytes(png)
    document, data = avatar_document()
    document["images"] = [{"uri": "face.png"},
                          {"uri": "data:image/png;base64," + base64.b64encode(png).decode()},
                          {"name": "Skin", "uri": "missing.png"}]
    path = write_gltf(tmp_path / "a.gltf", document, data)
    raw = path.read_bytes()
    document = read_gltf_json(path, raw)
    found = oversized_images(path, raw, document, read_description(path, document))
    # A data URI is named by its place, not by its megabytes of base64; a missing file is Blender's to name.
    assert [name for name, _ in found] == ["face.png", "image 1"]
    assert all("exceeds limit" in why for _, why in found)

    # A .gltf's buffer files are read only for images kept in them: Blender's importer reads them
    # whole anyway (here the buffer file is gone, and the pictures beside it are still found).
    path = write_gltf(tmp_path / "b.gltf", document, data, external=True)
    (tmp_path / "buffer.bin").unlink()
    raw = path.read_bytes()
    document = read_gltf_json(path, raw)
    assert [name for name, _ in oversized_images(path, raw, document, read_description(path, document))] == [
        "face.png", "image 1"]
