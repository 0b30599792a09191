"""Blender objects from MMD models (.pmx, .pmd) and VRM/glb avatars (imports bpy, never torch).

`import_model(path)` is what the batch renderer and the import operator call. For MMD it reads
the file with the pure reader (`render.formats.mmd.read_model`) and imports in two phases, as
glTF-Blender-IO does:

1. `render.formats.mmd.import_plan.plan_import` works out, without bpy, everything the import
   will create: vertices in Blender's axes (MMD (x, y, z) -> Blender (x, z, y) * scale, winding
   reversed, the model facing -Y), loops, UVs, normals, materials with their texture files,
   bones with heads, tails and parents, weight groups, shape-key offsets (group morphs
   flattened) and a typed record per morph. That module's docstring says how each is derived.
2. `build_model` makes the Blender objects from that plan, with bulk `foreach_set` calls: a mesh
   with custom normals and one material slot per MMD material (its main texture shown); an
   armature with one bone per MMD bone (Japanese name as the bone name, the English name in the
   bone's "name_en" property); vertex groups; shape keys; and every morph recorded as JSON on
   the root object (`MORPHS_PROPERTY`), so a later session re-reads it from a saved .blend with
   `ImportedModel.from_object`.

Avatars (.vrm, .glb, .gltf) go through Blender's bundled glTF importer; their expression
presets (VRM 0.x blendShapeMaster, VRM 1.0 expressions) or, for a plain glb, the morph targets,
are recorded in the same form as MMD morphs (see `render.formats.avatar_expressions`).

The root object of every import also carries the model's description as JSON
(`MODEL_PROPERTY`), built by `model_info` with a `version` field; `migrate_saved_models` brings
the JSON of older files up to date (the add-on runs it after each file load).

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
from ...input_files import not_a_file
from ..formats import avatar_expressions
from ..formats.avatar_model import AVATAR_SUFFIXES, check_external_buffers, oversized_images
from ..formats.coordinates import MAX_METRES, first_unreal_row
from ..formats.mmd import MMD_SUFFIXES
from ..formats.mmd.import_plan import DEFAULT_SCALE, PlanError, plan_import
from ..formats.mmd.names import UNDECODABLE, replace_undecodable
from ..formats.mmd.names import normalize_name
from ..formats.texture_paths import oversized_texture
from .scene import node_material

SUPPORTED_SUFFIXES = MMD_SUFFIXES + AVATAR_SUFFIXES

# Custom properties on the root object (the armature, or the first object of an avatar).
MODEL_PROPERTY = "tha_studio_model"  # JSON (model_info): version, source, format, names, scale, counts, warnings
MORPHS_PROPERTY = "tha_studio_morphs"  # JSON list of morph records (see MorphRecord.as_json)
ROOT_PROPERTY = "tha_studio_root"  # on every other object of the model: the root's name
MMD_SHADING_PROPERTY = "tha_studio_mmd_shading"  # on each MMD material: JSON of its MMDShading
EDGE_SCALE_ATTRIBUTE = "mmd_edge_scale"  # float per vertex, MMD's outline scale (only when not all 1)

MODEL_INFO_VERSION = 1  # of MODEL_PROPERTY's JSON; files without "version" are version 0


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


def import_model(path, scale=DEFAULT_SCALE, name=None, collection=None, shape_keys_for=None):
    """Import an MMD model or a VRM/glb avatar into the current scene; returns an ImportedModel.

    Raises ModelImportError (or the reader's MMDFormatError, also a ValueError) naming the file
    and the problem; on any failure, nothing it created is left behind. `shape_keys_for` (MMD
    models): the morph names to make shape keys for, None for all (see plan_import).
    """
    path = check_model_path(path)
    if path.suffix.lower() in AVATAR_SUFFIXES:
        return import_avatar(path, collection=collection)

    from ..formats.mmd import read_model

    started = time.perf_counter()
    model = read_model(path)
    parsed = time.perf_counter()
    # Textures are found from the file's own folder, where a link to it lies elsewhere.
    imported = build_model(model, name or path.stem, path.resolve().parent, scale, source=path, collection=collection,
                           shape_keys_for=shape_keys_for)
    imported.timings.update(parse=parsed - started, build=time.perf_counter() - parsed)
    return imported


def check_model_path(path):
    """The path as a Path, if it names a readable, non-empty model file of a known kind."""
    path = Path(path)
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise ModelImportError(path, f"not a model file (expected {', '.join(SUPPORTED_SUFFIXES)})")
    if not path.exists():
        raise ModelImportError(path, "no such file")
    if kind := not_a_file(path):
        raise ModelImportError(path, f"{kind}, not a model file")
    if path.stat().st_size == 0:
        raise ModelImportError(path, "the file is empty")
    return path


@contextlib.contextmanager
def created_data_guard(temporary=False):
    """Remove every datablock created inside the block if the block raises, or, `temporary`,
    however it ends (a model read and let go).

    The importers create objects, meshes, armatures, materials, images and collections through
    several paths (our builder, the glTF importer, appending from a .blend, which leaves a
    library); comparing the data before and after is the one way to catch them all.
    """
    kinds = ("objects", "meshes", "armatures", "materials", "images", "textures", "collections",
             "actions", "node_groups", "cameras", "lights", "libraries")
    before = {kind: {id_.as_pointer() for id_ in getattr(bpy.data, kind)} for kind in kinds}

    def remove_created():
        if bpy.context.object is not None and bpy.context.object.mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")
        bpy.data.batch_remove([id_ for kind in kinds for id_ in getattr(bpy.data, kind)
                               if id_.as_pointer() not in before[kind]])

    try:
        yield
    except BaseException:
        remove_created()
        raise
    if temporary:
        remove_created()


def build_model(model, name, folder, scale=DEFAULT_SCALE, source=None, collection=None, shape_keys_for=None):
    """Build Blender objects from a parsed MMD `Model`; textures are looked up under `folder`.
    `shape_keys_for`: the morph names to make shape keys for (None: all; see plan_import)."""
    source = source or name
    try:
        started = time.perf_counter()
        plan = plan_import(model, scale, Path(folder), shape_keys_for)
        planned = time.perf_counter() - started
        with created_data_guard():
            imported = ModelBuilder(plan, name, source, collection).build()
    except PlanError as error:
        # A model that would make a broken mesh (indices out of range, materials not covering
        # the faces, a group morph containing itself) is refused before anything is built.
        raise ModelImportError(source, error.problem) from error
    except Exception as error:
        # Anything else still gets a message that names the file (the guard has already
        # removed what was built).
        raise ModelImportError(source, f"cannot be built in Blender: {type(error).__name__}: {error}") from error
    imported.timings["build steps"] = {"plan": planned, **imported.timings["build steps"]}
    return imported


def property_json(value):
    """JSON for a text property: readable UTF-8, but with escapes ("\\ud800") where a name keeps
    bytes that are not text (Blender stores only UTF-8; the escapes read back as the same name)."""
    text = json.dumps(value, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value)
    return text


def model_info(*, name, source, format, model_name, model_name_en, scale, axes, counts, warnings):
    """The description stored as JSON on a model's root object (MODEL_PROPERTY), for MMD models
    and avatars alike; `version` says which form it has (migrate_model_info updates older ones)."""
    return {
        "version": MODEL_INFO_VERSION,
        "name": name,
        "source": source,
        "format": format,
        "model_name": model_name,
        "model_name_en": model_name_en,
        "scale": scale,
        "axes": axes,
        "counts": counts,
        "warnings": warnings,
    }


def _model_info_0_to_1(info):
    # Version 0 (files saved before the field existed) had the same keys as version 1.
    info = {key: value for key, value in info.items() if key != "version"}
    info.setdefault("warnings", [])
    return {"version": 1, **info}


# version -> the function that turns that version's model JSON into the next version's.
MODEL_INFO_MIGRATIONS = {0: _model_info_0_to_1}


def migrate_model_info(info):
    """Model JSON of an older version (without a "version" field: 0) in the current form; the
    current version's, or a newer one's, is returned as it is."""
    version = info.get("version", 0)
    while isinstance(version, int) and version < MODEL_INFO_VERSION:
        info = MODEL_INFO_MIGRATIONS[version](info)
        version = info["version"]
    return info


def migrate_saved_models():
    """Bring the model JSON on every object of the open file to the current version (the add-on
    runs this after a file loads). Linked objects and JSON that cannot be read are left alone.
    Returns the names of the objects changed."""
    changed = []
    for obj in bpy.data.objects:
        if obj.library is not None or not isinstance(obj.get(MODEL_PROPERTY), str):
            continue
        try:
            info = json.loads(obj[MODEL_PROPERTY])
        except ValueError:
            continue
        if not isinstance(info, dict):
            continue
        migrated = migrate_model_info(info)
        if migrated != info:
            obj[MODEL_PROPERTY] = json.dumps(migrated, ensure_ascii=False)
            changed.append(obj.name)
    return changed


# ----------------------------------------------------------------------------------------------
# Import plan -> Blender


def key_points(key_block):
    """A shape key's coordinates as a collection. Blender 5's `points` takes foreach_set as one
    copy; the older `data` goes point by point (about 150 times slower)."""
    return key_block.points if hasattr(key_block, "points") else key_block.data


class ModelBuilder:
    """Makes the Blender objects of an ImportPlan: a collection with an armature and a mesh."""

    def __init__(self, plan, name, source, collection):
        self.plan = plan
        self.source = str(source)
        self.parent_collection = collection or bpy.context.scene.collection
        self.warnings = []
        self.name = self.blender_name(name, "file")
        self.bone_names = []  # Blender bone name per MMD bone index
        self.material_names = []  # Blender material name per MMD material index
        self.shape_key_names = {}  # MMD morph index -> shape key name

    def blender_name(self, text, what):
        """`text` as Blender can hold it: characters the file's bytes cannot spell (a lone UTF-16
        surrogate, a byte that is not UTF-8, a cp932 file name) become U+FFFD, with a warning;
        Blender refuses such names, which failed the whole import."""
        clean = replace_undecodable(text)
        if clean != text:
            self.warnings.append(f"{what} name {clean!r} has bytes that are not valid text; "
                                 f"Blender shows them as {UNDECODABLE}")
        return clean

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
        morphs = [
            record.as_json({mesh_obj.name: self.shape_key_names[record.index]}
                           if record.index in self.shape_key_names else {},
                           self.bone_names, self.material_names)
            for record in self.plan.morphs
        ]
        mesh_obj[ROOT_PROPERTY] = armature.name
        plan = self.plan
        armature[MODEL_PROPERTY] = property_json(
            model_info(name=self.name, source=self.source, format=plan.format, model_name=plan.model_name,
                       model_name_en=plan.model_name_en, scale=plan.scale, axes=plan.axes, counts=plan.counts,
                       warnings=self.warnings))
        armature[MORPHS_PROPERTY] = property_json(morphs)
        lap("morph records")
        return ImportedModel(
            name=self.name,
            source=self.source,
            format=plan.format,
            root=armature,
            armature=armature,
            meshes=[mesh_obj],
            morphs=morphs,
            warnings=self.warnings,
            collection=self.collection,
            timings={"build steps": steps},
        )

    def build_armature(self):
        data = bpy.data.armatures.new(self.name)
        armature = bpy.data.objects.new(self.name, data)
        self.collection.objects.link(armature)
        bones = self.plan.bones

        # Edit bones exist only in edit mode, which needs the armature active in the view layer.
        view_layer = bpy.context.view_layer
        previous_active = view_layer.objects.active
        view_layer.objects.active = armature
        bpy.ops.object.mode_set(mode="EDIT")
        try:
            edit_bones = []
            for bone in bones:
                edit_bone = data.edit_bones.new(self.blender_name(bone.name, "bone"))
                edit_bone.head = bone.head
                edit_bone.tail = bone.tail
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
            target["name_j"] = replace_undecodable(bone.name_j)
            target["name_en"] = replace_undecodable(bone.name_en)
        data.display_type = "STICK"
        armature.show_in_front = True
        return armature

    def build_mesh(self):
        plan = self.plan
        mesh = bpy.data.meshes.new(self.name)
        mesh.vertices.add(len(plan.vertices))
        mesh.vertices.foreach_set("co", plan.vertices.ravel())
        mesh.loops.add(len(plan.loops))
        mesh.loops.foreach_set("vertex_index", plan.loops)
        mesh.polygons.add(len(plan.loop_starts))
        mesh.polygons.foreach_set("loop_start", plan.loop_starts)
        # Faces are smooth unless a "sharp_face" attribute says otherwise (Blender 4.1+), so
        # the custom normals below show without setting use_smooth face by face.
        mesh.polygons.foreach_set("material_index", plan.face_materials)
        if plan.uvs is not None:
            mesh.uv_layers.new(name="UVMap").data.foreach_set("uv", plan.uvs.ravel())
        mesh.update()
        if plan.normals is not None:
            mesh.normals_split_custom_set_from_vertices(plan.normals)
        for material in plan.materials:
            mesh.materials.append(self.build_material(material))
        if plan.edge_scales is not None:
            mesh.attributes.new(EDGE_SCALE_ATTRIBUTE, "FLOAT", "POINT").data.foreach_set("value", plan.edge_scales)

        obj = bpy.data.objects.new(self.name + "_mesh", mesh)
        self.collection.objects.link(obj)
        return obj

    def build_material(self, material):
        """A Principled material: the main texture (if any) times the MMD diffuse colour's alpha."""
        blender_material = node_material(self.blender_name(material.name, "material"))
        self.material_names.append(blender_material.name)
        blender_material["name_j"] = replace_undecodable(material.name_j)
        blender_material["name_en"] = replace_undecodable(material.name_en)
        red, green, blue, alpha = material.diffuse
        blender_material.diffuse_color = (red, green, blue, alpha)
        blender_material.use_backface_culling = material.backface_culling
        if material.shading is not None:  # read by the toon render style (render.blender.toon)
            blender_material[MMD_SHADING_PROPERTY] = json.dumps(material.shading.as_json())
        self.warnings.extend(material.warnings)

        nodes = blender_material.node_tree.nodes
        links = blender_material.node_tree.links
        bsdf = next(node for node in nodes if node.bl_idname == "ShaderNodeBsdfPrincipled")
        bsdf.inputs["Base Color"].default_value = (red, green, blue, 1.0)
        bsdf.inputs["Alpha"].default_value = alpha
        bsdf.inputs["Roughness"].default_value = 0.8
        image = self.texture_image(material.texture, replace_undecodable(material.name_j))
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

    def texture_image(self, path, material_name):
        """The image of a found texture file (loaded once per file), or None with a warning if
        Blender cannot read it."""
        if path is None:
            return None
        oversized = oversized_texture(path)
        if oversized:  # (a decompression bomb would take gigabytes when first shown or rendered)
            self.warnings.append(f"texture {path} of material {material_name!r} left out: {oversized}")
            return None
        try:
            return bpy.data.images.load(str(path), check_existing=True)
        except RuntimeError as error:  # a file Blender cannot read as an image
            self.warnings.append(f"texture {path} of material {material_name!r} cannot be read: {error}")
            return None

    def build_vertex_groups(self, obj):
        groups = [obj.vertex_groups.new(name=bone_name) for bone_name in self.bone_names]
        for run in self.plan.weight_groups:
            groups[run.bone].add(run.vertices.tolist(), run.weight, "ADD")

    def build_shape_keys(self, obj):
        if not self.plan.shape_keys:
            return
        obj.shape_key_add(name="Basis", from_mix=False)
        for planned in self.plan.shape_keys:
            key = obj.shape_key_add(name=self.blender_name(planned.name, "morph"), from_mix=False)
            key.value = 0.0  # Blender 5 creates shape keys at 1.0
            key_points(key).foreach_set("co", planned.coordinates(self.plan.vertices).ravel())
            self.shape_key_names[planned.morph] = key.name
        obj.data.shape_keys.name = self.name


# ----------------------------------------------------------------------------------------------
# VRM / glb avatars


def import_avatar(path, collection=None):
    """Import a .vrm/.glb/.gltf through Blender's glTF importer and record its expressions."""
    path = check_model_path(path)
    started = time.perf_counter()
    # Once, for the description and the images (a VRM is tens of megabytes); a file past the size
    # limit is refused here, before Blender's glTF importer reads it whole.
    data = avatar_expressions.read_avatar_bytes(path)
    document = avatar_expressions.read_gltf_json(path, data)
    description = avatar_expressions.read_description(path, document)  # AvatarFormatError, a ValueError
    check_external_buffers(path, document)  # (a .gltf's .bin files: Blender's importer reads them whole)
    oversized = oversized_images(path, data, document, description)
    if oversized:  # (Blender's importer takes every image; it would decode gigabytes when first shown)
        name, why = oversized[0]
        raise ModelImportError(path, f"its image {name!r} is too large to load ({why}), far past any avatar's "
                                     f"texture: a damaged or hostile file")
    parsed = time.perf_counter()
    target = collection or bpy.context.scene.collection
    with created_data_guard():
        before = {obj.as_pointer() for obj in bpy.data.objects}
        meshes_before = {mesh.as_pointer() for mesh in bpy.data.meshes}
        materials_before = {material.as_pointer() for material in bpy.data.materials}
        run_gltf_importer(path)
        new_objects = [obj for obj in bpy.data.objects if obj.as_pointer() not in before]
        if not new_objects:
            raise ModelImportError(path, "the glTF importer made no objects")
        new_meshes = [mesh for mesh in bpy.data.meshes if mesh.as_pointer() not in meshes_before]
        check_avatar_coordinates(path, new_meshes)

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
        new_materials = [m for m in bpy.data.materials if m.as_pointer() not in materials_before]
        show_material_opacity(description.materials, new_materials)
        missing_textures = leave_out_missing_textures(new_materials)
        blender_meshes = claim_gltf_meshes(description.mesh_names, new_meshes)
        morphs = build_expression_keys(description, blender_meshes, mesh_objects)

        for obj in new_objects:
            if obj is not root:
                obj[ROOT_PROPERTY] = root.name
        warnings = list(description.warnings) + missing_textures
        root[MODEL_PROPERTY] = json.dumps(
            model_info(name=path.stem, source=str(path), format=description.format, model_name=description.name,
                       model_name_en="", scale=1.0, axes="as glTF, turned to face -Y",
                       counts={"meshes": len(mesh_objects), "morphs": len(morphs)}, warnings=warnings),
            ensure_ascii=False,
        )
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
        # No bone shapes: the importer's is a 1 m icosphere in a hidden collection, which moving
        # the import into its own collection would make a sphere in every render of a rigged avatar.
        # (From the file itself: a .gltf's buffers and textures are found from its own folder.)
        result = bpy.ops.import_scene.gltf(filepath=str(Path(path).resolve()), disable_bone_shape=True)
    except RuntimeError as error:
        message = str(error).strip().splitlines()[-1] if str(error).strip() else "unknown error"
        raise ModelImportError(path, f"Blender's glTF importer failed: {message}") from error
    if result != {"FINISHED"}:
        raise ModelImportError(path, f"Blender's glTF importer returned {sorted(result)}")


def check_avatar_coordinates(path, meshes):
    """Refuse an avatar whose vertices or shape keys are not real coordinates (formats/coordinates.py):
    Blender's glTF importer takes NaN and 1e38 as they come."""
    for mesh in meshes:
        layers = [("vertex", mesh.vertices)]
        if mesh.shape_keys:
            layers += [(f"shape key {key.name!r} vertex", key.data) for key in mesh.shape_keys.key_blocks]
        for what, items in layers:
            co = np.empty(len(items) * 3, np.float32)
            items.foreach_get("co", co)
            found = first_unreal_row(co.reshape(-1, 3), MAX_METRES, "metres")
            if found:
                raise ModelImportError(path, f"mesh {mesh.name!r}: {what} {found[0]} {found[1]}")


def leave_out_missing_textures(materials):
    """Warnings ("texture ... not found", for the manifest's texture_warnings) for the image
    files the materials' texture nodes name that are not there (a .gltf's or a .blend's), which
    are taken off those nodes: Blender draws a missing image magenta, over the whole character in
    every image of a dataset; without it the material's colour shows, as for an MMD model's
    missing texture."""
    warnings = []
    for material in sorted(materials, key=lambda material: material.name):
        for node in material.node_tree.nodes if material.node_tree else ():
            image = node.image if node.type == "TEX_IMAGE" else None
            if image is None or image.source != "FILE" or image.packed_file is not None:
                continue
            file = Path(bpy.path.abspath(image.filepath, library=image.library))
            if not file.is_file():
                warnings.append(f"texture {file} of material {material.name!r} not found")
                node.image = None
    return warnings


def show_material_opacity(materials, new_materials):
    """Give each imported material the opacity its glTF base colour factor gives it, as its
    viewport colour's alpha: Workbench draws a material's texture and that alpha, not its nodes,
    so an overlay a factor hides (a VRM expression's, shown by a material bind) covered the face
    in every Workbench render. `materials`: AvatarDescription.materials, in glTF order, named as
    the importer names them (Blender adds .001 and so on to a repeated name, in that order)."""
    unclaimed = sorted(new_materials, key=lambda material: material.name)
    for name, opacity in materials:
        for material in unclaimed:
            base, dot, suffix = material.name.rpartition(".")
            if material.name == name or (dot and base == name and suffix.isdigit()):
                unclaimed.remove(material)
                if opacity < 1.0:
                    red, green, blue, _ = material.diffuse_color
                    material.diffuse_color = (red, green, blue, opacity)
                break


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

