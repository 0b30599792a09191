"""What a VRM/glb avatar's expressions are, read from its glTF JSON (pure: stdlib only).

Blender's glTF importer makes the meshes and shape keys; it ignores the VRM extensions. This
module reads the same file's JSON and says which morph targets each expression moves, and
what the importer will call the Blender meshes and shape keys, so the Blender side can record
the expressions in the same form as MMD morphs (`morph_record`).

- VRM 0.x: `extensions.VRM.blendShapeMaster.blendShapeGroups[]`, each with `name`,
  `presetName` and `binds` of {mesh, index, weight 0-100}. VRM 0.x avatars face glTF's -Z.
- VRM 1.0: `extensions.VRMC_vrm.expressions.preset.<name>` and `.custom.<name>`, each with
  `morphTargetBinds` of {node, index, weight 0-1}. They face +Z, as glTF says.
- A plain glb/gltf: each distinct morph target name is a morph of its own, across meshes.

Material colour and texture-transform binds are kept as read (`other_binds`); only morph
targets become shape keys.
"""

from __future__ import annotations

import contextlib
import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

from ... import json_text
from ...errors import UserError
from .limits import MAX_MATERIALS, MAX_MORPHS, MAX_NODES, MAX_TEXTURES, MAX_VERTICES, size_problem, whole_file_problem

GLB_MAGIC = b"glTF"
GLB_JSON_CHUNK = 0x4E4F534A  # "JSON"

# MMD morph panels (render.formats.mmd.model): 2 eye, 3 mouth, 4 other.
PANEL_EYE, PANEL_MOUTH, PANEL_OTHER = 2, 3, 4
MOUTH_PRESETS = {"a", "i", "u", "e", "o", "aa", "ih", "ou", "ee", "oh"}
EYE_PRESETS = {"blink", "blink_l", "blink_r", "blinkleft", "blinkright",
               "lookup", "lookdown", "lookleft", "lookright"}


class AvatarFormatError(UserError, ValueError):
    """A glTF/VRM file whose structure cannot be read: names the file and the problem."""

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


# What entries of the wrong kind raise as a reader walks the JSON (a number where an object
# belongs, text where a list does, a list too short, an entry left out).
MALFORMED = (AttributeError, TypeError, KeyError, IndexError, ValueError, OverflowError)


def malformed_words(error, entry):
    """What is wrong with a JSON entry that raised one of MALFORMED, in words rather than Python's
    ("accessor 3 has no 'count'")."""
    if isinstance(error, KeyError) and error.args and isinstance(error.args[0], str):
        return f"{entry} has no {error.args[0]!r}"
    if isinstance(error, (KeyError, IndexError)):
        return f"{entry} names something that does not exist"
    if isinstance(error, (TypeError, AttributeError)):
        return f"{entry} holds a value of the wrong kind (text, a number, a list or an object where another belongs)"
    return f"{entry} holds a value of the wrong size or out of range"


# The document's lists of objects THA Studio reads (glTF 2.0: each an array of objects where present).
OBJECT_LISTS = ("nodes", "meshes", "skins", "accessors", "bufferViews", "buffers", "materials", "images")


def json_objects(document, key, path):
    """document[key], a list of JSON objects ([] where absent); AvatarFormatError where it is not one."""
    entries = document.get(key, [])
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise AvatarFormatError(path, f"its glTF data is malformed: {key!r} is not a list of objects")
    return entries


@contextlib.contextmanager
def malformed_entry(path, entry):
    """Name `entry` ("accessor 3") in the AvatarFormatError for a value of the wrong kind met
    inside it; the innermost entry names it."""
    try:
        yield
    except AvatarFormatError:
        raise
    except MALFORMED as error:
        raise AvatarFormatError(path, f"its glTF data is malformed: {malformed_words(error, entry)}") from None


@dataclass
class Bind:
    mesh: int  # glTF mesh index
    target: int  # morph target index in that mesh
    weight: float  # 0..1


@dataclass
class Expression:
    name: str
    preset: str | None  # VRM preset name, None for custom expressions and plain glb targets
    kind: str  # "group" for VRM expressions, "vertex" for plain morph targets
    panel: int
    binds: list = field(default_factory=list)  # [Bind]
    other_binds: dict = field(default_factory=dict)  # material/texture binds, as read


@dataclass
class AvatarDescription:
    format: str  # "vrm0", "vrm1", "glb" or "gltf"
    name: str
    faces_back: bool  # True: the avatar faces glTF -Z (VRM 0.x)
    mesh_names: list  # the Blender mesh name the importer gives each glTF mesh
    target_names: list  # per glTF mesh: the shape key name per morph target (None: no key)
    expressions: list  # [Expression]
    warnings: list = field(default_factory=list)
    # Per glTF material: (the name the importer gives it, the opacity its base colour factor
    # leaves it at most: BLEND its alpha, MASK 0 or 1 by the cutoff, OPAQUE 1).
    materials: list = field(default_factory=list)


def morph_record(name, name_en, normalized, kind, panel, shape_keys):
    """The shared form of a recorded morph (MMD morph, VRM expression or glb morph target).

    shape_keys maps a mesh object's name to the shape key that shows this morph on it (empty
    for morphs with no vertex part: bone, material, UV morphs). Importers add kind-specific
    entries: "elements", "bones", "materials", "vertex_count", "preset".
    """
    return {
        "name": name,
        "name_en": name_en,
        "normalized": normalized,
        "kind": kind,
        "panel": int(panel),
        "shape_keys": dict(shape_keys),
    }


def read_avatar_bytes(path):
    """The bytes of a .vrm/.glb/.gltf file, refusing one that is no regular file or is past
    limits.MAX_FILE_BYTES before reading it."""
    problem = whole_file_problem(path, "an avatar file")
    if problem:
        raise AvatarFormatError(path, problem)
    return Path(path).read_bytes()


def read_gltf_json(path, data=None):
    """The JSON part of a .glb/.vrm (binary glTF) or .gltf file, as a dict (`data`: the file's
    bytes, where the caller has read them already)."""
    path = Path(path)
    data = read_avatar_bytes(path) if data is None else data
    if data[:4] == GLB_MAGIC:
        if len(data) < 20:
            raise AvatarFormatError(path, "binary glTF header is truncated")
        _magic, version, length = struct.unpack_from("<4sII", data, 0)
        if version != 2:
            raise AvatarFormatError(path, f"binary glTF version {version}; only 2 is supported")
        chunk_length, chunk_type = struct.unpack_from("<II", data, 12)
        if chunk_type != GLB_JSON_CHUNK or 20 + chunk_length > len(data):
            raise AvatarFormatError(path, "the first chunk is not a complete JSON chunk")
        text = data[20 : 20 + chunk_length]
    elif path.suffix.lower() == ".gltf":
        text = data
    else:
        raise AvatarFormatError(path, "not a binary glTF file (no 'glTF' magic at the start)")
    try:
        document = json_text.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise AvatarFormatError(path, f"its glTF JSON cannot be read: {error}") from error
    if not isinstance(document, dict) or "asset" not in document:
        raise AvatarFormatError(path, "its JSON is not a glTF document (no 'asset')")
    return document


def read_description(path, document=None):
    """The avatar's AvatarDescription (`document`: its glTF JSON, where the caller has read it)."""
    path = Path(path)
    document = read_gltf_json(path) if document is None else document
    # Named, not a traceback, where no entry describe names holds it. Blender's importer would
    # refuse most of these files anyway, later.
    with malformed_entry(path, "an entry"):
        return describe(document, path)


def node_parents(document, path):
    """Each node's parent index (-1 for a root). AvatarFormatError for a child that names no node,
    or nodes that are their own ancestors: glTF forbids cycles, Blender's importer hangs on one
    (it never returned), and every walk up the tree would go round for ever."""
    nodes = document.get("nodes", [])
    parents = [-1] * len(nodes)
    for index, node in enumerate(nodes):
        with malformed_entry(path, f"node {index}"):
            children = list(node.get("children", []))
        for child in children:
            if not isinstance(child, int) or isinstance(child, bool) or not 0 <= child < len(nodes):
                raise AvatarFormatError(path, f"node {index}'s child names node {child!r}, which does not exist")
            parents[child] = index
    state = [0] * len(nodes)  # 0: not seen, 1: on the walk now, 2: leads to a root
    for start in range(len(nodes)):
        walk, node = [], start
        while node >= 0 and state[node] == 0:
            state[node] = 1
            walk.append(node)
            node = parents[node]
        if node >= 0 and state[node] == 1:
            raise AvatarFormatError(path, f"node {node} is its own ancestor")
        for seen in walk:
            state[seen] = 2
    return parents


def check_sizes(document, path):
    """Refuse counts no real avatar has (limits.py), before Blender's importer spends minutes or
    gigabytes on them: a morph target may be an accessor with no data at all (zeros), so a file
    of a few hundred KB can ask for thousands of full-mesh shape keys."""
    meshes = document.get("meshes", [])
    accessors = document.get("accessors", [])

    def vertices(primitive):
        index = (primitive.get("attributes") or {}).get("POSITION")
        count = accessors[index].get("count") if isinstance(index, int) and 0 <= index < len(accessors) else None
        if not isinstance(count, int) or isinstance(count, bool) or count <= 0:
            return 0  # (what is wrong with it, the reader names)
        if count > MAX_VERTICES:
            raise AvatarFormatError(path, f"accessor {index} counts {count!r} elements")
        return count

    targets, mesh_vertices = [], []
    for index, mesh in enumerate(meshes):
        with malformed_entry(path, f"mesh {index}"):
            primitives = mesh.get("primitives", [])
            targets.append(max((len(primitive.get("targets") or []) for primitive in primitives), default=0))
            mesh_vertices.append(sum(vertices(primitive) for primitive in primitives))
    shape_key_vertices = sum(count * size for count, size in zip(targets, mesh_vertices))
    morphed_vertices = sum(size for count, size in zip(targets, mesh_vertices) if count)
    counts = (("nodes", len(document.get("nodes", [])), MAX_NODES),
              ("primitives", sum(len(mesh.get("primitives", [])) for mesh in meshes), MAX_MATERIALS),
              ("materials", len(document.get("materials", [])), MAX_MATERIALS),
              ("images", len(document.get("images", [])), MAX_TEXTURES),
              ("morph targets", sum(targets), MAX_MORPHS))
    problem = size_problem(counts, shape_key_vertices, f"{sum(targets):,} morph targets on {morphed_vertices:,} vertices")
    if problem:
        raise AvatarFormatError(path, problem)


def describe(document, path):
    """The avatar's description from its glTF JSON."""
    for key in OBJECT_LISTS:
        json_objects(document, key, path)
    if not isinstance(document.get("extensions", {}), dict):
        raise AvatarFormatError(path, "its glTF data is malformed: 'extensions' is not an object")
    node_parents(document, path)  # (before Blender's importer, which hangs on a cycle)
    check_sizes(document, path)
    description = _describe(document, path)
    for index, material in enumerate(document.get("materials", [])):
        with malformed_entry(path, f"material {index}"):
            description.materials.append(material_opacity(material, index))
    return description


def material_opacity(material, index):
    """(the importer's name for a glTF material, the opacity its base colour factor gives it at
    most). A material whose factor hides it (an expression's overlay, shown by a material bind)
    is invisible in glTF viewers; Blender's Workbench, which draws the texture alone, needs it
    said through the material's viewport colour."""
    name = json_name(material.get("name")) or f"Material_{index}"
    factor = (material.get("pbrMetallicRoughness") or {}).get("baseColorFactor") or [1.0, 1.0, 1.0, 1.0]
    alpha = float(factor[3]) if len(factor) == 4 and isinstance(factor[3], (int, float)) else 1.0
    mode = material.get("alphaMode", "OPAQUE")
    if mode == "BLEND":
        return name, min(max(alpha, 0.0), 1.0)
    if mode == "MASK":
        cutoff = material.get("alphaCutoff", 0.5)
        return name, 0.0 if isinstance(cutoff, (int, float)) and alpha < cutoff else 1.0
    return name, 1.0


def _describe(document, path):
    meshes = document.get("meshes", [])
    mesh_names = [json_name(mesh.get("name")) or f"Mesh_{index}" for index, mesh in enumerate(meshes)]
    target_names = []
    for index, mesh in enumerate(meshes):
        with malformed_entry(path, f"mesh {index}"):
            target_names.append(shape_key_names(document, mesh))
    extensions = document.get("extensions", {})
    warnings = []
    if "VRMC_vrm" in extensions:
        vrm = extensions["VRMC_vrm"]
        with malformed_entry(path, "the VRMC_vrm extension"):
            with malformed_entry(path, "a VRM expression"):
                expressions = vrm1_expressions(vrm.get("expressions", {}), document.get("nodes", []), warnings)
            name = json_name(vrm.get("meta", {}).get("name")) or ""
        return AvatarDescription("vrm1", name, False, mesh_names, target_names, expressions, warnings)
    if "VRM" in extensions:
        vrm = extensions["VRM"]
        with malformed_entry(path, "the VRM extension"):
            groups = vrm.get("blendShapeMaster", {}).get("blendShapeGroups", [])
            with malformed_entry(path, "a VRM blend shape group"):
                expressions = vrm0_expressions(groups, len(meshes), warnings)
            name = json_name(vrm.get("meta", {}).get("title")) or ""
        return AvatarDescription("vrm0", name, True, mesh_names, target_names, expressions, warnings)
    kind = "gltf" if Path(path).suffix.lower() == ".gltf" else "glb"
    return AvatarDescription(kind, "", False, mesh_names, target_names, target_morphs(target_names), warnings)


def shape_key_names(document, mesh):
    """The names Blender's glTF importer gives a mesh's morph targets as shape keys.

    The importer's rule: extras.targetNames[i], else the name of the target's POSITION
    accessor, else "target_<i>"; never "Basis", and repeated names get ".001"-style suffixes;
    targets that do not move POSITION make no shape key (None here).
    """
    primitives = mesh.get("primitives", [])
    targets = next((p["targets"] for p in primitives if p.get("targets")), [])
    extras_names = (mesh.get("extras") or {}).get("targetNames") or []
    accessors = document.get("accessors", [])
    used = {"Basis"}
    names = []
    for index in range(len(targets)):
        if not any(index < len(p.get("targets") or []) and "POSITION" in p["targets"][index] for p in primitives):
            names.append(None)
            continue
        name = str(extras_names[index]) if index < len(extras_names) and extras_names[index] != "" else None
        if name is None:
            accessor = targets[index].get("POSITION")
            if accessor is not None and accessor < len(accessors):
                name = json_name(accessors[accessor].get("name"))
        if name is None:
            name = f"target_{index}"
        name = unused_name(used, name)
        used.add(name)
        names.append(name)
    return names


def unused_name(used, name):
    if name not in used:
        return name
    number = 1
    while f"{name}.{number:03d}" in used:
        number += 1
    return f"{name}.{number:03d}"


def panel_of(preset):
    key = (preset or "").lower()
    if key in MOUTH_PRESETS:
        return PANEL_MOUTH
    if key in EYE_PRESETS:
        return PANEL_EYE
    return PANEL_OTHER


def bind_weight(value, name, warnings):
    """A bind's weight as a float, or None (with a warning) when it is not a finite number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    warnings.append(f"expression {name!r} has a bind weighted {value!r}, not a number; left out")
    return None


def _index(value):
    """An index as JSON holds it (an integer), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def json_name(value):
    """A name as JSON should hold it (text; a number is taken as its text), else None."""
    if isinstance(value, str):
        return value
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def vrm0_expressions(groups, mesh_count, warnings):
    expressions = []
    for group in groups:
        preset = json_name(group.get("presetName")) or None
        if preset == "unknown":
            preset = None
        name = json_name(group.get("name")) or preset or f"expression{len(expressions)}"
        binds = []
        for bind in group.get("binds") or []:
            mesh, target = _index(bind.get("mesh", -1)), _index(bind.get("index", -1))
            if mesh is None or target is None or not 0 <= mesh < mesh_count:
                warnings.append(f"expression {name!r} binds mesh {bind.get('mesh')!r} target {bind.get('index')!r}, "
                                f"which does not exist")
                continue
            weight = bind_weight(bind.get("weight", 100), name, warnings)
            if weight is not None:
                binds.append(Bind(mesh, target, weight / 100.0))
        other = {key: group[key] for key in ("materialValues", "isBinary") if group.get(key)}
        expressions.append(Expression(name, preset, "group", panel_of(preset), binds, other))
    return expressions


def vrm1_expressions(expressions_json, nodes, warnings):
    expressions = []
    for section, is_preset in (("preset", True), ("custom", False)):
        for name, body in (expressions_json.get(section) or {}).items():
            binds = []
            for bind in body.get("morphTargetBinds") or []:
                node, target = _index(bind.get("node", -1)), _index(bind.get("index", -1))
                mesh = nodes[node].get("mesh", -1) if node is not None and 0 <= node < len(nodes) else -1
                if _index(mesh) is None or mesh < 0 or target is None:
                    warnings.append(f"expression {name!r} binds node {bind.get('node')!r} target "
                                    f"{bind.get('index')!r}, which does not exist")
                    continue
                weight = bind_weight(bind.get("weight", 1.0), name, warnings)
                if weight is not None:
                    binds.append(Bind(mesh, target, weight))
            other = {key: body[key] for key in ("materialColorBinds", "textureTransformBinds", "isBinary",
                                                  "overrideBlink", "overrideLookAt", "overrideMouth")
                     if body.get(key)}
            preset = name if is_preset else None
            expressions.append(Expression(name, preset, "group", panel_of(preset), binds, other))
    return expressions


def target_morphs(target_names):
    """A plain glb: one morph per distinct shape key name, bound on every mesh that has it."""
    by_name = {}
    for mesh, names in enumerate(target_names):
        for target, name in enumerate(names):
            if name is not None:
                by_name.setdefault(name, []).append(Bind(mesh, target, 1.0))
    return [Expression(name, None, "vertex", PANEL_OTHER, binds) for name, binds in by_name.items()]
