"""Blender objects from MMD models (.pmx, .pmd) and VRM/glb avatars (imports bpy, never torch).

`import_model(path)` is what the batch renderer and the import operator call. For MMD it reads
the file with the pure reader (`render.formats.mmd.read_model`) and builds, with `build_model`:

- a mesh in Blender's axes: MMD is left-handed and Y up, Blender right-handed and Z up, so an
  MMD point (x, y, z) becomes (x, z, y) * scale. That swap mirrors the handedness, so the
  triangles' winding is reversed to keep their fronts facing out. The model faces -Y, as
  Blender's Front view expects. UVs (V flipped), the file's normals as custom normals, and one
  material slot per MMD material with its main texture;
- an armature with one bone per MMD bone (Japanese name as the bone name, the English name in
  the bone's "name_en" property), parented as in the file;
- vertex groups from the weights. BDEF1/2/4 are exact; SDEF is approximated by its BDEF2
  linear blend (the C/R0/R1 sphere is not applied) and QDEF by its BDEF4 linear blend (not
  dual quaternion): both differ from MMD only on strongly bent joints;
- a shape key per vertex morph and per group morph with a vertex part (group morphs are
  flattened: nested groups resolved, each child's offsets times its weight);
- every morph recorded, with bone and material morphs' data, as JSON on the root object
  (`MORPHS_PROPERTY`), so a later session re-reads it from a saved .blend with `ImportedModel.
  from_object`.

Avatars (.vrm, .glb, .gltf) go through Blender's bundled glTF importer; their expression
presets (VRM 0.x blendShapeMaster, VRM 1.0 expressions) or, for a plain glb, the morph targets,
are recorded in the same form as MMD morphs (see `render.formats.avatar_expressions`).

Every import runs inside `created_data_guard`: if anything fails, all it created is removed, so
nothing half-imported is left in the file.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import bpy
import numpy as np

from ...errors import UserError
from ..formats import avatar_expressions
from ..formats.mmd import model as mmd
from ..formats.mmd.names import normalize_name
from ..formats.texture_paths import resolve_texture

MMD_SUFFIXES = (".pmx", ".pmd")
AVATAR_SUFFIXES = (".vrm", ".glb", ".gltf")
SUPPORTED_SUFFIXES = MMD_SUFFIXES + AVATAR_SUFFIXES

# Custom properties on the root object (the armature, or the first object of an avatar).
MODEL_PROPERTY = "tha_studio_model"  # JSON: source, format, names, scale, counts, warnings
MORPHS_PROPERTY = "tha_studio_morphs"  # JSON list of morph records (see morph_record)
ROOT_PROPERTY = "tha_studio_root"  # on every other object of the model: the root's name

DEFAULT_SCALE = 0.08  # MMD units to metres, as mmd_tools uses: a 20-unit character is 1.6 m
MIN_BONE_LENGTH = 0.5  # in MMD units: Blender deletes zero-length bones when leaving edit mode


class ModelImportError(UserError, ValueError):
    """A model that cannot be imported: says which file and what is wrong."""

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


@dataclass
class ImportedModel:
    """What an import made: the root object, the armature and meshes, and the morph records."""

    name: str
    source: str
    format: str  # "pmx", "pmd", "vrm0", "vrm1", "glb"
    root: object  # bpy.types.Object: the armature, or the avatar's top object
    armature: object = None
    meshes: list = field(default_factory=list)
    morphs: list = field(default_factory=list)  # morph records (dicts)
    warnings: list = field(default_factory=list)
    collection: object = None
    timings: dict = field(default_factory=dict)  # seconds: "parse", "build"

    @property
    def objects(self):
        return [self.root] + [o for o in self.meshes if o != self.root] + (
            [self.armature] if self.armature not in (None, self.root) else []
        )

    def bone(self, name):
        """The armature's bone whose MMD name matches `name` after name normalisation, or None."""
        if self.armature is None:
            return None
        wanted = normalize_name(name)
        for bone in self.armature.data.bones:
            if normalize_name(bone.get("name_j", bone.name)) == wanted:
                return bone
        return None

    def morph(self, name):
        """The morph record whose name matches `name` after normalisation, or None."""
        wanted = normalize_name(name)
        for record in self.morphs:
            if record["normalized"] == wanted:
                return record
        return None

    def set_morph(self, name, value):
        """Set the shape keys of a morph to `value`; returns how many shape keys it set."""
        record = self.morph(name)
        if record is None:
            raise KeyError(f"{self.name}: no morph named {name!r}")
        count = 0
        for mesh_name, key_name in record["shape_keys"].items():
            obj = bpy.data.objects.get(mesh_name)
            keys = obj.data.shape_keys if obj is not None else None
            if keys is not None and key_name in keys.key_blocks:
                keys.key_blocks[key_name].value = value
                count += 1
        return count

    @classmethod
    def from_object(cls, obj):
        """Re-read an imported model from any of its objects (after a .blend was saved and opened)."""
        root = obj
        if ROOT_PROPERTY in obj:
            root = bpy.data.objects[obj[ROOT_PROPERTY]]
        if MODEL_PROPERTY not in root:
            raise ValueError(f"object {obj.name!r} was not made by THA Studio's importer")
        info = json.loads(root[MODEL_PROPERTY])
        members = [o for o in bpy.data.objects if o.get(ROOT_PROPERTY) == root.name]
        meshes = [o for o in [root] + members if o.type == "MESH"]
        armatures = [o for o in [root] + members if o.type == "ARMATURE"]
        return cls(
            name=info["name"],
            source=info["source"],
            format=info["format"],
            root=root,
            armature=armatures[0] if armatures else None,
            meshes=meshes,
            morphs=json.loads(root.get(MORPHS_PROPERTY, "[]")),
            warnings=info.get("warnings", []),
            collection=root.users_collection[0] if root.users_collection else None,
        )


# ----------------------------------------------------------------------------------------------
# Entry points


def import_model(path, scale=DEFAULT_SCALE, name=None, collection=None):
    """Import an MMD model or a VRM/glb avatar into the current scene; returns an ImportedModel.

    Raises ModelImportError (or the reader's MMDFormatError, also a ValueError) naming the file
    and the problem; on any failure, nothing it created is left behind.
    """
    path = check_model_path(path)
    if path.suffix.lower() in AVATAR_SUFFIXES:
        return import_avatar(path, collection=collection)

    from ..formats.mmd import read_model

    started = time.perf_counter()
    model = read_model(path)
    parsed = time.perf_counter()
    imported = build_model(model, name or path.stem, path.parent, scale, source=path, collection=collection)
    imported.timings.update(parse=parsed - started, build=time.perf_counter() - parsed)
    return imported


def check_model_path(path):
    """The path as a Path, if it names a readable, non-empty model file of a known kind."""
    path = Path(path)
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise ModelImportError(path, f"not a model file (expected {', '.join(SUPPORTED_SUFFIXES)})")
    if not path.exists():
        raise ModelImportError(path, "no such file")
    if not path.is_file():
        raise ModelImportError(path, "not a file")
    if path.stat().st_size == 0:
        raise ModelImportError(path, "the file is empty")
    return path


@contextlib.contextmanager
def created_data_guard():
    """Remove every datablock created inside the block if the block raises.

    The importers create objects, meshes, armatures, materials, images and collections through
    several paths (our builder, the glTF importer); comparing the data before and after is the
    one way to catch them all.
    """
    kinds = ("objects", "meshes", "armatures", "materials", "images", "textures", "collections",
             "actions", "node_groups", "cameras", "lights")
    before = {kind: {id_.as_pointer() for id_ in getattr(bpy.data, kind)} for kind in kinds}
    try:
        yield
    except BaseException:
        if bpy.context.object is not None and bpy.context.object.mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")
        created = [
            id_
            for kind in kinds
            for id_ in getattr(bpy.data, kind)
            if id_.as_pointer() not in before[kind]
        ]
        bpy.data.batch_remove(created)
        raise


def build_model(model, name, folder, scale=DEFAULT_SCALE, source=None, collection=None):
    """Build Blender objects from a parsed MMD `Model`; textures are looked up under `folder`."""
    check_model(model, source or name)
    try:
        with created_data_guard():
            return ModelBuilder(model, name, Path(folder), scale, source, collection).build()
    except Exception as error:
        # check_model catches the known ways a model breaks; anything else still gets a message
        # that names the file (the guard has already removed what was built).
        raise ModelImportError(source or name, f"cannot be built in Blender: {type(error).__name__}: {error}") from error


def check_model(model, source):
    """Reject what would make a broken mesh: indices out of range, materials not covering faces."""
    vertex_count, face_count = len(model.positions), len(model.faces)
    if face_count and (model.faces.min() < 0 or model.faces.max() >= vertex_count):
        raise ModelImportError(source, f"a face uses a vertex index outside 0..{vertex_count - 1}")
    drawn = sum(material.index_count for material in model.materials)
    if drawn != 3 * face_count:
        raise ModelImportError(
            source, f"the materials draw {drawn} face indices but the model has {3 * face_count}"
        )
    bone_count = len(model.bones)
    used = model.bone_indices[model.bone_indices >= 0]
    if used.size and used.max() >= bone_count:
        raise ModelImportError(source, f"a vertex weight names bone {used.max()} of {bone_count}")
    for bone in model.bones:
        if not -1 <= bone.parent < bone_count:
            raise ModelImportError(source, f"bone {bone.name!r} has parent {bone.parent} of {bone_count}")
    for morph in model.morphs:
        if morph.kind == "vertex" and len(morph.vertex_indices):
            if morph.vertex_indices.min() < 0 or morph.vertex_indices.max() >= vertex_count:
                raise ModelImportError(source, f"morph {morph.name!r} moves a vertex outside 0..{vertex_count - 1}")


# ----------------------------------------------------------------------------------------------
# MMD model -> Blender


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


def key_points(key_block):
    """A shape key's coordinates as a collection. Blender 5's `points` takes foreach_set as one
    copy; the older `data` goes point by point (about 150 times slower)."""
    return key_block.points if hasattr(key_block, "points") else key_block.data


class ModelBuilder:
    """Turns one parsed Model into a collection with an armature and a mesh; `build()` runs it."""

    def __init__(self, model, name, folder, scale, source, collection):
        self.model = model
        self.name = name
        self.folder = folder
        self.scale = scale
        self.source = str(source) if source else name
        self.parent_collection = collection or bpy.context.scene.collection
        self.warnings = []
        self.bone_names = []  # Blender bone name per MMD bone index
        self.material_names = []  # Blender material name per MMD material index
        self.shape_key_names = {}  # MMD morph index -> shape key name

    def build(self):
        self.collection = bpy.data.collections.new(self.name)
        self.parent_collection.children.link(self.collection)
        steps = {}  # seconds per step, for the benchmark
        clock = time.perf_counter()

        def lap(step):
            nonlocal clock
            now = time.perf_counter()
            steps[step] = now - clock
            clock = now

        armature = self.build_armature()
        lap("armature")
        mesh_obj = self.build_mesh()
        mesh_obj.parent = armature
        modifier = mesh_obj.modifiers.new("Armature", "ARMATURE")
        modifier.object = armature
        lap("mesh and materials")
        self.build_vertex_groups(mesh_obj)
        lap("weights")
        self.build_shape_keys(mesh_obj)
        lap("shape keys")
        morphs = self.morph_records(mesh_obj)
        mesh_obj[ROOT_PROPERTY] = armature.name
        armature[MODEL_PROPERTY] = json.dumps(self.model_info(), ensure_ascii=False)
        armature[MORPHS_PROPERTY] = json.dumps(morphs, ensure_ascii=False)
        lap("morph records")
        return ImportedModel(
            name=self.name,
            source=self.source,
            format=self.model.format,
            root=armature,
            armature=armature,
            meshes=[mesh_obj],
            morphs=morphs,
            warnings=self.warnings,
            collection=self.collection,
            timings={"build steps": steps},
        )

    def model_info(self):
        m = self.model
        return {
            "name": self.name,
            "source": self.source,
            "format": m.format,
            "model_name": m.name,
            "model_name_en": m.name_en,
            "scale": self.scale,
            "axes": "Blender (x, y, z) = MMD (x, z, y) * scale; the model faces -Y",
            "counts": {
                "vertices": len(m.positions),
                "faces": len(m.faces),
                "materials": len(m.materials),
                "bones": len(m.bones),
                "morphs": len(m.morphs),
                "rigid_bodies": len(m.rigid_bodies),
                "joints": len(m.joints),
            },
            "warnings": self.warnings,
        }

    # -- armature ------------------------------------------------------------------------------

    def build_armature(self):
        data = bpy.data.armatures.new(self.name)
        armature = bpy.data.objects.new(self.name, data)
        self.collection.objects.link(armature)
        bones = self.model.bones
        heads = to_blender_axes([b.position for b in bones], self.scale) if bones else np.zeros((0, 3))
        tails = self.bone_tails(heads)

        # Edit bones exist only in edit mode, which needs the armature active in the view layer.
        view_layer = bpy.context.view_layer
        previous_active = view_layer.objects.active
        view_layer.objects.active = armature
        bpy.ops.object.mode_set(mode="EDIT")
        try:
            edit_bones = []
            for bone, head, tail in zip(bones, heads, tails):
                edit_bone = data.edit_bones.new(bone.name or "bone")
                edit_bone.head = head
                edit_bone.tail = tail
                edit_bones.append(edit_bone)
            for bone, edit_bone in zip(bones, edit_bones):
                if bone.parent >= 0:
                    edit_bone.parent = edit_bones[bone.parent]
            self.bone_names = [edit_bone.name for edit_bone in edit_bones]
        finally:
            bpy.ops.object.mode_set(mode="OBJECT")
            view_layer.objects.active = previous_active
        for bone, bone_name in zip(bones, self.bone_names):
            target = data.bones[bone_name]
            target["name_j"] = bone.name
            target["name_en"] = bone.name_en
        data.display_type = "STICK"
        armature.show_in_front = True
        return armature

    def bone_tails(self, heads):
        """Each bone's tail: its tail bone's head, or its offset; never at its own head."""
        bones = self.model.bones
        tails = heads.copy()
        for i, bone in enumerate(bones):
            if bone.flags & mmd.BONE_TAIL_IS_BONE:
                if 0 <= bone.tail_bone < len(bones):
                    tails[i] = heads[bone.tail_bone]
            else:
                tails[i] = heads[i] + to_blender_axes(bone.tail_offset, self.scale)[0]
        short = np.linalg.norm(tails - heads, axis=1) < 1e-5 * max(self.scale, 1e-6)
        tails[short] = heads[short] + np.array([0.0, 0.0, MIN_BONE_LENGTH * self.scale], np.float32)
        return tails

    # -- mesh ----------------------------------------------------------------------------------

    def build_mesh(self):
        m = self.model
        mesh = bpy.data.meshes.new(self.name)
        positions = to_blender_axes(m.positions, self.scale)
        faces = np.ascontiguousarray(m.faces[:, ::-1], dtype=np.int32)  # winding, see module doc
        face_count = len(faces)

        mesh.vertices.add(len(positions))
        mesh.vertices.foreach_set("co", positions.ravel())
        mesh.loops.add(3 * face_count)
        mesh.loops.foreach_set("vertex_index", faces.ravel())
        mesh.polygons.add(face_count)
        mesh.polygons.foreach_set("loop_start", np.arange(0, 3 * face_count, 3, dtype=np.int32))
        # Faces are smooth unless a "sharp_face" attribute says otherwise (Blender 4.1+), so
        # the custom normals below show without setting use_smooth face by face.
        material_of_face = np.repeat(
            np.arange(len(m.materials), dtype=np.int32),
            [material.index_count // 3 for material in m.materials],
        )
        mesh.polygons.foreach_set("material_index", material_of_face)

        if len(m.uvs):
            uv = m.uvs[faces.ravel()].astype(np.float32)
            uv[:, 1] = 1.0 - uv[:, 1]  # MMD's V runs down the image, Blender's up
            mesh.uv_layers.new(name="UVMap").data.foreach_set("uv", uv.ravel())
        mesh.update()
        if len(m.normals):
            normals = to_blender_axes(m.normals, 1.0)
            lengths = np.linalg.norm(normals, axis=1, keepdims=True)
            normals = np.where(lengths > 1e-12, normals / np.maximum(lengths, 1e-12), 0.0)
            mesh.normals_split_custom_set_from_vertices(normals)

        for index, material in enumerate(m.materials):
            mesh.materials.append(self.build_material(index, material))

        obj = bpy.data.objects.new(self.name + "_mesh", mesh)
        self.collection.objects.link(obj)
        return obj

    # -- materials -----------------------------------------------------------------------------

    def build_material(self, index, material):
        """A Principled material: the main texture (if any) times the MMD diffuse colour's alpha."""
        blender_material = bpy.data.materials.new(material.name or f"material{index}")
        self.material_names.append(blender_material.name)
        blender_material["name_j"] = material.name
        blender_material["name_en"] = material.name_en
        red, green, blue, alpha = (float(v) for v in material.diffuse)
        blender_material.diffuse_color = (red, green, blue, alpha)
        blender_material.use_backface_culling = not (material.flags & mmd.MATERIAL_NO_CULL)
        self.resolve_side_textures(material)

        nodes = blender_material.node_tree.nodes
        links = blender_material.node_tree.links
        bsdf = next(node for node in nodes if node.bl_idname == "ShaderNodeBsdfPrincipled")
        bsdf.inputs["Base Color"].default_value = (red, green, blue, 1.0)
        bsdf.inputs["Alpha"].default_value = alpha
        bsdf.inputs["Roughness"].default_value = 0.8
        image = self.texture_image(material.texture, material.name)
        if image is not None:
            texture = nodes.new("ShaderNodeTexImage")
            texture.image = image
            texture.location = (-400, 200)
            nodes.active = texture  # Workbench's texture colour mode shows the active image node
            links.new(texture.outputs["Color"], bsdf.inputs["Base Color"])
            if alpha < 1.0:
                multiply = nodes.new("ShaderNodeMath")
                multiply.operation = "MULTIPLY"
                multiply.inputs[1].default_value = alpha
                links.new(texture.outputs["Alpha"], multiply.inputs[0])
                links.new(multiply.outputs["Value"], bsdf.inputs["Alpha"])
            else:
                links.new(texture.outputs["Alpha"], bsdf.inputs["Alpha"])
        return blender_material

    def texture_image(self, texture_index, material_name):
        """The image for a texture index (loaded once per file), or None with a warning if missing."""
        if not 0 <= texture_index < len(self.model.textures):
            return None
        stored = self.model.textures[texture_index]
        path = resolve_texture(self.folder, stored)
        if path is None:
            self.warnings.append(f"texture {stored!r} of material {material_name!r} not found under {self.folder}")
            return None
        try:
            return bpy.data.images.load(str(path), check_existing=True)
        except RuntimeError as error:  # a file Blender cannot read as an image
            self.warnings.append(f"texture {path} of material {material_name!r} cannot be read: {error}")
            return None

    def resolve_side_textures(self, material):
        """Sphere and toon textures are not shaded here, but a missing one is still worth a warning."""
        for index in (material.sphere_texture, -1 if material.toon_shared else material.toon):
            if 0 <= index < len(self.model.textures):
                stored = self.model.textures[index]
                if resolve_texture(self.folder, stored) is None:
                    self.warnings.append(f"texture {stored!r} of material {material.name!r} not found under {self.folder}")

    # -- weights -------------------------------------------------------------------------------

    def build_vertex_groups(self, obj):
        groups = [obj.vertex_groups.new(name=bone_name) for bone_name in self.bone_names]
        vertices, bones, weights = self.weight_triples()
        if not len(vertices):
            return
        # One call per (bone, weight) pair: vertex_groups have no bulk setter, and most MMD
        # weights repeat (BDEF1 is all 1.0), so this is a few thousand calls for 28k vertices.
        order = np.lexsort((weights, bones))
        vertices, bones, weights = vertices[order], bones[order], weights[order]
        starts = np.flatnonzero(np.r_[True, (np.diff(bones) != 0) | (np.diff(weights) != 0)])
        ends = np.r_[starts[1:], len(vertices)]
        for start, end in zip(starts.tolist(), ends.tolist()):
            groups[bones[start]].add(vertices[start:end].tolist(), float(weights[start]), "ADD")

    def weight_triples(self):
        """(vertex, bone, weight) arrays from the per-vertex deform data, by deform type."""
        m = self.model
        count = len(m.positions)
        if count == 0 or len(m.bones) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        indices = np.asarray(m.bone_indices, np.int64).reshape(count, 4)
        weights = np.asarray(m.bone_weights, np.float32).reshape(count, 4).copy()
        types = np.asarray(m.weight_types).reshape(count)
        one = types == mmd.BDEF1
        weights[one] = (1.0, 0.0, 0.0, 0.0)
        two = (types == mmd.BDEF2) | (types == mmd.SDEF)  # SDEF as its linear blend
        weights[two, 1] = 1.0 - weights[two, 0]
        weights[two, 2:] = 0.0
        vertex = np.repeat(np.arange(count), 4)
        bone, weight = indices.ravel(), weights.ravel()
        keep = (bone >= 0) & (weight > 0.0)
        return vertex[keep], bone[keep], weight[keep]

    # -- morphs --------------------------------------------------------------------------------

    def build_shape_keys(self, obj):
        vertex_offsets = self.flattened_vertex_offsets()
        if not vertex_offsets:
            return
        base = to_blender_axes(self.model.positions, self.scale)
        obj.shape_key_add(name="Basis", from_mix=False)
        for index, (indices, offsets) in vertex_offsets.items():
            co = base.copy()
            np.add.at(co, indices, to_blender_axes(offsets, self.scale))
            key = obj.shape_key_add(name=self.model.morphs[index].name or f"morph{index}", from_mix=False)
            key.value = 0.0  # Blender 5 creates shape keys at 1.0
            key_points(key).foreach_set("co", co.ravel())
            self.shape_key_names[index] = key.name
        obj.data.shape_keys.name = self.name

    def flattened_vertex_offsets(self):
        """morph index -> (vertex indices, MMD offsets) for vertex morphs and flattened groups."""
        result = {}
        for index, morph in enumerate(self.model.morphs):
            if morph.kind == "vertex" and len(morph.vertex_indices):
                result[index] = (np.asarray(morph.vertex_indices, np.int64), np.asarray(morph.vertex_offsets, np.float32))
            elif morph.kind == "group":
                parts = [(self.model.morphs[child], weight) for child, weight in self.group_leaves(index).items()]
                parts = [(m, w) for m, w in parts if m.kind == "vertex" and len(m.vertex_indices)]
                if parts:
                    indices = np.concatenate([np.asarray(m.vertex_indices, np.int64) for m, _ in parts])
                    offsets = np.concatenate([np.asarray(m.vertex_offsets, np.float32) * np.float32(w) for m, w in parts])
                    result[index] = (indices, offsets)
        return result

    def group_leaves(self, index, weight=1.0, visiting=()):
        """A group morph flattened: non-group morph index -> total weight (cycles are cut)."""
        leaves = {}
        morphs = self.model.morphs
        morph = morphs[index]
        for child, child_weight in zip(morph.morph_indices.tolist(), morph.weights.tolist()):
            if not 0 <= child < len(morphs) or child in visiting or child == index:
                continue
            if morphs[child].kind == "group":
                nested = self.group_leaves(child, weight * child_weight, visiting + (index,))
                for leaf, leaf_weight in nested.items():
                    leaves[leaf] = leaves.get(leaf, 0.0) + leaf_weight
            else:
                leaves[child] = leaves.get(child, 0.0) + weight * child_weight
        return leaves

    def morph_records(self, mesh_obj):
        return [self.morph_record(index, morph, mesh_obj) for index, morph in enumerate(self.model.morphs)]

    def morph_record(self, index, morph, mesh_obj):
        """One morph in the form shared with avatar expressions (see avatar_expressions.morph_record)."""
        morphs = self.model.morphs
        shape_key = self.shape_key_names.get(index)
        record = avatar_expressions.morph_record(
            name=morph.name,
            name_en=morph.name_en,
            normalized=normalize_name(morph.name),
            kind=morph.kind,
            panel=morph.panel,
            shape_keys={mesh_obj.name: shape_key} if shape_key else {},
        )
        if morph.kind in ("group", "flip"):
            record["elements"] = [
                {"morph": morphs[child].name, "weight": float(weight)}
                for child, weight in zip(morph.morph_indices.tolist(), morph.weights.tolist())
                if 0 <= child < len(morphs)
            ]
            if morph.kind == "group":
                leaves = self.group_leaves(index)
                record["bones"] = self.bone_offsets(
                    [(morphs[leaf], weight) for leaf, weight in leaves.items() if morphs[leaf].kind == "bone"]
                )
                record["materials"] = [
                    dict(offset, weight=weight)
                    for leaf, weight in leaves.items()
                    if morphs[leaf].kind == "material"
                    for offset in self.material_offsets(morphs[leaf])
                ]
        elif morph.kind == "vertex":
            record["vertex_count"] = int(len(morph.vertex_indices))
        elif morph.kind == "bone":
            record["bones"] = self.bone_offsets([(morph, 1.0)])
        elif morph.kind == "material":
            record["materials"] = self.material_offsets(morph)
        elif morph.kind.startswith("uv"):
            record["vertex_count"] = int(len(morph.vertex_indices))
        return record

    def bone_offsets(self, weighted_morphs):
        """Bone morph entries in Blender axes (armature space): bone name, location, quaternion."""
        entries = []
        for morph, weight in weighted_morphs:
            for bone, move, turn in zip(morph.bone_indices.tolist(), morph.translations, morph.rotations):
                if 0 <= bone < len(self.bone_names):
                    entries.append({
                        "bone": self.bone_names[bone],
                        "location": to_blender_axes(move, self.scale)[0].tolist(),
                        "rotation": to_blender_quaternion(turn),
                        "weight": float(weight),
                    })
        return entries

    def material_offsets(self, morph):
        entries = []
        for offset in morph.material_offsets:
            target = self.material_names[offset.material] if 0 <= offset.material < len(self.material_names) else None
            entries.append({
                "material": target,  # None: every material
                "operation": "multiply" if offset.operation == 0 else "add",
                "diffuse": [float(v) for v in offset.diffuse],
                "specular": [float(v) for v in offset.specular],
                "specular_strength": float(offset.specular_strength),
                "ambient": [float(v) for v in offset.ambient],
                "edge_color": [float(v) for v in offset.edge_color],
                "edge_size": float(offset.edge_size),
                "texture_tint": [float(v) for v in offset.texture_tint],
                "sphere_tint": [float(v) for v in offset.sphere_tint],
                "toon_tint": [float(v) for v in offset.toon_tint],
            })
        return entries


# ----------------------------------------------------------------------------------------------
# VRM / glb avatars


def import_avatar(path, collection=None):
    """Import a .vrm/.glb/.gltf through Blender's glTF importer and record its expressions."""
    path = check_model_path(path)
    started = time.perf_counter()
    description = avatar_expressions.read_description(path)  # AvatarFormatError, a ValueError
    parsed = time.perf_counter()
    target = collection or bpy.context.scene.collection
    with created_data_guard():
        before = {obj.as_pointer() for obj in bpy.data.objects}
        meshes_before = {mesh.as_pointer() for mesh in bpy.data.meshes}
        run_gltf_importer(path)
        new_objects = [obj for obj in bpy.data.objects if obj.as_pointer() not in before]
        if not new_objects:
            raise ModelImportError(path, "the glTF importer made no objects")
        new_meshes = [mesh for mesh in bpy.data.meshes if mesh.as_pointer() not in meshes_before]

        group = bpy.data.collections.new(path.stem)
        target.children.link(group)
        for obj in new_objects:
            for owner in list(obj.users_collection):
                owner.objects.unlink(obj)
            group.objects.link(obj)
        root = avatar_root(new_objects, group, path.stem)
        if root not in new_objects:
            new_objects.insert(0, root)
        armatures = [obj for obj in new_objects if obj.type == "ARMATURE"]
        if description.faces_back:
            # VRM 0.x avatars face glTF's -Z, which is Blender's +Y: turn them to face -Y like MMD.
            root.matrix_world = rotation_z_180() @ root.matrix_world

        mesh_objects = [obj for obj in new_objects if obj.type == "MESH"]
        blender_meshes = claim_gltf_meshes(description.mesh_names, new_meshes)
        morphs = build_expression_keys(description, blender_meshes, mesh_objects)

        for obj in new_objects:
            if obj is not root:
                obj[ROOT_PROPERTY] = root.name
        warnings = list(description.warnings)
        root[MODEL_PROPERTY] = json.dumps({
            "name": path.stem,
            "source": str(path),
            "format": description.format,
            "model_name": description.name,
            "model_name_en": "",
            "scale": 1.0,
            "axes": "as glTF, turned to face -Y",
            "counts": {"meshes": len(mesh_objects), "morphs": len(morphs)},
            "warnings": warnings,
        }, ensure_ascii=False)
        root[MORPHS_PROPERTY] = json.dumps(morphs, ensure_ascii=False)
    return ImportedModel(
        name=path.stem,
        source=str(path),
        format=description.format,
        root=root,
        armature=armatures[0] if armatures else None,
        meshes=mesh_objects,
        morphs=morphs,
        warnings=warnings,
        collection=group,
        timings={"parse": parsed - started, "build": time.perf_counter() - parsed},
    )


def avatar_root(objects, collection, name):
    """The one top-level object of an import, or a new empty at the origin holding them all."""
    tops = [obj for obj in objects if obj.parent is None]
    if len(tops) == 1:
        return tops[0]
    root = bpy.data.objects.new(name, None)
    collection.objects.link(root)
    for obj in tops:
        matrix = obj.matrix_world.copy()
        obj.parent = root
        obj.matrix_world = matrix
    return root


def rotation_z_180():
    from mathutils import Matrix

    return Matrix.Rotation(np.pi, 4, "Z")


def run_gltf_importer(path):
    """Blender's bundled glTF importer; its failures become a ModelImportError naming the file."""
    try:
        result = bpy.ops.import_scene.gltf(filepath=str(path))
    except RuntimeError as error:
        message = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown error"
        raise ModelImportError(path, f"Blender's glTF importer failed: {message}") from error
    if result != {"FINISHED"}:
        raise ModelImportError(path, f"Blender's glTF importer returned {sorted(result)}")


def claim_gltf_meshes(mesh_names, new_meshes):
    """glTF mesh index -> the Blender mesh the importer made for it, matched by name in order.

    The importer names each mesh after the glTF mesh (or Mesh_<index>); Blender appends .001 and
    so on to repeated names, in creation order, which is index order.
    """
    unclaimed = sorted(new_meshes, key=lambda mesh: mesh.name)
    claimed = {}
    for index, wanted in enumerate(mesh_names):
        for mesh in unclaimed:
            base, dot, suffix = mesh.name.rpartition(".")
            if mesh.name == wanted or (dot and base == wanted and suffix.isdigit()):
                claimed[index] = mesh
                unclaimed.remove(mesh)
                break
    return claimed


def build_expression_keys(description, blender_meshes, mesh_objects):
    """Shape keys for the avatar's expressions, and their morph records.

    An expression that binds one morph target at full weight is that target's shape key; one
    that mixes several gets a flattened shape key of its own on each mesh it touches, as MMD
    group morphs do.
    """
    objects_of_mesh = {}
    for obj in mesh_objects:
        objects_of_mesh.setdefault(obj.data.as_pointer(), []).append(obj)
    records = []
    for expression in description.expressions:
        per_mesh = {}
        for bind in expression.binds:
            mesh = blender_meshes.get(bind.mesh)
            if mesh is None or mesh.shape_keys is None:
                continue
            key_name = target_name(description, bind)
            if key_name is None or key_name not in mesh.shape_keys.key_blocks:
                continue
            per_mesh.setdefault(mesh.as_pointer(), (mesh, []))[1].append((key_name, bind.weight))
        shape_keys = {}
        for mesh, parts in per_mesh.values():
            key_name = expression_key(mesh, expression.name, parts)
            for obj in objects_of_mesh.get(mesh.as_pointer(), []):
                shape_keys[obj.name] = key_name
        record = avatar_expressions.morph_record(
            name=expression.name,
            name_en=expression.preset or "",
            normalized=normalize_name(expression.name),
            kind=expression.kind,
            panel=expression.panel,
            shape_keys=shape_keys,
        )
        record["preset"] = expression.preset
        record["elements"] = [
            {"shape_key": target_name(description, bind), "mesh": bind.mesh, "target": bind.target,
             "weight": bind.weight}
            for bind in expression.binds
        ]
        if expression.other_binds:
            record["other_binds"] = expression.other_binds
        records.append(record)
    return records


def target_name(description, bind):
    names = description.target_names[bind.mesh]
    return names[bind.target] if 0 <= bind.target < len(names) else None


def expression_key(mesh, name, parts):
    """The shape key that shows an expression on one mesh: an existing one, or a new mix."""
    blocks = mesh.shape_keys.key_blocks
    if len(parts) == 1 and abs(parts[0][1] - 1.0) < 1e-6:
        return parts[0][0]
    count = len(mesh.vertices)
    basis = np.empty(count * 3, np.float32)
    key_points(mesh.shape_keys.reference_key).foreach_get("co", basis)
    mixed = basis.copy()
    co = np.empty_like(basis)
    for key_name, weight in parts:
        key_points(blocks[key_name]).foreach_get("co", co)
        mixed += (co - basis) * np.float32(weight)
    key_name = name if name not in blocks else f"{name} (expression)"
    # shape_key_add needs an object; any user of the mesh will do, the key lives on the mesh.
    owner = next(obj for obj in bpy.data.objects if obj.data == mesh)
    key = owner.shape_key_add(name=key_name, from_mix=False)
    key.value = 0.0
    key_points(key).foreach_set("co", mixed)
    return key.name


def summary(imported):
    """A few lines describing an import, for the command line and the operator's report."""
    info = json.loads(imported.root[MODEL_PROPERTY])
    counts = ", ".join(f"{value} {key.replace('_', ' ')}" for key, value in info["counts"].items())
    lines = [f"{imported.name} ({imported.format}): {counts}"]
    shape_keys = sum(1 for record in imported.morphs if record["shape_keys"])
    lines.append(f"{len(imported.morphs)} morphs recorded, {shape_keys} as shape keys")
    if imported.timings:
        lines.append("time: " + ", ".join(f"{key} {imported.timings[key]:.2f} s"
                                          for key in ("parse", "build") if key in imported.timings))
    lines.extend(f"warning: {warning}" for warning in imported.warnings)
    return "\n".join(lines)

