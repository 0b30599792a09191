"""Characters saved as .blend files, in the dataset flow (imports bpy).

A .blend is a model as much as a .pmx is: one THA Studio's import saved (its root object carries
the model's description and morph records, `model_import.MODEL_PROPERTY`), or any rigged
character made or fixed up in Blender. `append_blend` brings its objects into the current scene
as an `ImportedModel`, for the renderer; `model_from_scene` reads an imported model back as a
`Model` (render/formats/mmd/model.py), for the annotation, which needs the vertices, bones, skin
weights and morphs wherever they came from; `read_blend_model` does both for a file, leaving the
scene as it was.

A character THA Studio did not import is described here: its armature is the one that deforms
the most vertices, its meshes those that armature deforms, its morphs its shape keys by name
(across meshes, as a plain glb's are), in Blender units (scale 1). Cameras and lights in the file
are left out (the dataset scene sets its own), and so is what the file does not render. A dataset
model is one character: other characters saved beside it (what another armature deforms or
carries) are left out, and a file holding several THA Studio imports is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import bpy
import numpy as np

from ..formats.avatar_expressions import PANEL_OTHER, morph_record
from ..formats.coordinates import MAX_METRES, first_unreal_row, quiet_file_numbers
from ..formats.mmd.model import Bone, Model, Morph
from ..formats.mmd.names import normalize_name
from .model_import import (
    MODEL_PROPERTY, MORPHS_PROPERTY, ROOT_PROPERTY, ImportedModel, ModelImportError, check_avatar_coordinates,
    created_data_guard, key_points, leave_out_missing_textures, model_info,
)
from .posing import model_scale

BLEND_SUFFIX = ".blend"
KEPT_TYPES = ("MESH", "ARMATURE", "EMPTY", "CURVE", "SURFACE", "META", "FONT", "CURVES", "POINTCLOUD", "VOLUME")


def append_blend(path):
    """Append a .blend's objects to the current scene, in a collection of their own; returns the
    model they make (an ImportedModel). ModelImportError names a file that is not a readable
    .blend or holds no rigged character; nothing appended is left behind then."""
    path = Path(path)
    if not path.is_file():
        raise ModelImportError(path, "no such file")
    # A model is data, not a program: no Python it holds runs (a scripted driver's expression),
    # whatever Blender's preferences say of trusting files. (Only the dataset flow appends; its
    # processes are THA Studio's own.)
    bpy.context.preferences.filepaths.use_scripts_auto_execute = False
    with created_data_guard():
        try:
            # (From the file itself, not a link to it: its textures' relative paths are from its folder.)
            with bpy.data.libraries.load(str(path.resolve()), link=False) as (available, wanted):
                names = list(available.objects)
                wanted.objects = list(names)
                wanted.collections = list(available.collections)
        except (OSError, RuntimeError) as error:  # (Blender says "not a blend file" as an OSError)
            raise ModelImportError(path, f"not a readable .blend file ({str(error).strip() or type(error).__name__})") from None
        objects = [obj for obj in wanted.objects if obj is not None]
        hidden = _not_rendered(objects, wanted.collections)
        # An object whose name is taken here is appended as "name.001": the names THA Studio's
        # records keep (the root of each object, the mesh of each shape key) follow.
        _follow_renames({name: obj.name for name, obj in zip(names, wanted.objects) if obj is not None}, objects)
        dropped = [obj for obj in objects if obj.type not in KEPT_TYPES or obj in hidden]
        objects = [obj for obj in objects if obj not in dropped]
        # A THA Studio import keeps its records; a character described before (by the annotation
        # panel, below) is described again, as it is now.
        roots = [obj for obj in objects
                 if MODEL_PROPERTY in obj and json.loads(obj[MODEL_PROPERTY])["format"] != "blend"]
        if len(roots) > 1:
            raise ModelImportError(path, f"holds {len(roots)} models imported by THA Studio "
                                         f"({', '.join(sorted(obj.name for obj in roots))}): a dataset model is one "
                                         f"character, so save each in a .blend of its own")
        armature = _root_armature(roots[0], objects) if roots else _main_armature(path, objects)
        others = [obj for obj in objects  # (other characters')
                  if armature is not None and not _renders_with(obj, armature)]
        objects = [obj for obj in objects if obj not in others]
        bpy.data.batch_remove(dropped + others)
        collection = bpy.data.collections.new(path.stem)
        bpy.context.scene.collection.children.link(collection)
        for obj in objects:
            collection.objects.link(obj)
        materials = {slot.material for obj in objects for slot in getattr(obj, "material_slots", ())
                     if slot.material is not None}
        show_node_opacity(materials)
        warnings = leave_out_missing_textures(materials)
        if roots:
            imported = ImportedModel.from_object(roots[0])
        else:
            imported = describe_character(path, objects, collection, armature)
        imported.warnings = imported.warnings + warnings
        check_coordinates(path, imported)
        return imported


@quiet_file_numbers
def check_coordinates(path, imported):
    """Refuse a character with a vertex, shape key or bone that is not a finite number or lies
    past MAX_METRES, as an avatar's import and the model readers refuse theirs
    (model_import.check_avatar_coordinates): a .blend holding one was rendered with stray
    triangles and annotated with a head band of NaN."""
    check_avatar_coordinates(path, list(dict.fromkeys(obj.data for obj in imported.meshes)))
    armature = imported.armature
    if armature is not None:
        world = np.array(armature.matrix_world)
        for end in ("head_local", "tail_local"):
            points = np.empty(len(armature.data.bones) * 3, np.float32)
            armature.data.bones.foreach_get(end, points)
            found = first_unreal_row(points.reshape(-1, 3) @ world[:3, :3].T + world[:3, 3], MAX_METRES, "metres")
            if found:
                bone = armature.data.bones[found[0]].name
                raise ModelImportError(path, f"bone {bone!r}: its {end.split('_')[0]} {found[1]}")


def show_node_opacity(materials):
    """Give each material the opacity its shader nodes give it, where they make it less than 1
    whatever its textures hold, as its viewport colour's alpha: Workbench draws a material's
    texture and that alpha, not its nodes, so a part hidden by its nodes alone showed in Workbench
    renders (an overlay of alpha 0: a shader's Alpha input at 0 or multiplied by 0, as Blender's
    glTF importer sets one up; a mix into a Transparent BSDF)."""
    for material in materials:
        tree = material.node_tree
        output = tree.get_output_node("ALL") if tree is not None else None
        surface = output.inputs.get("Surface") if output is not None else None
        if surface is None or not surface.is_linked:
            continue
        opacity = _shader_opacity(surface.links[0].from_node, set())
        red, green, blue, alpha = material.diffuse_color
        if opacity < alpha:
            material.diffuse_color = (red, green, blue, opacity)


def _shader_opacity(node, seen):
    """The most opacity a shader node can give (1 where its nodes do not bound it)."""
    if node in seen:
        return 1.0
    seen.add(node)
    if node.type == "BSDF_TRANSPARENT":
        return 0.0
    if node.type == "MIX_SHADER":
        if node.inputs[0].is_linked:  # (a mask: the mix's share is not known)
            return 1.0
        factor = min(max(float(node.inputs[0].default_value), 0.0), 1.0)
        first, second = (_shader_opacity(socket.links[0].from_node, seen) if socket.is_linked else 1.0
                         for socket in node.inputs[1:3])
        return (1.0 - factor) * first + factor * second
    alpha = node.inputs.get("Alpha")  # Principled BSDF, or a shader group's input of that name
    bound = _most(alpha, seen) if alpha is not None else None
    return 1.0 if bound is None else min(max(bound, 0.0), 1.0)


def _most(socket, seen):
    """The largest value a float socket can take, as far as its nodes tell (None where they do
    not bound it): its value where unlinked, a texture's colour or alpha at most 1, a product
    the product of its factors' bounds (0 where one of them is 0)."""
    if not socket.is_linked:
        value = socket.default_value
        return float(value) if isinstance(value, (int, float)) else None
    node = socket.links[0].from_node
    if node in seen:
        return None
    if node.type == "TEX_IMAGE":
        return 1.0
    if node.type == "VALUE":
        return float(node.outputs[0].default_value)
    if node.type == "MATH" and node.operation == "MULTIPLY":
        first, second = (_most(node.inputs[i], seen | {node}) for i in (0, 1))
        if first == 0.0 or second == 0.0:
            return 0.0
        if first is not None and second is not None and first >= 0.0 and second >= 0.0:
            return first * second
    return None


def _not_rendered(objects, collections):
    """What a file does not render, of its `objects`: those hidden from renders, those in a
    collection hidden from renders (where Blender's glTF importer keeps its bone-shape sphere),
    and bone shapes."""
    hidden = {obj for collection in collections if collection is not None and collection.hide_render
              for obj in collection.all_objects}
    hidden |= {bone.custom_shape for obj in objects if obj.type == "ARMATURE" and obj.pose
               for bone in obj.pose.bones if bone.custom_shape is not None}
    hidden |= {obj for obj in objects if obj.hide_render}
    return hidden


def _follow_renames(renamed, objects):
    renamed = {old: new for old, new in renamed.items() if old != new}
    if not renamed:
        return
    for obj in objects:
        if obj.get(ROOT_PROPERTY) in renamed:
            obj[ROOT_PROPERTY] = renamed[obj[ROOT_PROPERTY]]
        if isinstance(obj.get(MORPHS_PROPERTY), str):
            records = json.loads(obj[MORPHS_PROPERTY])
            for record in records:
                record["shape_keys"] = {renamed.get(mesh, mesh): key for mesh, key in record.get("shape_keys", {}).items()}
            obj[MORPHS_PROPERTY] = json.dumps(records, ensure_ascii=False)


def _deforming_armature(obj):
    """The armature an object's armature modifier deforms it by, or None."""
    for modifier in getattr(obj, "modifiers", ()):
        if modifier.type == "ARMATURE" and modifier.object is not None:
            return modifier.object
    return None


def _deformed_meshes(objects):
    """{armature: [the meshes of `objects` it deforms]}, for the armatures among `objects`."""
    deformed = {}
    for obj in objects:
        armature = _deforming_armature(obj) if obj.type == "MESH" else None
        if armature is not None and armature in objects:
            deformed.setdefault(armature, []).append(obj)
    return deformed


def _main_armature(path, objects):
    """The character's armature: the one that deforms the most vertices (of equals, the first by
    name, so that two copies of one character give the original)."""
    deformed = _deformed_meshes(objects)
    if not deformed:
        raise ModelImportError(path, "holds no mesh deformed by an armature: a character needs bones to turn "
                                     "its head (neck and head bones)")
    by_name = sorted(deformed, key=lambda arm: arm.name)
    return max(by_name, key=lambda arm: sum(len(mesh.data.vertices) for mesh in deformed[arm]))


def _root_armature(root, objects):
    if root.type == "ARMATURE":
        return root
    return next((obj for obj in objects if obj.type == "ARMATURE" and obj.get(ROOT_PROPERTY) == root.name), None)


def _renders_with(obj, armature):
    """Whether `obj` is of the character `armature` moves, or of none: False for what another
    armature deforms or carries (a second character saved in the file), followed through
    deforming armatures and parents, so a rigged accessory parented to the character stays."""
    seen, other = set(), False
    while obj is not None and obj not in seen:
        if obj == armature:
            return True
        seen.add(obj)
        other = other or obj.type == "ARMATURE"
        obj = _deforming_armature(obj) or obj.parent
    return not other


def describe_character(path, objects, collection, armature=None):
    """The ImportedModel of a rigged character THA Studio did not import (`armature`'s, or the
    one that deforms the most vertices), its description and morph records written on its
    armature as an import writes them."""
    armature = armature or _main_armature(path, objects)
    meshes = sorted(_deformed_meshes(objects).get(armature, []), key=lambda obj: obj.name)
    morphs = {}
    for mesh in meshes:
        keys = mesh.data.shape_keys
        for key in keys.key_blocks if keys is not None else ():
            if key != keys.reference_key:
                morphs.setdefault(key.name, {})[mesh.name] = key.name
    records = [morph_record(name, "", normalize_name(name), "vertex", PANEL_OTHER, shape_keys)
               for name, shape_keys in morphs.items()]
    for obj in objects:
        if obj is not armature:
            obj[ROOT_PROPERTY] = armature.name
    armature[MODEL_PROPERTY] = json.dumps(model_info(
        name=path.stem, source=str(path), format="blend", model_name=armature.name, model_name_en="", scale=1.0,
        axes="as saved", counts={"meshes": len(meshes), "morphs": len(records)}, warnings=[]), ensure_ascii=False)
    armature[MORPHS_PROPERTY] = json.dumps(records, ensure_ascii=False)
    return ImportedModel(name=path.stem, source=str(path), format="blend", root=armature, armature=armature,
                         meshes=meshes, morphs=records, collection=collection)


def character_armature(obj):
    """The armature of the rigged character `obj` belongs to (the armature itself, or the one
    that deforms or parents it), or None."""
    if obj is None or obj.type == "ARMATURE":
        return obj
    armature = _deforming_armature(obj)
    if armature is not None:
        return armature
    return obj.parent if obj.parent is not None and obj.parent.type == "ARMATURE" else None


def describe_open_character(armature, path):
    """The ImportedModel of a rigged character of the open .blend (saved at `path`) that THA
    Studio did not import, for the annotation panel: described as `append_blend` describes it when
    a dataset run reads the saved file, the meshes `armature` deforms less those the file does not
    render."""
    hidden = _not_rendered(list(bpy.context.scene.objects), bpy.data.collections)
    shown = [obj for obj in bpy.context.scene.objects if obj not in hidden and obj != armature]
    return describe_character(Path(path), [armature] + _deformed_meshes([armature] + shown).get(armature, []), None)


def model_from_scene(imported):
    """An imported model as the annotation reads models: rest vertices, bones, the four strongest
    skin weights of each vertex and the morphs with shape keys, in model units (Blender units over
    the import's scale) and MMD's axis order (x, up, depth: Blender's x, z, y)."""
    scale = model_scale(imported)
    axes = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, 1.0, 0]]) / scale  # Blender (x, y, z) -> (x, z, y)
    armature = imported.armature
    bones, bone_of_name = [], {}
    if armature is not None:
        world = np.array(armature.matrix_world)
        listed = list(armature.data.bones)
        index = {bone.name: i for i, bone in enumerate(listed)}
        for i, bone in enumerate(listed):
            head = world[:3, :3] @ np.array(bone.head_local) + world[:3, 3]
            tail = world[:3, :3] @ np.array(bone.tail_local) + world[:3, 3]
            bones.append(Bone(str(bone.get("name_j", bone.name)), str(bone.get("name_en", "")), tuple(axes @ head),
                              index[bone.parent.name] if bone.parent else -1, tail_offset=tuple(axes @ (tail - head))))
            bone_of_name[bone.name] = i
    positions, bone_indices, bone_weights, starts = [], [], [], {}
    start = 0
    for obj in imported.meshes:
        world = np.array(obj.matrix_world)
        co = np.empty(len(obj.data.vertices) * 3, np.float32)
        obj.data.vertices.foreach_get("co", co)
        positions.append((co.reshape(-1, 3) @ world[:3, :3].T + world[:3, 3]) @ axes.T)
        indices = np.full((len(obj.data.vertices), 4), -1, np.int32)
        weights = np.zeros((len(obj.data.vertices), 4), np.float32)
        group_bone = {group.index: bone_of_name.get(group.name, -1) for group in obj.vertex_groups}
        for vertex in obj.data.vertices:
            strongest = sorted(((g.weight, group_bone.get(g.group, -1)) for g in vertex.groups
                                if group_bone.get(g.group, -1) >= 0 and g.weight > 0), reverse=True)[:4]
            for slot, (weight, bone) in enumerate(strongest):
                indices[vertex.index, slot], weights[vertex.index, slot] = bone, weight
        bone_indices.append(indices)
        bone_weights.append(weights)
        starts[obj.name] = (start, world)
        start += len(obj.data.vertices)
    model = Model(format=imported.format, name=imported.name)
    if positions:
        model.positions = np.concatenate(positions).astype(np.float32)
        model.bone_indices = np.concatenate(bone_indices)
        model.bone_weights = np.concatenate(bone_weights)
    model.bones = bones
    for record in imported.morphs:
        indices, offsets = [], []
        for mesh_name, key_name in record.get("shape_keys", {}).items():
            obj = bpy.data.objects.get(mesh_name)
            keys = obj.data.shape_keys if obj is not None and obj.type == "MESH" else None
            if keys is None or key_name not in keys.key_blocks or mesh_name not in starts:
                continue
            first, world = starts[mesh_name]
            moved = np.empty(len(obj.data.vertices) * 3, np.float32)
            rest = np.empty_like(moved)
            key_points(keys.key_blocks[key_name]).foreach_get("co", moved)
            key_points(keys.reference_key).foreach_get("co", rest)
            delta = (moved - rest).reshape(-1, 3) @ world[:3, :3].T @ axes.T
            changed = np.flatnonzero(np.abs(delta).max(axis=1) > 0)
            indices.append(changed + first)
            offsets.append(delta[changed])
        morph = Morph(str(record["name"]), str(record.get("name_en", "")), int(record.get("panel", PANEL_OTHER)), "vertex")
        if indices:
            morph.vertex_indices = np.concatenate(indices).astype(np.int64)
            morph.vertex_offsets = np.concatenate(offsets).astype(np.float32)
        model.morphs.append(morph)
    return model


def read_blend_model(path):
    """A .blend's character as a Model, for the annotation; the scene is left as it was."""
    with created_data_guard(temporary=True):
        return model_from_scene(append_blend(path))


def model_reader(path):
    """What the annotation reads `path` with: read_blend_model for a .blend, else None (the pure
    readers of MMD models and avatars)."""
    return read_blend_model if Path(path).suffix.lower() == BLEND_SUFFIX else None
