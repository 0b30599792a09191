"""Small glb and VRM test avatars, made with Blender's own glTF exporter.

`export_face_glb` builds two meshes with shape keys (a face grid with A, Blink, Smile_L,
Smile_R, and teeth with A) and exports them as a binary glTF. `add_json_extensions` rewrites
its JSON chunk, which is how a VRM file differs from a glb: VRM 0.x adds `extensions.VRM`, VRM
1.0 adds `extensions.VRMC_vrm`. No real VRM avatar is stored in ../shared, so these stand in
for one; their expression binds follow the VRM specifications (reference/mmd.md §4).
"""

import json
import struct
from pathlib import Path

import bpy
import numpy as np

FACE_KEYS = ("A", "Blink", "Smile_L", "Smile_R")


def grid(size, z=0.0, y=0.0, width=1.0):
    xs = np.linspace(-width / 2, width / 2, size)
    zs = np.linspace(z, z + width, size)
    vertices = [(x, y, zz) for zz in zs for x in xs]
    faces = [
        (r * size + c, r * size + c + 1, (r + 1) * size + c + 1, (r + 1) * size + c)
        for r in range(size - 1)
        for c in range(size - 1)
    ]
    return vertices, faces


def mesh_object(name, vertices, faces, keys):
    """A mesh object with shape keys: keys maps a name to a function (co array) -> moved co."""
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(vertices, [], faces)
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    obj.shape_key_add(name="Basis", from_mix=False)
    rest = np.array(vertices, np.float32)
    for key_name, move in keys.items():
        key = obj.shape_key_add(name=key_name, from_mix=False)
        key.value = 0.0
        key.data.foreach_set("co", move(rest.copy()).ravel())
    return obj


def lift(mask, dz):
    def move(co):
        co[mask(co), 2] += dz
        return co

    return move


def export_face_glb(path, export_format="GLB"):
    """Export the test avatar (meshes Face and Teeth) to `path` as .glb (or, with
    "GLTF_SEPARATE", as a .gltf beside its .bin); returns the path."""
    bpy.ops.wm.read_homefile(use_empty=True)
    vertices, faces = grid(5)
    mesh_object("Face", vertices, faces, {
        "A": lift(lambda co: co[:, 2] < 0.3, -0.2),
        "Blink": lift(lambda co: co[:, 2] > 0.7, -0.1),
        "Smile_L": lift(lambda co: (co[:, 0] > 0.2) & (co[:, 2] < 0.3), 0.1),
        "Smile_R": lift(lambda co: (co[:, 0] < -0.2) & (co[:, 2] < 0.3), 0.1),
    })
    vertices, faces = grid(3, z=0.05, y=0.05, width=0.3)
    mesh_object("Teeth", vertices, faces, {"A": lift(lambda co: co[:, 2] < 0.1, -0.05)})
    path = Path(path)
    result = bpy.ops.export_scene.gltf(filepath=str(path), export_format=export_format, export_morph=True)
    assert result == {"FINISHED"} and path.is_file()
    bpy.ops.wm.read_homefile(use_empty=True)
    return path


def read_glb(path):
    data = Path(path).read_bytes()
    length, kind = struct.unpack_from("<II", data, 12)
    assert kind == 0x4E4F534A
    return json.loads(data[20 : 20 + length]), data[20 + length :]


def write_glb(path, document, rest):
    text = json.dumps(document).encode("utf-8")
    text += b" " * (-len(text) % 4)  # chunks are 4-byte aligned, JSON padded with spaces
    body = struct.pack("<II", len(text), 0x4E4F534A) + text + rest
    Path(path).write_bytes(struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body)
    return Path(path)


def add_json_extensions(source, target, change):
    """Copy a glb to `target` with `change(document)` applied to its JSON."""
    document, rest = read_glb(source)
    change(document)
    return write_glb(target, document, rest)


def mesh_index(document, name):
    return next(i for i, mesh in enumerate(document["meshes"]) if mesh["name"] == name)


def node_index(document, name):
    mesh = mesh_index(document, name)
    return next(i for i, node in enumerate(document["nodes"]) if node.get("mesh") == mesh)


def make_vrm0(glb, target):
    """A VRM 0.x file: blendShapeGroups with weights 0-100 on mesh indices."""

    def change(document):
        face, teeth = mesh_index(document, "Face"), mesh_index(document, "Teeth")
        key = {name: i for i, name in enumerate(document["meshes"][face]["extras"]["targetNames"])}
        document.setdefault("extensionsUsed", []).append("VRM")
        document.setdefault("extensions", {})["VRM"] = {
            "meta": {"title": "Test face"},
            "blendShapeMaster": {"blendShapeGroups": [
                {"name": "A", "presetName": "a", "binds": [
                    {"mesh": face, "index": key["A"], "weight": 100},
                    {"mesh": teeth, "index": 0, "weight": 100}]},
                {"name": "Blink", "presetName": "blink", "binds": [
                    {"mesh": face, "index": key["Blink"], "weight": 100}]},
                {"name": "Joy", "presetName": "joy", "binds": [
                    {"mesh": face, "index": key["Smile_L"], "weight": 50},
                    {"mesh": face, "index": key["Smile_R"], "weight": 100}]},
                {"name": "Surprised", "presetName": "unknown", "binds": [],
                 "materialValues": [{"materialName": "x", "propertyName": "_Color",
                                     "targetValue": [1, 0, 0, 1]}]},
            ]},
        }

    return add_json_extensions(glb, target, change)


def make_vrm1(glb, target):
    """A VRM 1.0 file: expressions with weights 0-1 on node indices, presets and custom."""

    def change(document):
        face, teeth = node_index(document, "Face"), node_index(document, "Teeth")
        names = document["meshes"][mesh_index(document, "Face")]["extras"]["targetNames"]
        key = {name: i for i, name in enumerate(names)}
        document.setdefault("extensionsUsed", []).append("VRMC_vrm")
        document.setdefault("extensions", {})["VRMC_vrm"] = {
            "specVersion": "1.0",
            "meta": {"name": "Test face"},
            "expressions": {
                "preset": {
                    "aa": {"morphTargetBinds": [
                        {"node": face, "index": key["A"], "weight": 1.0},
                        {"node": teeth, "index": 0, "weight": 1.0}]},
                    "blink": {"morphTargetBinds": [{"node": face, "index": key["Blink"], "weight": 1.0}]},
                    "happy": {"morphTargetBinds": [
                        {"node": face, "index": key["Smile_L"], "weight": 0.5},
                        {"node": face, "index": key["Smile_R"], "weight": 0.5}]},
                },
                "custom": {"smirk": {"morphTargetBinds": [
                    {"node": face, "index": key["Smile_L"], "weight": 1.0}]}},
            },
        }

    return add_json_extensions(glb, target, change)


# ----------------------------------------------------------------------------------------------
# A rigged avatar made from a real model: Gene (../shared/assets/mmd/gene_light) imported by THA
# Studio and exported by Blender's glTF exporter (mesh, skin, 224 joints, 180 morph targets,
# textures), then given VRM 0.x or 1.0 humanoid bones and expressions as a converter would.

GENE_HUMANOID = {"hips": "下半身", "spine": "上半身", "chest": "上半身2", "neck": "首", "head": "頭",
                 "leftEye": "左目", "rightEye": "右目", "leftShoulder": "左肩", "rightShoulder": "右肩"}
# VRM preset -> Gene's morph (left and right as the character's).
GENE_EXPRESSIONS = {"blink_l": "ウィンク２", "blink_r": "ｳｨﾝｸ２右", "a": "あ", "i": "い"}
VRM1_PRESETS = {"blink_l": "blinkLeft", "blink_r": "blinkRight", "a": "aa", "i": "ih"}


def export_gene_glb(import_model, pmx, path):
    """Gene as a glb: imported with THA Studio's importer (`import_model`), exported by Blender's."""
    bpy.ops.wm.read_homefile(use_empty=True)
    import_model(pmx)
    path = Path(path)
    result = bpy.ops.export_scene.gltf(filepath=str(path), export_format="GLB", export_morph=True,
                                       export_skins=True, export_animations=False)
    assert result == {"FINISHED"} and path.is_file()
    bpy.ops.wm.read_homefile(use_empty=True)
    return path


def _gene_parts(document):
    nodes = {node.get("name"): index for index, node in enumerate(document["nodes"])}
    mesh = next(i for i, m in enumerate(document["meshes"]) if (m.get("extras") or {}).get("targetNames"))
    node = next(i for i, n in enumerate(document["nodes"]) if n.get("mesh") == mesh)
    target = {name: i for i, name in enumerate(document["meshes"][mesh]["extras"]["targetNames"])}
    return nodes, mesh, node, target


def hide_materials(document, names):
    """Materials hidden at rest (an MMD material of alpha 0, an overlay a morph shows), as a
    converter writes them: a base colour factor of alpha 0 (Blender's exporter loses that alpha)."""
    for material in document["materials"]:
        if material.get("name") in names:
            material.setdefault("pbrMetallicRoughness", {})["baseColorFactor"] = [1.0, 1.0, 1.0, 0.0]
            material["alphaMode"] = "BLEND"


def make_gene_vrm0(glb, target, hidden_materials=()):
    """VRM 0.x: the scene turned to face glTF's -Z, as VRM 0.x avatars do; humanoid bones as a
    list; blendShapeGroups with weights 0-100 on mesh indices."""

    def change(document):
        nodes, mesh, _, target_index = _gene_parts(document)
        hide_materials(document, hidden_materials)
        for index in document["scenes"][document.get("scene", 0)]["nodes"]:
            node = document["nodes"][index]
            x, y, z, w = node.get("rotation", (0.0, 0.0, 0.0, 1.0))
            node["rotation"] = [z, w, -x, -y]  # half a turn about Y, then the node's own rotation
            tx, ty, tz = node.get("translation", (0.0, 0.0, 0.0))
            node["translation"] = [-tx, ty, -tz]
        document.setdefault("extensionsUsed", []).append("VRM")
        document.setdefault("extensions", {})["VRM"] = {
            "meta": {"title": "Gene (VRM 0.x)"},
            "humanoid": {"humanBones": [{"bone": bone, "node": nodes[name]} for bone, name in GENE_HUMANOID.items()]},
            "blendShapeMaster": {"blendShapeGroups": [
                {"name": preset.capitalize(), "presetName": preset,
                 "binds": [{"mesh": mesh, "index": target_index[morph], "weight": 100}]}
                for preset, morph in GENE_EXPRESSIONS.items()]},
        }

    return add_json_extensions(glb, target, change)


def make_gene_vrm1(glb, target, hidden_materials=()):
    """VRM 1.0: facing +Z; humanoid bones by name; preset expressions with weights 0-1 on nodes."""

    def change(document):
        nodes, _, node, target_index = _gene_parts(document)
        hide_materials(document, hidden_materials)
        document.setdefault("extensionsUsed", []).append("VRMC_vrm")
        document.setdefault("extensions", {})["VRMC_vrm"] = {
            "specVersion": "1.0",
            "meta": {"name": "Gene (VRM 1.0)"},
            "humanoid": {"humanBones": {bone: {"node": nodes[name]} for bone, name in GENE_HUMANOID.items()}},
            "expressions": {"preset": {
                VRM1_PRESETS[preset]: {"morphTargetBinds": [{"node": node, "index": target_index[morph], "weight": 1.0}]}
                for preset, morph in GENE_EXPRESSIONS.items()}},
        }

    return add_json_extensions(glb, target, change)
