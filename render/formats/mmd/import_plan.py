"""What importing an MMD model into Blender will create, computed without Blender (pure: numpy).

Import runs in two phases, as glTF-Blender-IO's importer does: `plan_import(model, scale,
folder)` turns a parsed `Model` into an `ImportPlan` (this module), and
`render.blender.model_import` makes the Blender objects from the plan with bulk `foreach_set`
calls. Every conversion lives here, so it is tested in plain Python:

- axes: MMD is left-handed and Y up, Blender right-handed and Z up, so an MMD point (x, y, z)
  becomes (x, z, y) * scale. That swap mirrors the handedness, so each triangle's winding is
  reversed to keep its front facing out. The model faces -Y, as Blender's Front view expects.
  UVs get V flipped (MMD's V runs down the image); normals are unit length;
- bones: heads in Blender axes, tails from the tail bone or the tail offset, never at the head
  (Blender deletes zero-length bones), parents as in the file;
- weights as (bone, weight, vertices) groups, one `VertexGroup.add` call each. BDEF1/2/4 are
  exact; SDEF is approximated by its BDEF2 linear blend (the C/R0/R1 sphere is not applied) and
  QDEF by its BDEF4 linear blend (not dual quaternion): both differ from MMD only on strongly
  bent joints;
- a shape key per vertex morph and per group morph with a vertex part; group morphs are
  flattened by `flatten_group` (nested groups resolved, each child's offsets times its weight;
  a cycle or nesting deeper than MAX_GROUP_DEPTH is refused);
- a `MorphRecord` per morph, with bone and material morphs' data, which the Blender side stores
  as JSON once it knows the names Blender gave bones, materials and shape keys;
- materials with their main texture file found on disk (`resolve_texture`), and a warning for
  each texture the model names but the folder lacks; each material's `MMDShading` (ambient,
  specular, outline, sphere map and toon ramp found on disk) for the toon render style.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PureWindowsPath
from typing import Optional

import numpy as np

from ....errors import UserError
from ..avatar_expressions import morph_record
from ..limits import (  # noqa: F401 (the limits are read from here too)
    MAX_BONES, MAX_MATERIALS, MAX_MORPHS, MAX_SHAPE_KEY_VERTICES, MAX_TEXTURES, size_problem,
)
from ..texture_paths import resolve_texture
from . import model as mmd
from .names import normalize_name, replace_undecodable

DEFAULT_SCALE = 0.08  # MMD units to metres, as mmd_tools uses: a 20-unit character is 1.6 m
MAX_SCALE = 1000.0  # the most a model is scaled: a 20-unit character 20 km tall
MIN_BONE_LENGTH = 0.5  # in MMD units: Blender deletes zero-length bones when leaving edit mode
MAX_GROUP_DEPTH = 16  # group morphs inside group morphs, this many levels at most
AXES = "Blender (x, y, z) = MMD (x, z, y) * scale; the model faces -Y"


class PlanError(UserError, ValueError):
    """A model the importer refuses before building anything: `problem` says what is wrong."""

    def __init__(self, problem):
        self.problem = problem
        super().__init__(problem)


class GroupMorphError(PlanError):
    """A group morph that contains itself, or nests groups more than MAX_GROUP_DEPTH deep."""


# ----------------------------------------------------------------------------------------------
# Axes


def to_blender_axes(points, scale):
    """MMD (x, y, z), left-handed Y up, to Blender (x, z, y), right-handed Z up, scaled."""
    points = np.asarray(points, np.float32).reshape(-1, 3)
    return points[:, (0, 2, 1)] * np.float32(scale)


def to_blender_quaternion(xyzw):
    """An MMD rotation quaternion (x, y, z, w) as a Blender one (w, x, y, z) in Blender's axes.

    The axis swap is a mirror (determinant -1): the axis is swapped like a point and the angle
    changes sign.
    """
    x, y, z, w = (float(v) for v in xyzw)
    return (w, -x, -z, -y)


# ----------------------------------------------------------------------------------------------
# Group morphs


def flatten_group(morphs, index, cache=None):
    """A group morph as {non-group morph index: total weight}, nested groups resolved.

    Each leaf's weight is the product of the weights along the way, summed over every way the
    group reaches it. Children whose index is out of range are skipped; a non-group morph is
    itself at weight 1. Iterative, so deep nesting cannot exhaust Python's stack; pass the same
    `cache` dict to calls on one morph list and each nested group is flattened once.

    Raises GroupMorphError naming the morphs when a group contains itself (directly or through
    other groups) or nests groups more than MAX_GROUP_DEPTH deep.
    """
    if morphs[index].kind != "group":
        return {index: 1.0}
    cache = {} if cache is None else cache  # group index -> (leaves, nesting depth)
    if index in cache:
        return dict(cache[index][0])

    def children(group):
        morph = morphs[group]
        return iter([(child, weight) for child, weight in zip(morph.morph_indices.tolist(), morph.weights.tolist())
                     if 0 <= child < len(morphs)])

    path, pending, leaves, depths, weights = [index], [children(index)], [{}], [1], [1.0]
    while path:
        for child, weight in pending[-1]:
            if morphs[child].kind != "group":
                leaves[-1][child] = leaves[-1].get(child, 0.0) + weight
                continue
            if child in path:
                raise GroupMorphError(f"group morph {_morph_name(morphs, index)} contains itself: "
                                      + _chain(morphs, path[path.index(child):] + [child]))
            if child in cache:
                nested, depth = cache[child]
                _check_depth(morphs, path + [child], len(path) + depth)
                _add_weighted(leaves[-1], nested, weight)
                depths[-1] = max(depths[-1], depth + 1)
                continue
            _check_depth(morphs, path + [child], len(path) + 1)
            path.append(child)
            pending.append(children(child))
            leaves.append({})
            depths.append(1)
            weights.append(weight)
            break
        else:  # every child of path[-1] is done
            group, done, depth, weight = path.pop(), leaves.pop(), depths.pop(), weights.pop()
            pending.pop()
            cache[group] = (done, depth)
            if path:
                _add_weighted(leaves[-1], done, weight)
                depths[-1] = max(depths[-1], depth + 1)
    return dict(cache[index][0])


def _add_weighted(leaves, nested, weight):
    for leaf, leaf_weight in nested.items():
        leaves[leaf] = leaves.get(leaf, 0.0) + weight * leaf_weight


def _check_depth(morphs, path, depth):
    if depth > MAX_GROUP_DEPTH:
        shown = path if len(path) <= 6 else path[:3] + [None] + path[-2:]
        raise GroupMorphError(f"group morph {_morph_name(morphs, path[0])} nests group morphs more than "
                              f"{MAX_GROUP_DEPTH} deep: " + _chain(morphs, shown))


def _morph_name(morphs, index):
    return repr(morphs[index].name) if morphs[index].name else f"#{index}"


def _chain(morphs, indices):
    return " -> ".join("..." if i is None else _morph_name(morphs, i) for i in indices)


# ----------------------------------------------------------------------------------------------
# The plan


@dataclass
class PlannedBone:
    name: str  # the name asked of Blender (Blender may shorten or number it)
    name_j: str  # the MMD name as stored (may be empty)
    name_en: str
    head: np.ndarray  # (3,) Blender axes, scaled
    tail: np.ndarray  # (3,)
    parent: int  # MMD bone index, -1 for none


@dataclass
class PlannedMaterial:
    name: str  # the name asked of Blender
    name_j: str  # the MMD name as stored
    name_en: str
    diffuse: tuple  # RGBA
    backface_culling: bool
    texture: Optional[Path]  # the main texture file, found; None when the material has none or it is missing
    warnings: tuple = ()  # textures this material names that are not in the folder
    shading: Optional["MMDShading"] = None  # what MMD's own shading needs (the toon render style)


@dataclass(frozen=True)
class MMDShading:
    """A material's terms of MMD's shading beside the diffuse colour (render.blender.toon uses them)."""

    ambient: tuple = (0.0, 0.0, 0.0)  # RGB, added to diffuse x light colour
    specular: tuple = (0.0, 0.0, 0.0)  # RGB
    specular_power: float = 0.0
    draw_edge: bool = False  # the 0x10 flag: an outline in edge_color, edge_size wide
    edge_color: tuple = (0.0, 0.0, 0.0, 1.0)  # RGBA
    edge_size: float = 1.0
    sphere: Optional[Path] = None  # the sphere map file, found
    sphere_mode: int = 0  # 0 off, 1 multiply, 2 add, 3 sub-texture (not shaded: needs the extra UV)
    toon: Optional[Path] = None  # the model's own toon ramp file, found
    shared_toon: Optional[int] = None  # 0-9: MMD's shared toon01.bmp..toon10.bmp

    def as_json(self):
        return {
            "ambient": list(self.ambient), "specular": list(self.specular), "specular_power": self.specular_power,
            "draw_edge": self.draw_edge, "edge_color": list(self.edge_color), "edge_size": self.edge_size,
            "sphere": None if self.sphere is None else str(self.sphere), "sphere_mode": self.sphere_mode,
            "toon": None if self.toon is None else str(self.toon), "shared_toon": self.shared_toon,
        }


@dataclass
class WeightGroup:
    """Vertices that one bone moves with one weight: one `VertexGroup.add` call."""

    bone: int
    weight: float
    vertices: np.ndarray  # (N,) vertex indices


@dataclass
class PlannedShapeKey:
    morph: int  # MMD morph index
    name: str  # the name asked of Blender
    vertex_indices: np.ndarray  # (N,), may repeat: offsets add up
    offsets: np.ndarray  # (N, 3) Blender axes, scaled

    def coordinates(self, basis):
        """The key's (V, 3) coordinates: `basis` (the plan's vertices) moved by the offsets."""
        co = basis.copy()
        np.add.at(co, self.vertex_indices, self.offsets)
        return co


@dataclass(frozen=True)
class MorphElement:
    """A group or flip morph's child: its MMD name and weight."""

    morph: str
    weight: float


@dataclass(frozen=True)
class BoneOffset:
    bone: int  # MMD bone index
    location: tuple  # Blender axes, scaled (armature space)
    rotation: tuple  # quaternion (w, x, y, z) in Blender axes
    weight: float  # 1 for a bone morph; the bone morph's flattened weight in a group


@dataclass(frozen=True)
class MaterialChange:
    material: int  # MMD material index, -1 (or out of range): every material
    operation: str  # "multiply" or "add"
    diffuse: tuple
    specular: tuple
    specular_strength: float
    ambient: tuple
    edge_color: tuple
    edge_size: float
    texture_tint: tuple
    sphere_tint: tuple
    toon_tint: tuple
    weight: Optional[float] = None  # in a group: the material morph's flattened weight


@dataclass
class MorphRecord:
    """One MMD morph as recorded on the model (the form avatar expressions share)."""

    index: int
    name: str
    name_en: str
    normalized: str
    kind: str
    panel: int
    elements: Optional[list] = None  # [MorphElement]: group and flip morphs
    bones: Optional[list] = None  # [BoneOffset]: bone morphs, and group morphs (flattened)
    materials: Optional[list] = None  # [MaterialChange]: material morphs, and group morphs (flattened)
    vertex_count: Optional[int] = None  # vertex and UV morphs

    def as_json(self, shape_keys, bone_names, material_names):
        """The record as a JSON-ready dict, with the names Blender gave: `shape_keys` maps a
        mesh object's name to this morph's shape key; `bone_names` and `material_names` are
        indexed by MMD bone and material index."""
        record = morph_record(name=self.name, name_en=self.name_en, normalized=self.normalized,
                              kind=self.kind, panel=self.panel, shape_keys=shape_keys)
        if self.elements is not None:
            record["elements"] = [{"morph": e.morph, "weight": e.weight} for e in self.elements]
        if self.vertex_count is not None:
            record["vertex_count"] = self.vertex_count
        if self.bones is not None:
            record["bones"] = [
                {"bone": bone_names[b.bone], "location": list(b.location), "rotation": b.rotation, "weight": b.weight}
                for b in self.bones
            ]
        if self.materials is not None:
            record["materials"] = [_material_json(change, material_names) for change in self.materials]
        return record


def _material_json(change, material_names):
    entry = {
        "material": material_names[change.material] if 0 <= change.material < len(material_names) else None,
        "operation": change.operation,
        "diffuse": list(change.diffuse),
        "specular": list(change.specular),
        "specular_strength": change.specular_strength,
        "ambient": list(change.ambient),
        "edge_color": list(change.edge_color),
        "edge_size": change.edge_size,
        "texture_tint": list(change.texture_tint),
        "sphere_tint": list(change.sphere_tint),
        "toon_tint": list(change.toon_tint),
    }
    if change.weight is not None:
        entry["weight"] = change.weight
    return entry


@dataclass
class ImportPlan:
    """Everything an MMD import creates, in Blender's axes and units; `plan_import` makes one."""

    format: str  # "pmx" or "pmd"
    model_name: str
    model_name_en: str
    scale: float
    counts: dict  # what the file holds: vertices, faces, materials, bones, morphs, rigid bodies, joints
    vertices: np.ndarray  # (V, 3) float32
    loops: np.ndarray  # (3F,) int32: each face's vertex indices, winding reversed
    loop_starts: np.ndarray  # (F,) int32
    face_materials: np.ndarray  # (F,) int32: material index per face
    uvs: Optional[np.ndarray]  # (3F, 2) float32 per loop, V flipped; None when the model has none
    normals: Optional[np.ndarray]  # (V, 3) float32 unit (0 where the file's is 0 or NaN); None when none
    materials: list  # [PlannedMaterial]
    bones: list  # [PlannedBone]
    weight_groups: list  # [WeightGroup], by bone then weight
    shape_keys: list  # [PlannedShapeKey], in morph order
    morphs: list  # [MorphRecord], one per morph
    axes: str = AXES
    edge_scales: Optional[np.ndarray] = None  # (V,) float32: MMD's per-vertex outline scale; None: all 1

    @property
    def warnings(self):
        return [warning for material in self.materials for warning in material.warnings]

    def shape_key(self, morph_name):
        """The planned shape key of the morph with this exact MMD name, or None."""
        for key in self.shape_keys:
            if self.morphs[key.morph].name == morph_name:
                return key
        return None


def plan_import(model, scale=DEFAULT_SCALE, folder=None, shape_keys_for=None):
    """The ImportPlan for a parsed Model; textures are looked for under `folder` (None: not looked
    for, and not warned about). Raises PlanError (a ValueError) for a model that would make a
    broken mesh, and GroupMorphError for a group morph that contains itself or nests too deep.

    `shape_keys_for`: morph names (compared normalised) to make shape keys for, None for all.
    Blender keeps each shape key as a full copy of the mesh, so a dataset render, which moves only
    the morphs its annotation names, asks for those: memory then grows with the morphs used, not
    with every morph in the file. Every morph is still recorded (MorphRecord)."""
    wanted = None if shape_keys_for is None else {normalize_name(name) for name in shape_keys_for}
    check_model(model, wanted)
    folder = None if folder is None else Path(folder)
    faces = np.ascontiguousarray(model.faces[:, ::-1], dtype=np.int32)  # winding, see module doc
    face_count = len(faces)
    uvs = None
    if len(model.uvs):
        uvs = model.uvs[faces.ravel()].astype(np.float32)
        uvs[:, 1] = 1.0 - uvs[:, 1]  # MMD's V runs down the image, Blender's up
        uvs[~np.isfinite(uvs)] = 0.0  # a sloppy exporter's NaN: one texel rather than a broken mesh
    normals = None
    if len(model.normals):
        normals = to_blender_axes(model.normals, 1.0)
        lengths = np.linalg.norm(normals, axis=1, keepdims=True)
        # 0 (Blender's own normal there) where the file's is 0 or not a number.
        usable = np.isfinite(lengths) & (lengths > 1e-12)
        normals = np.where(usable, normals / np.where(usable, lengths, 1.0), 0.0)
    cache = {}
    return ImportPlan(
        format=model.format,
        model_name=model.name,
        model_name_en=model.name_en,
        scale=scale,
        counts={
            "vertices": len(model.positions),
            "faces": len(model.faces),
            "materials": len(model.materials),
            "bones": len(model.bones),
            "morphs": len(model.morphs),
            "rigid_bodies": len(model.rigid_bodies),
            "joints": len(model.joints),
        },
        vertices=to_blender_axes(model.positions, scale),
        loops=faces.ravel(),
        loop_starts=np.arange(0, 3 * face_count, 3, dtype=np.int32),
        face_materials=np.repeat(np.arange(len(model.materials), dtype=np.int32),
                                 [material.index_count // 3 for material in model.materials]),
        uvs=uvs,
        normals=normals,
        materials=plan_materials(model, folder),
        bones=plan_bones(model, scale),
        weight_groups=plan_weight_groups(model),
        shape_keys=plan_shape_keys(model, scale, cache, wanted),
        morphs=[plan_morph_record(model, index, scale, cache) for index in range(len(model.morphs))],
        edge_scales=_edge_scales(model),
    )


def _edge_scales(model):
    """The per-vertex outline scales, or None when every vertex has 1 (most models)."""
    scales = np.asarray(model.edge_scales, np.float32)
    if len(scales) != len(model.positions) or np.all(scales == 1.0):
        return None
    return np.clip(scales, 0.0, None)


class ModelTooLargeError(PlanError):
    """A model with more of something than any real model has (see MAX_MATERIALS etc.)."""


def _makes_shape_key(morph, wanted):
    return morph.kind in ("vertex", "group") and (wanted is None or normalize_name(morph.name) in wanted)


def check_sizes(model, wanted=None):
    """Refuse counts no real model has, before Blender spends minutes or gigabytes on them
    (`wanted`: the normalised names of the morphs to make shape keys for, None for all)."""
    counts = (("materials", len(model.materials), MAX_MATERIALS), ("bones", len(model.bones), MAX_BONES),
              ("morphs", len(model.morphs), MAX_MORPHS), ("textures", len(model.textures), MAX_TEXTURES))
    shape_keys = sum(1 for morph in model.morphs if _makes_shape_key(morph, wanted))
    vertices = len(model.positions)
    problem = size_problem(counts, shape_keys * vertices,
                           f"{shape_keys:,} vertex and group morphs on {vertices:,} vertices")
    if problem:
        raise ModelTooLargeError(problem)


def check_model(model, wanted=None):
    """Reject what would make a broken mesh (indices out of range, materials not covering faces)
    and sizes no real model has (check_sizes)."""
    check_sizes(model, wanted)
    vertex_count, face_count = len(model.positions), len(model.faces)
    if face_count and (model.faces.min() < 0 or model.faces.max() >= vertex_count):
        raise PlanError(f"a face uses a vertex index outside 0..{vertex_count - 1}")
    drawn = sum(material.index_count for material in model.materials)
    if drawn != 3 * face_count:
        raise PlanError(f"the materials draw {drawn} face indices but the model has {3 * face_count}")
    bone_count = len(model.bones)
    used = model.bone_indices[model.bone_indices >= 0]
    if used.size and used.max() >= bone_count:
        raise PlanError(f"a vertex weight names bone {used.max()} of {bone_count}")
    for bone in model.bones:
        if not -1 <= bone.parent < bone_count:
            raise PlanError(f"bone {bone.name!r} has parent {bone.parent} of {bone_count}")
    for morph in model.morphs:
        if morph.kind == "vertex" and len(morph.vertex_indices):
            if morph.vertex_indices.min() < 0 or morph.vertex_indices.max() >= vertex_count:
                raise PlanError(f"morph {morph.name!r} moves a vertex outside 0..{vertex_count - 1}")


# -- bones -------------------------------------------------------------------------------------


def plan_bones(model, scale):
    bones = model.bones
    heads = to_blender_axes([b.position for b in bones], scale) if bones else np.zeros((0, 3), np.float32)
    tails = bone_tails(model, heads, scale)
    return [PlannedBone(bone.name or "bone", bone.name, bone.name_en, head, tail, bone.parent)
            for bone, head, tail in zip(bones, heads, tails)]


def bone_tails(model, heads, scale):
    """Each bone's tail: its tail bone's head, or its offset; never at its own head."""
    bones = model.bones
    tails = heads.copy()
    for i, bone in enumerate(bones):
        if bone.flags & mmd.BONE_TAIL_IS_BONE:
            if 0 <= bone.tail_bone < len(bones):
                tails[i] = heads[bone.tail_bone]
        else:
            tails[i] = heads[i] + to_blender_axes(bone.tail_offset, scale)[0]
    short = np.linalg.norm(tails - heads, axis=1) < 1e-5 * max(scale, 1e-6)
    tails[short] = heads[short] + np.array([0.0, 0.0, MIN_BONE_LENGTH * scale], np.float32)
    return tails


# -- materials ---------------------------------------------------------------------------------


def plan_materials(model, folder):
    found = {}  # texture index -> resolved path or None, looked up once
    refused = {}  # texture index -> why the system refused to look the path up

    def texture(index):
        if folder is None or not 0 <= index < len(model.textures):
            return None
        if index not in found:
            try:
                found[index] = resolve_texture(folder, model.textures[index])
            except (OSError, ValueError) as error:
                # A path longer than the system allows, a NUL or half a character in it: a
                # problem with this texture, not with the model.
                found[index] = None
                refused[index] = getattr(error, "strerror", None) or type(error).__name__
        return found[index]

    def missing(index, material_name):
        if folder is not None and 0 <= index < len(model.textures) and texture(index) is None:
            stored = _clip(replace_undecodable(model.textures[index]))
            name = replace_undecodable(material_name)
            if index in refused:
                return [f"texture {stored!r} of material {name!r} cannot be looked up ({refused[index]})"]
            return [f"texture {stored!r} of material {name!r} not found under {folder}"]
        return []

    planned = []
    for index, material in enumerate(model.materials):
        # Sphere and toon textures are not shaded, but a missing one is still worth a warning.
        warnings = []
        for side in (material.sphere_texture, -1 if material.toon_shared else material.toon):
            if side == material.toon and _shared_toon_number(model, side) is not None:
                continue  # MMD's own toon01-10.bmp: a model need not ship them (see _shading)
            warnings += missing(side, material.name)
        warnings += missing(material.texture, material.name)
        planned.append(PlannedMaterial(
            name=material.name or f"material{index}",
            name_j=material.name,
            name_en=material.name_en,
            diffuse=tuple(float(v) for v in material.diffuse),
            backface_culling=not (material.flags & mmd.MATERIAL_NO_CULL),
            texture=texture(material.texture),
            warnings=tuple(warnings),
            shading=_shading(model, material, texture),
        ))
    return planned


SHARED_TOON_NAME = re.compile(r"^toon(0[1-9]|10)\.bmp$", re.IGNORECASE)


def _shared_toon_number(model, index):
    """0-9 when texture `index` is named toon01.bmp..toon10.bmp (MMD's reserved names), else None."""
    if not 0 <= index < len(model.textures):
        return None
    reserved = SHARED_TOON_NAME.match(PureWindowsPath(model.textures[index]).name)
    return int(reserved.group(1)) - 1 if reserved else None


def _shading(model, material, texture):
    """The material's MMDShading; a toon texture named toon01.bmp..toon10.bmp that the model's
    folder lacks is MMD's shared toon of that name (MMD reserves those names)."""
    toon, shared = None, None
    if material.toon_shared:
        shared = material.toon if 0 <= material.toon <= 9 else None
    elif 0 <= material.toon < len(model.textures):
        toon = texture(material.toon)
        if toon is None:
            shared = _shared_toon_number(model, material.toon)
    sphere = texture(material.sphere_texture) if material.sphere_mode in (1, 2) else None
    return MMDShading(
        ambient=tuple(float(v) for v in material.ambient),
        specular=tuple(float(v) for v in material.specular),
        specular_power=float(material.specular_strength),
        draw_edge=bool(material.flags & mmd.MATERIAL_EDGE),
        edge_color=tuple(float(v) for v in material.edge_color),
        edge_size=float(material.edge_size),
        sphere=sphere,
        sphere_mode=material.sphere_mode if sphere is not None else 0,
        toon=toon,
        shared_toon=shared,
    )


def _clip(text, length=120):
    """A long text (a crafted texture path) cut for a message: its start and end, with its length."""
    return text if len(text) <= length else f"{text[:60]}...{text[-40:]} ({len(text)} characters)"


# -- weights -----------------------------------------------------------------------------------


def weight_triples(model):
    """(vertex, bone, weight) arrays from the per-vertex deform data, by deform type."""
    count = len(model.positions)
    if count == 0 or len(model.bones) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    indices = np.asarray(model.bone_indices, np.int64).reshape(count, 4)
    weights = np.asarray(model.bone_weights, np.float32).reshape(count, 4).copy()
    types = np.asarray(model.weight_types).reshape(count)
    one = types == mmd.BDEF1
    weights[one] = (1.0, 0.0, 0.0, 0.0)
    two = (types == mmd.BDEF2) | (types == mmd.SDEF)  # SDEF as its linear blend
    weights[two, 1] = 1.0 - weights[two, 0]
    weights[two, 2:] = 0.0
    vertex = np.repeat(np.arange(count), 4)
    bone, weight = indices.ravel(), weights.ravel()
    keep = (bone >= 0) & (weight > 0.0)
    return vertex[keep], bone[keep], weight[keep]


def plan_weight_groups(model):
    """The weights as (bone, weight, vertices) runs: vertex groups have no bulk setter, and most
    MMD weights repeat (BDEF1 is all 1.0), so this is a few thousand runs for 28k vertices."""
    vertices, bones, weights = weight_triples(model)
    if not len(vertices):
        return []
    order = np.lexsort((weights, bones))
    vertices, bones, weights = vertices[order], bones[order], weights[order]
    starts = np.flatnonzero(np.r_[True, (np.diff(bones) != 0) | (np.diff(weights) != 0)])
    ends = np.r_[starts[1:], len(vertices)]
    return [WeightGroup(int(bones[start]), float(weights[start]), vertices[start:end])
            for start, end in zip(starts.tolist(), ends.tolist())]


# -- morphs ------------------------------------------------------------------------------------


def plan_shape_keys(model, scale, cache=None, wanted=None):
    """A shape key per vertex morph and per group morph that moves vertices (flattened); with
    `wanted` (normalised names), for those morphs only."""
    cache = {} if cache is None else cache
    keys = []
    for index, morph in enumerate(model.morphs):
        if not _makes_shape_key(morph, wanted):
            continue
        indices = offsets = None
        if morph.kind == "vertex" and len(morph.vertex_indices):
            indices = np.asarray(morph.vertex_indices, np.int64)
            offsets = np.asarray(morph.vertex_offsets, np.float32)
        elif morph.kind == "group":
            parts = [(model.morphs[leaf], weight) for leaf, weight in flatten_group(model.morphs, index, cache).items()]
            parts = [(m, w) for m, w in parts if m.kind == "vertex" and len(m.vertex_indices)]
            if parts:
                indices = np.concatenate([np.asarray(m.vertex_indices, np.int64) for m, _ in parts])
                offsets = np.concatenate([np.asarray(m.vertex_offsets, np.float32) * np.float32(w) for m, w in parts])
        if indices is not None:
            keys.append(PlannedShapeKey(index, morph.name or f"morph{index}", indices, to_blender_axes(offsets, scale)))
    return keys


def plan_morph_record(model, index, scale, cache=None):
    """The MorphRecord of one morph; group morphs carry their flattened bone and material parts."""
    morphs = model.morphs
    morph = morphs[index]
    record = MorphRecord(index, morph.name, morph.name_en, normalize_name(morph.name), morph.kind, int(morph.panel))
    if morph.kind in ("group", "flip"):
        record.elements = [
            MorphElement(morphs[child].name, float(weight))
            for child, weight in zip(morph.morph_indices.tolist(), morph.weights.tolist())
            if 0 <= child < len(morphs)
        ]
        if morph.kind == "group":
            leaves = flatten_group(morphs, index, cache)
            record.bones = bone_offsets(
                model, [(morphs[leaf], weight) for leaf, weight in leaves.items() if morphs[leaf].kind == "bone"], scale
            )
            record.materials = [
                change
                for leaf, weight in leaves.items()
                if morphs[leaf].kind == "material"
                for change in material_changes(morphs[leaf], weight)
            ]
    elif morph.kind == "vertex" or morph.kind.startswith("uv"):
        record.vertex_count = int(len(morph.vertex_indices))
    elif morph.kind == "bone":
        record.bones = bone_offsets(model, [(morph, 1.0)], scale)
    elif morph.kind == "material":
        record.materials = material_changes(morph)
    return record


def bone_offsets(model, weighted_morphs, scale):
    """Bone morph entries in Blender axes (armature space); bones out of range are left out."""
    entries = []
    for morph, weight in weighted_morphs:
        for bone, move, turn in zip(morph.bone_indices.tolist(), morph.translations, morph.rotations):
            if 0 <= bone < len(model.bones):
                entries.append(BoneOffset(bone, tuple(to_blender_axes(move, scale)[0].tolist()),
                                          to_blender_quaternion(turn), float(weight)))
    return entries


def material_changes(morph, weight=None):
    return [
        MaterialChange(
            material=offset.material,
            operation="multiply" if offset.operation == 0 else "add",
            diffuse=tuple(float(v) for v in offset.diffuse),
            specular=tuple(float(v) for v in offset.specular),
            specular_strength=float(offset.specular_strength),
            ambient=tuple(float(v) for v in offset.ambient),
            edge_color=tuple(float(v) for v in offset.edge_color),
            edge_size=float(offset.edge_size),
            texture_tint=tuple(float(v) for v in offset.texture_tint),
            sphere_tint=tuple(float(v) for v in offset.sphere_tint),
            toon_tint=tuple(float(v) for v in offset.toon_tint),
            weight=weight,
        )
        for offset in morph.material_offsets
    ]
