"""A VRM/glb/glTF avatar's rest geometry as a `Model` (pure: numpy), for annotating it.

The annotation (render/dataset/annotation.py) reads a model's vertices, bones, skin weights and
morphs; MMD files give them through render/formats/mmd. This module gives the same from an
avatar, as Blender's glTF importer and THA Studio's import will place it (render/blender/
model_import.py):

- Positions are the rest pose in the scene, in metres (the import's scale is 1): each skinned
  primitive through its joints' world matrices and inverse bind matrices, as glTF viewers show
  it, the others through their node's world matrix.
- Axes as an MMD model's (y up, the character facing -z, its left +x), which is what the import
  makes of them in Blender (MMD (x, y, z) is Blender (x, z, y)): glTF (x, y, z) becomes
  (x, y, -z), and a VRM 0.x avatar, which faces glTF's -Z and is turned to face the front,
  (-x, y, z).
- Bones are the skins' joints, named as the importer names them (the node's name, else
  `Node_<index>`), each the child of its nearest joint ancestor; a VRM's humanoid bone name
  (head, neck, spine, leftEye...) is the bone's English name, so the annotation finds the
  humanoid bones whatever the rig calls them.
- Morphs are the avatar's expressions (avatar_expressions.read_description): each VRM
  expression one vertex morph (its binds' targets summed by weight, named and with its preset as
  the English name, as the import records it), or for a plain glb each morph target name.

Everything is read from the file's own buffers (a glb's binary chunk, a .gltf's .bin files or
data URIs), bounds-checked: a damaged file is an AvatarFormatError naming it.
"""

from __future__ import annotations

import base64
import io
import struct
import urllib.parse
from pathlib import Path

import numpy as np

from .avatar_expressions import (GLB_MAGIC, MALFORMED, AvatarFormatError, json_name, json_objects, malformed_entry,
                                 node_parents, read_avatar_bytes, read_description, read_gltf_json)
from .coordinates import MAX_METRES, first_unreal_row, quiet_file_numbers
from .limits import MAX_VERTICES, whole_file_problem
from .mmd.model import Bone, Model, Morph
from .texture_paths import oversized_texture

AVATAR_SUFFIXES = (".vrm", ".glb", ".gltf")
GLB_BINARY_CHUNK = 0x004E4942  # "BIN\0"
COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
COMPONENT_TYPES = {5120: "<i1", 5121: "<u1", 5122: "<i2", 5123: "<u2", 5125: "<u4", 5126: "<f4"}
# Compressed meshes (a primitive's Draco data, a buffer view's meshopt data) are not in the
# accessors as glTF lays them out: THA Studio does not decode them (Blender's importer decodes Draco).
COMPRESSIONS = {"KHR_draco_mesh_compression", "EXT_meshopt_compression"}


@quiet_file_numbers
def read_avatar_model(path) -> Model:
    """The avatar's rest geometry, bones and expressions as a Model (format "vrm0", "vrm1",
    "glb" or "gltf"); AvatarFormatError names the file and the problem."""
    path = Path(path)
    data = read_avatar_bytes(path)  # once: a VRM is tens of megabytes, its JSON and binary chunk both wanted
    document = read_gltf_json(path, data)
    description = read_description(path, document)
    with malformed_entry(path, "an entry"):  # (where no entry the reader names holds it)
        return _Reader(path, data, document, description).model()


def oversized_images(path, data, document, description):
    """(image name, why) for each image of the avatar too large to decode (texture_paths'
    oversized_texture: past Pillow's decompression-bomb limit, far past any avatar's texture),
    read from its header; AvatarFormatError where 'images' is not a list of objects. `data`,
    `document` and `description`: the file's bytes, its glTF JSON and its AvatarDescription, as
    the caller read them. Blender's glTF importer takes every image as it is, and decodes it
    whole when a view or a render first shows it: a 3.5 MB glb held a PNG of 30,000 squared
    pixels, 3.9 GB and 11 s."""
    path = Path(path)
    images = json_objects(document, "images", path)  # (Blender's importer would fail on others, unnamed)
    reader = None
    # A .gltf's buffer files are read here only for the images kept in them: Blender's importer
    # reads them whole anyway.
    if any("bufferView" in image for image in images):
        try:
            reader = _Reader(path, data, document, description)
        except MALFORMED:  # (AvatarFormatError among them, a ValueError)
            return []  # (its buffers cannot be read: Blender's importer names what it finds)
    found = []
    for index, image in enumerate(images):
        uri = json_name(image.get("uri"))
        name = json_name(image.get("name")) or (uri if uri and not uri.startswith("data:") else f"image {index}")
        try:
            if "bufferView" in image:
                view = reader._view_array(image["bufferView"], 0, np.dtype(np.uint8),
                                          document["bufferViews"][image["bufferView"]]["byteLength"], 1, f"image {index}")
                source = io.BytesIO(view.tobytes())
            elif str(image.get("uri", "")).startswith("data:"):
                source = io.BytesIO(_data_uri_bytes(image["uri"]))
            elif isinstance(image.get("uri"), str):
                source = path.resolve().parent / urllib.parse.unquote(image["uri"])
            else:
                continue
        except (AvatarFormatError, ValueError, TypeError, KeyError, IndexError):
            continue  # (an image that cannot be found: Blender's importer says so)
        why = oversized_texture(source)
        if why:
            found.append((name, why))
    return found


def external_buffer_file(path, index, uri):
    """The file a .gltf's buffer `index` names by `uri` (beside the .gltf, where a link leads),
    refused (AvatarFormatError) where it is no regular file or is past limits.MAX_FILE_BYTES: it
    is read whole."""
    name = urllib.parse.unquote(uri)
    if "\x00" in name:  # (no file system takes it: os.stat's ValueError, a traceback)
        raise AvatarFormatError(path, f"buffer {index}'s uri {uri!r} is not a file name")
    file = Path(path).resolve().parent / name
    problem = whole_file_problem(file, "a buffer file")
    if problem:
        raise AvatarFormatError(path, f"buffer {index}'s file {uri!r} {problem}")
    return file


def check_external_buffers(path, document):
    """Refuse a .gltf whose buffer files are no regular files or past the size limit, before Blender's glTF importer
    reads them whole (a missing or unreadable one is left for it to name)."""
    for index, buffer in enumerate(json_objects(document, "buffers", path)):
        uri = buffer.get("uri")
        if uri is not None and not isinstance(uri, str):
            raise AvatarFormatError(path, f"buffer {index}'s uri {uri!r} is not text")
        if uri is not None and not uri.startswith("data:"):
            external_buffer_file(path, index, uri)


def _data_uri_bytes(uri):
    header, _, payload = uri.partition(",")
    return base64.b64decode(payload) if header.endswith(";base64") else urllib.parse.unquote_to_bytes(payload)


class _Reader:
    def __init__(self, path, data, document, description):
        self.path, self.data, self.document, self.description = path, data, document, description
        self.buffers = self._buffers()
        self.nodes = document.get("nodes", [])
        self.parents = node_parents(document, path)
        self.worlds = [None] * len(self.nodes)
        # glTF (x, y, z) in the axes THA Studio's import leaves the avatar in, MMD's order.
        self.axes = np.diag([-1.0, 1.0, 1.0] if description.faces_back else [1.0, 1.0, -1.0])

    def _entry(self, entry):
        return malformed_entry(self.path, entry)

    # --- the file's data

    def _buffers(self):
        buffers = []
        for index, buffer in enumerate(self.document.get("buffers", [])):
            with self._entry(f"buffer {index}"):
                buffers.append(self._buffer(index, buffer))
        return buffers

    def _buffer(self, index, buffer):
        uri = buffer.get("uri")
        if uri is None:
            data = self._glb_binary() if index == 0 else None
            if data is None:
                raise AvatarFormatError(self.path, f"buffer {index} has no data (no uri, no binary chunk)")
        elif uri.startswith("data:"):
            data = _data_uri_bytes(uri)
        else:
            file = external_buffer_file(self.path, index, uri)
            try:
                data = file.read_bytes()
            except OSError as error:
                raise AvatarFormatError(self.path, f"buffer {index}'s file {uri!r} cannot be read "
                                                   f"({error.strerror or error})") from None
        if len(data) < buffer.get("byteLength", 0):
            raise AvatarFormatError(self.path, f"buffer {index} holds {len(data)} bytes, fewer than its "
                                               f"byteLength {buffer['byteLength']}")
        return data

    def _glb_binary(self):
        data = self.data
        if data[:4] != GLB_MAGIC:
            return None
        json_length = struct.unpack_from("<I", data, 12)[0]
        at = 20 + json_length + (-json_length % 4)
        if at + 8 > len(data):
            return None
        length, kind = struct.unpack_from("<II", data, at)
        return data[at + 8 : at + 8 + length] if kind == GLB_BINARY_CHUNK else None

    def _check_index(self, value, count, what, where):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < count:
            raise AvatarFormatError(self.path, f"{where} names {what} {value!r}, which does not exist")

    def accessor(self, index):
        """An accessor's elements as a float64 (count, components) array (normalised integers
        scaled to 0..1 or -1..1, sparse values applied)."""
        accessors = self.document.get("accessors", [])
        self._check_index(index, len(accessors), "accessor", "an attribute")
        with self._entry(f"accessor {index}"):
            return self._accessor(index, accessors[index])

    def _accessor(self, index, accessor):
        count, width = accessor["count"], self._known(COMPONENTS, accessor["type"], f"accessor {index}'s type")
        if not isinstance(count, int) or not 0 <= count <= MAX_VERTICES:
            raise AvatarFormatError(self.path, f"accessor {index} counts {count!r} elements")
        dtype = np.dtype(self._known(COMPONENT_TYPES, accessor["componentType"], f"accessor {index}'s componentType"))
        if "bufferView" in accessor:
            values = self._view_array(accessor["bufferView"], accessor.get("byteOffset", 0), dtype, count, width,
                                      f"accessor {index}")
        else:
            values = np.zeros((count, width))
        values = values.astype(np.float64)
        if accessor.get("normalized") and dtype.kind in "iu":
            values = np.maximum(values / np.iinfo(dtype).max, -1.0)
        sparse = accessor.get("sparse")
        if sparse:
            kind = self._known(COMPONENT_TYPES, sparse["indices"]["componentType"],
                               f"accessor {index}'s sparse indices' componentType")
            rows = self._view_array(sparse["indices"]["bufferView"], sparse["indices"].get("byteOffset", 0),
                                    np.dtype(kind), sparse["count"], 1,
                                    f"accessor {index}'s sparse indices")[:, 0].astype(np.int64)
            if len(rows) and (rows.min() < 0 or rows.max() >= count):
                raise AvatarFormatError(self.path, f"accessor {index}'s sparse indices reach past its {count} elements")
            values = values.copy()
            values[rows] = self._view_array(sparse["values"]["bufferView"], sparse["values"].get("byteOffset", 0),
                                            dtype, sparse["count"], width, f"accessor {index}'s sparse values")
        return values

    def _known(self, table, value, what):
        """table[value], where glTF allows only the values `table` lists (a type, a componentType)."""
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or value not in table:
            raise AvatarFormatError(self.path, f"{what} {value!r} is none that glTF defines")
        return table[value]

    def _view_array(self, view_index, offset, dtype, count, width, what):
        views = self.document.get("bufferViews", [])
        self._check_index(view_index, len(views), "buffer view", what)
        with self._entry(f"buffer view {view_index}"):
            return self._view_rows(views[view_index], view_index, offset, dtype, count, width, what)

    def _view_rows(self, view, view_index, offset, dtype, count, width, what):
        compressed = set(view.get("extensions") or ()) & COMPRESSIONS
        if compressed:
            raise AvatarFormatError(self.path, f"buffer view {view_index} is compressed ({', '.join(sorted(compressed))}), "
                                               "which THA Studio does not read: export it uncompressed")
        self._check_index(view.get("buffer"), len(self.buffers), "buffer", f"buffer view {view_index}")
        data = self.buffers[view["buffer"]]
        start = view.get("byteOffset", 0) + offset
        element = dtype.itemsize * width
        stride = view.get("byteStride") or element
        end = start + (stride * (count - 1) + element if count else 0)
        if end > view.get("byteOffset", 0) + view["byteLength"] or end > len(data) or start < 0 or stride < element:
            raise AvatarFormatError(self.path, f"{what} reaches past the end of its buffer view {view_index}")
        if not count:
            return np.zeros((0, width))
        rows = np.lib.stride_tricks.as_strided(np.frombuffer(data, np.uint8, end - start, start),
                                               (count, element), (stride, 1))
        return np.ascontiguousarray(rows).view(dtype).reshape(count, width)

    # --- the scene

    def world(self, index):
        """A node's world matrix (4 x 4, glTF axes), its ancestors' transforms applied."""
        if self.worlds[index] is None:
            chain, node = [], index
            while node >= 0 and self.worlds[node] is None:  # (no cycles: node_parents)
                chain.append(node)
                node = self.parents[node]
            matrix = np.eye(4) if node < 0 else self.worlds[node]
            for node in reversed(chain):
                matrix = matrix @ self.local(node)
                self.worlds[node] = matrix
        return self.worlds[index]

    def local(self, index):
        with self._entry(f"node {index}"):
            return self._local(self.nodes[index])

    def _local(self, node):
        if "matrix" in node:
            return np.asarray(node["matrix"], np.float64).reshape(4, 4).T  # stored column by column
        x, y, z, w = node.get("rotation", (0.0, 0.0, 0.0, 1.0))
        rotation = np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ])
        matrix = np.eye(4)
        matrix[:3, :3] = rotation * np.asarray(node.get("scale", (1.0, 1.0, 1.0)), np.float64)
        matrix[:3, 3] = node.get("translation", (0.0, 0.0, 0.0))
        return matrix

    def bone_name(self, index):
        return json_name(self.nodes[index].get("name")) or f"Node_{index}"

    # --- the model

    def model(self):
        joints = []  # node indices, in the order the skins list them
        for skin_index, skin in enumerate(self.document.get("skins", [])):
            with self._entry(f"skin {skin_index}"):
                for joint in skin.get("joints", []):
                    self._check_index(joint, len(self.nodes), "node", "a skin's joints")
                    if joint not in joints:
                        joints.append(joint)
        bone_of_node = {node: i for i, node in enumerate(joints)}
        with self._entry("the VRM humanoid bones"):
            humanoid = self.humanoid_names()
        bones = []
        for node in joints:
            parent = self.parents[node]
            while parent >= 0 and parent not in bone_of_node:
                parent = self.parents[parent]
            bones.append(Bone(self.bone_name(node), humanoid.get(node, ""),
                              tuple(float(v) for v in self.axes @ self.world(node)[:3, 3]),
                              bone_of_node.get(parent, -1)))
        for i, node in enumerate(joints):  # a bone's tail: its first child bone
            children = [bone_of_node[c] for c in self.nodes[node].get("children", []) if c in bone_of_node]
            if children:
                bones[i].tail_bone = children[0]

        positions, bone_indices, bone_weights, offsets = [], [], [], {}
        start = 0
        for node_index, node in enumerate(self.nodes):
            if "mesh" not in node:
                continue
            meshes = self.document.get("meshes", [])
            self._check_index(node["mesh"], len(meshes), "mesh", f"node {node_index}")
            skin = None
            if "skin" in node:
                skins = self.document.get("skins", [])
                self._check_index(node["skin"], len(skins), "skin", f"node {node_index}")
                skin = skins[node["skin"]]
            for primitive_index, primitive in enumerate(meshes[node["mesh"]].get("primitives", [])):
                with self._entry(f"mesh {node['mesh']}'s primitive {primitive_index}"):
                    placed = self.primitive(node_index, node["mesh"], skin, primitive, bone_of_node, start, offsets)
                if placed is None:
                    continue
                if start + len(placed["positions"]) > MAX_VERTICES:
                    raise AvatarFormatError(self.path, f"more than {MAX_VERTICES:,} vertices")
                positions.append(placed["positions"])
                bone_indices.append(placed["bone_indices"])
                bone_weights.append(placed["bone_weights"])
                start += len(placed["positions"])
        model = Model(format=self.description.format, name=self.description.name or self.path.stem)
        if positions:
            model.positions = np.concatenate(positions).astype(np.float32)
            model.bone_indices = np.concatenate(bone_indices).astype(np.int32)
            model.bone_weights = np.concatenate(bone_weights).astype(np.float32)
        found = first_unreal_row(model.positions, MAX_METRES, "metres")
        if found:
            raise AvatarFormatError(self.path, f"vertex {found[0]} {found[1]}")
        model.bones = bones
        model.morphs = [self.morph(expression, offsets) for expression in self.description.expressions]
        return model

    def primitive(self, node_index, mesh_index, skin, primitive, bone_of_node, start, offsets):
        """A primitive's rest placement (primitive_rest), None where it has no positions; its
        morph targets' offsets in the scene added to `offsets` by (mesh, target), from `start`."""
        if "POSITION" not in primitive.get("attributes", {}):
            return None
        compressed = set(primitive.get("extensions") or ()) & COMPRESSIONS
        if compressed:
            raise AvatarFormatError(self.path, f"mesh {mesh_index} is compressed ({', '.join(sorted(compressed))}), "
                                               "which THA Studio does not read: export it uncompressed")
        placed, matrices = self.primitive_rest(node_index, skin, primitive, bone_of_node)
        count = len(placed["positions"])
        for target_index, target in enumerate(primitive.get("targets", [])):
            if "POSITION" not in target:
                continue
            delta = self.accessor(target["POSITION"])[:, :3]
            if len(delta) != count:
                raise AvatarFormatError(self.path, f"mesh {mesh_index}'s morph target {target_index} "
                                                   f"holds {len(delta)} positions for {count} vertices")
            moved = np.einsum("nij,nj->ni", matrices, delta) @ self.axes.T
            offsets.setdefault((mesh_index, target_index), []).append((start, moved))
        return placed

    def primitive_rest(self, node_index, skin, primitive, bone_of_node):
        """A primitive's rest positions (our axes), its bones and weights (4 per vertex, -1 unused),
        and the 3 x 3 matrix per vertex that takes its morph offsets into the scene (glTF axes)."""
        attributes = primitive["attributes"]
        local = self.accessor(attributes["POSITION"])[:, :3]
        count = len(local)
        bone_indices = np.full((count, 4), -1, np.int64)
        bone_weights = np.zeros((count, 4))
        if skin is not None and "JOINTS_0" in attributes and "WEIGHTS_0" in attributes:
            slots = self.accessor(attributes["JOINTS_0"]).astype(np.int64)
            weights = self.accessor(attributes["WEIGHTS_0"])
            if len(slots) != count or len(weights) != count:
                raise AvatarFormatError(self.path, f"node {node_index}'s joints or weights do not match its vertices")
            joints = skin.get("joints", [])
            if slots.size and (slots.min() < 0 or slots.max() >= len(joints)):
                raise AvatarFormatError(self.path, f"node {node_index}'s vertices name joint slots its skin lacks")
            if "inverseBindMatrices" in skin:
                inverse = self.accessor(skin["inverseBindMatrices"]).reshape(-1, 4, 4).transpose(0, 2, 1)
                if len(inverse) < len(joints):
                    raise AvatarFormatError(self.path, "a skin has fewer inverse bind matrices than joints")
            else:
                inverse = np.broadcast_to(np.eye(4), (len(joints), 4, 4))
            skinning = np.stack([self.world(joint) @ inverse[i] for i, joint in enumerate(joints)])
            total = weights.sum(axis=1, keepdims=True)
            weights = np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)
            matrices = np.einsum("nk,nkij->nij", weights, skinning[slots])
            matrices[total[:, 0] <= 0] = self.world(node_index)
            mapped = np.array([bone_of_node[joint] for joint in joints], np.int64)
            bone_indices = np.where(weights > 0, mapped[slots], -1)
            bone_weights = weights
        else:
            matrices = np.broadcast_to(self.world(node_index), (count, 4, 4))
        placed = np.einsum("nij,nj->ni", matrices[:, :3, :3], local) + matrices[:, :3, 3]
        return ({"positions": placed @ self.axes.T, "bone_indices": bone_indices, "bone_weights": bone_weights},
                np.ascontiguousarray(matrices[:, :3, :3]))

    def morph(self, expression, offsets):
        """One expression as a vertex morph: its binds' target offsets summed by weight."""
        indices, moves = [], []
        for bind in expression.binds:
            for start, moved in offsets.get((bind.mesh, bind.target), []):
                indices.append(np.arange(start, start + len(moved)))
                moves.append(moved * bind.weight)
        morph = Morph(expression.name, expression.preset or "", expression.panel, "vertex")
        if indices:
            index, move = np.concatenate(indices), np.concatenate(moves)
            index, inverse = np.unique(index, return_inverse=True)
            summed = np.zeros((len(index), 3))
            np.add.at(summed, inverse, move)
            # As an MMD morph's offsets are (pmx.py): a damaged target, or a bind weighted 1e300,
            # would throw the face kilometres away whenever the expression is keyed.
            found = first_unreal_row(summed, MAX_METRES, "metres")
            if found:
                raise AvatarFormatError(self.path, f"expression {expression.name!r}: the offset of vertex "
                                                   f"{index[found[0]]} {found[1]}")
            kept = np.abs(summed).max(axis=1) > 0
            morph.vertex_indices, morph.vertex_offsets = index[kept], summed[kept].astype(np.float32)
        return morph

    def humanoid_names(self):
        """{node index: VRM humanoid bone name} (VRM 0.x or 1.0), empty for a plain glTF."""
        extensions = self.document.get("extensions", {})
        names = {}
        if "VRMC_vrm" in extensions:
            for name, bone in (extensions["VRMC_vrm"].get("humanoid", {}).get("humanBones") or {}).items():
                if isinstance(bone, dict) and isinstance(bone.get("node"), int):
                    names[bone["node"]] = str(name)
        elif "VRM" in extensions:
            for bone in extensions["VRM"].get("humanoid", {}).get("humanBones") or []:
                if isinstance(bone, dict) and isinstance(bone.get("node"), int) and bone.get("bone"):
                    names[bone["node"]] = str(bone["bone"])
        return names

