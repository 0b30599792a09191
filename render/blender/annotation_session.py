"""Annotating a model by hand in Blender (imports bpy): what the annotation panel's operators call.

The model is one THA Studio imported (MMD, VRM, glb), or a rigged character of an opened .blend
(a dataset's `.blend` model: its sidecar is the .blend's). A session lives on the model's root
object (a .blend character's armature): the annotation as JSON and its sidecar's path (custom
properties, so it survives saving the .blend), and two empties, the head top and bottom handles,
which a person drags up and down (only Z is free). Cycling a role's candidates
previews each morph at full weight on the model; confirming marks the choice as a person's;
saving reads the handles back and writes the sidecar (render.dataset.annotation).
"""

from __future__ import annotations

import json
from pathlib import Path

import bpy
from mathutils import Matrix

from ...errors import UserError
from ..dataset import annotation as annotations
from .blend_model import character_armature, describe_open_character, model_from_scene
from .model_import import MODEL_PROPERTY, ROOT_PROPERTY, SUPPORTED_SUFFIXES, ImportedModel, ModelImportError
from .posing import head_extent, model_scale, shape_keys_for

ANNOTATION_PROPERTY = "tha_studio_annotation"
SIDECAR_PROPERTY = "tha_studio_annotation_path"
HANDLE_PROPERTY = "tha_studio_head_handle"  # on the empties: "top" or "bottom"
HANDLE_NAMES = {"top": "THA head top", "bottom": "THA head bottom"}


class SessionError(UserError, ValueError):
    """Something the panel reports to the person in one line."""


def model_root(obj):
    """The model's root object for any of its objects or handles: an imported model's root, or
    the armature of a rigged character THA Studio did not import (one in an opened .blend, which
    `start` describes); None for anything else."""
    if obj is None:
        return None
    if HANDLE_PROPERTY in obj and obj.parent is not None:
        obj = obj.parent
    if ROOT_PROPERTY in obj:
        return bpy.data.objects.get(obj[ROOT_PROPERTY])
    return obj if MODEL_PROPERTY in obj else character_armature(obj)


def _opened_model(root):
    """(ImportedModel, its source file, the annotation's model reader): an import's source is the
    model file it read; a character of the open .blend is the .blend, described as it is now and
    read from the scene (as a dataset run reads the saved file)."""
    if MODEL_PROPERTY in root and json.loads(root[MODEL_PROPERTY])["format"] != "blend":
        imported = ImportedModel.from_object(root)
        return imported, Path(imported.source), None
    if not bpy.data.filepath:
        raise SessionError(f"{root.name}: save this Blender file first: the annotation of a character THA Studio did "
                           f"not import is kept beside its .blend")
    try:
        imported = describe_open_character(root, bpy.data.filepath)
    except ModelImportError as error:
        raise SessionError(str(error)) from None
    return imported, Path(imported.source), lambda path: model_from_scene(imported)


def load(root):
    if ANNOTATION_PROPERTY not in root:
        raise SessionError(f"{root.name}: start annotating first")
    return annotations.Annotation.from_json(json.loads(root[ANNOTATION_PROPERTY]), source=root.name)


def store(root, annotation):
    root[ANNOTATION_PROPERTY] = json.dumps(annotation.to_json(), ensure_ascii=False)


def start(root, sidecar=None):
    """Open (or make automatically) the model's annotation and place the head handles; returns it."""
    imported, source, read_model = _opened_model(root)
    if read_model is None and source.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise SessionError(f"{source.name}: annotation reads MMD models and avatars ({', '.join(SUPPORTED_SUFFIXES)})")
    path = Path(sidecar) if sidecar else annotations.sidecar_path(source)
    annotations.remove_stale_sidecar_temps(path)  # a Blender killed while saving left one
    annotation, _ = annotations.load_or_annotate(source, [path], read_model)
    if not annotation.head:
        raise SessionError(f"{source.name}: no head bone to place the head band from; {annotation.review.get('reasons')}")
    store(root, annotation)
    root[SIDECAR_PROPERTY] = str(path)
    place_handles(root, head_extent(imported, annotation))
    return annotation


def place_handles(root, head):
    """Put the top and bottom handles on `head` (a HeadExtent in Blender units), on its centre line."""
    for which in ("top", "bottom"):
        empty = handle(root, which)
        if empty is None:
            empty = bpy.data.objects.new(HANDLE_NAMES[which], None)
            empty.empty_display_type = "SINGLE_ARROW" if which == "top" else "CONE"
            empty.empty_display_size = 0.03
            empty[HANDLE_PROPERTY] = which
            empty.parent = root
            for collection in root.users_collection:
                collection.objects.link(empty)
        # Placed in the scene's axes, where the head band is: an avatar's root may be turned.
        empty.matrix_world = Matrix.Translation((head.center_x, head.front_z, getattr(head, which)))
        empty.lock_location = (True, True, False)  # drag up and down only
        empty.show_name = True
        empty.show_in_front = True


def handle(root, which):
    return next((o for o in root.children if o.get(HANDLE_PROPERTY) == which), None)


def candidates(root, role):
    """[(morph name, side or None, confidence)] for a role, the current choice first if a person set it."""
    annotation = load(root)
    entry = annotation.morph_roles.get(role, {})
    found = [(c["name"], c.get("side"), c.get("confidence", 0.0)) for c in entry.get("candidates", [])]
    for name, _, side in annotation.morphs_for(role):
        if not any(n == name and s == side for n, s, _ in found):
            found.insert(0, (name, side, entry.get("confidence", 1.0)))
    if not found:
        raise SessionError(f"no morph was found for {role}; pick one in the model's shape keys and confirm it")
    return found


def preview(root, role, index):
    """Show candidate `index` of a role at full weight (every other previewed key back at 0); returns it."""
    found = candidates(root, role)
    name, side, confidence = found[index % len(found)]
    imported = ImportedModel.from_object(root)
    center_x = head_extent(imported, load(root)).center_x
    for mesh in imported.meshes:
        for key in mesh.data.shape_keys.key_blocks[1:] if mesh.data.shape_keys else ():
            key.value = 0.0
    for key in shape_keys_for(imported, name, side, center_x):
        key.value = 1.0
    return name, side, confidence


def confirm(root, role, index):
    found = candidates(root, role)
    name, side, _ = found[index % len(found)]
    annotation = load(root)
    annotation.set_morph_role(role, name, side=side, source=annotations.PERSON)
    store(root, annotation)
    return name, side


def save(root):
    """Read the handles back, reset the preview and write the sidecar atomically; returns its path."""
    annotation = load(root)
    imported = ImportedModel.from_object(root)
    scale = model_scale(imported)
    top, bottom = (handle(root, which) for which in ("top", "bottom"))
    bpy.context.view_layer.update()  # (the handles' scene positions, after a drag)
    if top is not None and bottom is not None:
        new = (top.matrix_world.translation.z / scale, bottom.matrix_world.translation.z / scale)
        old = (annotation.head_top, annotation.head_bottom)
        if max(abs(a - b) for a, b in zip(new, old)) > 1e-5:
            if not new[0] > new[1]:
                raise SessionError("the head top handle must stay above the head bottom handle")
            annotation.set_head(round(new[0], 5), round(new[1], 5), source=annotations.PERSON)
    for mesh in imported.meshes:
        for key in mesh.data.shape_keys.key_blocks[1:] if mesh.data.shape_keys else ():
            key.value = 0.0
    path = Path(root[SIDECAR_PROPERTY])
    try:
        annotations.save_sidecar(annotation, path)
    except OSError as error:
        raise SessionError(f"{path}: cannot write the annotation ({error.strerror})") from None
    store(root, annotation)
    return path
