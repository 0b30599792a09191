"""Apply a THA pose vector to an imported model (imports bpy): shape keys through roles, joints as bones.

- Morph parameters set the shape keys of the morphs their role names in the annotation. A
  both-sides morph serving a one-sided role (`side`) is applied through a copy of its shape key
  restricted to that half of the face by a vertex group, so left and right move apart.
- Head rotation follows tha.md §2.2 / the THA1 write-up: the neck root joint (the neck bone,
  首) turns about the viewing axis for neck_z; the neck tip joint (the head bone, 頭) turns
  about the horizontal axis for head_x and the vertical axis for head_y; ±1 is ±15°. The tip
  is a child of the root, so its rotation happens in the tilted neck's frame.
- THA3's body_y / body_z turn the upper body (上半身) the same way, breathing lifts the
  shoulders, and iris rotation turns the eye bones.

Signs, in THA's frame (x to the character's left, y up, z to its front): positive head_x
tilts the face up (write-up), positive head_y turns it toward the character's right (the
viewer's left; seen in the official THA3 outputs, shared/assets/golden), positive neck_z tilts
the head toward the character's left shoulder. All three are rotations by -angle about
THA's axes, which in Blender (character's left +X, up +Z, front -Y) are the axes below.
"""

from __future__ import annotations

import json
import math

import bpy
import numpy as np
from mathutils import Quaternion

from ...errors import UserError
from ..dataset.annotation import LEFT, RIGHT, morph_roles_for_schema
from .model_import import MODEL_PROPERTY, key_points

HEAD_DEGREES = 15.0  # tha.md §2.2: ±1 is ±15°
BODY_DEGREES = 15.0  # THA3 body rotation; its write-up is offline, so the head's range is reused
IRIS_DEGREES = 20.0  # eye-bone turn at iris_rotation ±1
BREATHING_SHOULDER_DEGREES = 3.0  # shoulders rise this much at breathing = 1

# THA axes in Blender coordinates, and the sign that makes a positive parameter do what THA does.
AXIS_X = (1.0, 0.0, 0.0)  # THA x: the character's left
AXIS_Y = (0.0, 0.0, 1.0)  # THA y: up
AXIS_Z = (0.0, -1.0, 0.0)  # THA z: the character's front
SIDE_GROUP = {LEFT: "tha_side_left", RIGHT: "tha_side_right"}


class PoseError(UserError, ValueError):
    """A pose that cannot be applied to this model (a role's morph or bone is not in it)."""


def rotation(axis, degrees):
    """The rotation by -degrees about a THA axis (see the module docstring for the sign)."""
    return Quaternion(axis, -math.radians(degrees))


class ModelPoser:
    """Sets one imported model's shape keys and pose bones from pose vectors of one schema."""

    def __init__(self, imported, annotation, schema):
        self.imported = imported
        self.annotation = annotation
        self.schema = schema
        self.available = set(annotation.available_parameters(schema))
        self.armature = imported.armature
        self.touched_keys = {}  # the shape keys last set, by (Key datablock, name)
        self.key_weights = {}  # parameter index -> [(shape key, weight)]
        # The centre splits a both-sides morph into its halves; without a head band it is x = 0.
        center_x = head_extent(imported, annotation).center_x if annotation.head else 0.0
        for name, role in morph_roles_for_schema(schema).items():
            if name in self.available:
                self.key_weights[schema.index(name)] = [
                    (key, weight) for morph, weight, side in annotation.morphs_for(role)
                    for key in shape_keys_for(imported, morph, side, center_x)
                ]
        self.bones = {}
        for role in ("neck", "head", "upper_body", "eye_left", "eye_right", "shoulder_left", "shoulder_right"):
            bone_name = annotation.bone_for(role)
            if bone_name and self.armature is not None:
                bone = imported.bone(bone_name)
                if bone is None:
                    raise PoseError(f"{imported.source}: the annotation's {role} bone {bone_name!r} is not in the model")
                self.bones[role] = self.armature.pose.bones[bone.name]
        for pose_bone in self.bones.values():
            pose_bone.rotation_mode = "QUATERNION"

    # --- posing

    def apply(self, pose):
        """Set the model to `pose` (this schema's vector); parameters it cannot show stay at rest."""
        pose = self.schema.check(pose)
        values, keys = {}, {}
        for index, weighted in self.key_weights.items():
            for key, weight in weighted:
                # (Told apart by their Key datablock too: an avatar's meshes may share key names.)
                which = (key.id_data.name, key.name)
                keys[which] = key
                values[which] = values.get(which, 0.0) + weight * float(pose[index])
        for which in set(self.touched_keys) - set(values):
            self.touched_keys[which].value = 0.0
        for which, value in values.items():
            keys[which].value = min(max(value, 0.0), 1.0)
        self.touched_keys = keys
        self._pose_bones(pose)

    def reset(self):
        self.apply(self.schema.neutral())

    def _value(self, pose, name):
        if name not in self.schema.names or name not in self.available:
            return 0.0
        return float(pose[self.schema.index(name)])

    def _pose_bones(self, pose):
        v = lambda name: self._value(pose, name)  # noqa: E731
        turns = {role: Quaternion() for role in self.bones}
        if "neck" in turns:
            turns["neck"] = rotation(AXIS_Z, HEAD_DEGREES * v("neck_z"))
        if "head" in turns:
            turns["head"] = rotation(AXIS_Y, HEAD_DEGREES * v("head_y")) @ rotation(AXIS_X, HEAD_DEGREES * v("head_x"))
        if "upper_body" in turns:
            turns["upper_body"] = rotation(AXIS_Y, BODY_DEGREES * v("body_y")) @ rotation(AXIS_Z, BODY_DEGREES * v("body_z"))
        for eye in ("eye_left", "eye_right"):
            if eye in turns:
                turns[eye] = rotation(AXIS_Y, IRIS_DEGREES * v("iris_rotation_y")) @ rotation(AXIS_X, IRIS_DEGREES * v("iris_rotation_x"))
        # The outer end of each shoulder goes up: about the front axis, opposite ways.
        lift = BREATHING_SHOULDER_DEGREES * v("breathing")
        if "shoulder_left" in turns:
            turns["shoulder_left"] = rotation(AXIS_Z, lift)
        if "shoulder_right" in turns:
            turns["shoulder_right"] = rotation(AXIS_Z, -lift)
        for role, turn in turns.items():
            self.bones[role].rotation_quaternion = _local_rotation(self.bones[role], turn)


def shape_keys_for(imported, morph_name, side=None, center_x=0.0):
    """The shape keys that show a morph, one per mesh it moves (an MMD model has one mesh; an
    avatar's expression may move the face, the teeth and the lashes); with `side`, copies
    restricted to that half (made once)."""
    record = imported.morph(morph_name)
    if record is None or not record.get("shape_keys"):
        raise PoseError(f"{imported.source}: the annotation names morph {morph_name!r}, which has no shape key in the model")
    found = []
    for mesh_name, key_name in record["shape_keys"].items():
        obj = bpy.data.objects[mesh_name]
        key = obj.data.shape_keys.key_blocks[key_name]
        found.append(key if side is None else _side_key(obj, key, side, center_x))
    return found


def _side_key(obj, key, side, center_x):
    name = f"{key.name}.tha_{side}"
    keys = obj.data.shape_keys.key_blocks
    if name in keys:
        return keys[name]
    group = _side_group(obj, side, center_x)
    copy = obj.shape_key_add(name=name, from_mix=False)
    copy.value = 0.0
    co = np.empty(len(obj.data.vertices) * 3, np.float32)
    key_points(key).foreach_get("co", co)
    key_points(copy).foreach_set("co", co)
    copy.vertex_group = group.name
    return copy


def _side_group(obj, side, center_x):
    """A vertex group of the character's `side` half (its left is +X in the scene: an avatar's
    mesh may sit under transforms of its own, a VRM 0.x one turned half round)."""
    name = SIDE_GROUP[side]
    if name in obj.vertex_groups:
        return obj.vertex_groups[name]
    co = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", co)
    world = np.array(obj.matrix_world, np.float64)
    x = co.reshape(-1, 3) @ world[0, :3] + world[0, 3] - center_x
    on_side = x > 0 if side == LEFT else x < 0
    group = obj.vertex_groups.new(name=name)
    group.add(np.flatnonzero(on_side).tolist(), 1.0, "REPLACE")
    return group


def _local_rotation(pose_bone, turn):
    """A rotation given in the scene's axes, as the pose bone's own (rest-relative) rotation. (An
    MMD armature's axes are the scene's; an avatar's armature may be turned, a VRM 0.x one half
    round.)"""
    rest = (pose_bone.id_data.matrix_world.to_3x3() @ pose_bone.bone.matrix_local.to_3x3()).normalized()
    return (rest.inverted() @ turn.to_matrix() @ rest).to_quaternion()


def head_extent(imported, annotation):
    """The annotated head band in Blender units: the one place the model's scale is applied to it."""
    return annotation.head_extent.scaled(model_scale(imported))


def model_scale(imported):
    """Blender units per model unit of an imported model (MMD: 0.08 by default)."""
    info = json.loads(imported.root.get(MODEL_PROPERTY, "{}"))
    return float(info.get("scale", 1.0))
