"""An MMD motion's face and head (a .vmd) -> THA pose keyframes (pure: numpy).

MMD motions come with songs and dialogue: a model's morph keys (あ, い, う, まばたき, ウィンク,
困る, ...) and its bones' rotations. THA Studio reads the parts THA poses:

- Morphs, by name, as the dataset annotation reads a model's morph names (render/dataset/
  annotation.py's MORPH_NAMES: あ -> mouth_aaa, まばたき -> both eye winks, 困る -> both troubled
  eyebrows, 左/右 or L/R markers -> one side). MMD's ウィンク and ウィンク２, unmarked, close the
  model's left eye (ウィンク右 the right). Morphs meaning one parameter add up, as MMD adds their
  offsets, to at most the parameter's maximum. Keys are linear between frames, as MMD plays them.
- Bones: the neck (首) and head (頭) together turn the head, taken apart as THA does (the dataset
  renderer's convention, render/blender/posing.py): neck_z the roll of the two, head_y the turn,
  head_x the nod, ±15° a unit; THA3's body_y and body_z the turn and roll of the upper body
  (上半身). Rotations are slerped between keys with each segment's Bezier ease, sampled on the
  scene's frames and keyed LINEAR where they change. Angles past THA's range are held at its edge.

Frames: a VMD counts 30 a second from 0; its frame 0 lands on `start_frame`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...errors import UserError
from ...lipsync.curves import MAX_FRAME
from ...pose.schema import get_schema
from ...render.dataset.annotation import (
    LEFT, RIGHT, SIDED_MORPH_FAMILIES, morph_families_by_name, morph_roles_for_schema, name_key, split_side,
)
from ...render.formats.mmd import vmd
from ...render.formats.mmd.import_plan import to_blender_quaternion
from ...render.formats.mmd.names import normalize_name
from .keys import linear_keys

HEAD_DEGREES = 15.0  # ±1 is ±15° (tha.md §2.2), as the dataset renderer poses models
BODY_DEGREES = 15.0
MIN_CONFIDENCE = 0.8  # a morph name matched less surely than this moves nothing
# Unmarked, these close the model's left eye (MMD's standard morphs; ウィンク右 is the right one).
LEFT_EYE_WINKS = {name_key(name) for name in ("ウィンク", "ウインク", "ウィンク2", "ウインク2")}
NECK, HEAD, UPPER_BODY = "首", "頭", "上半身"


class MotionError(UserError, ValueError):
    """A motion that keys nothing a sprite can show; the message names the file."""


def parameters_for_morph(name, schema):
    """The schema's parameters a morph of this name moves (none where the name is not one THA
    Studio knows surely)."""
    matches = morph_families_by_name(name)
    if not matches or matches[0][1] < MIN_CONFIDENCE:
        return []
    family, _, hint = matches[0]
    if family in SIDED_MORPH_FAMILIES:
        if hint:
            sides = [hint]
        elif name_key(split_side(name)[0]) in LEFT_EYE_WINKS:
            sides = [LEFT]
        else:
            sides = [LEFT, RIGHT]
        roles = [f"{family}_{side}" for side in sides]
    else:
        roles = [family]
    by_role = {role: parameter for parameter, role in morph_roles_for_schema(schema).items()}
    return [by_role[role] for role in roles if role in by_role]


@dataclass
class MotionKeys:
    keyframes: dict  # parameter -> [Keyframe]
    morphs_unknown: list  # VMD morph names that move no parameter
    bones_used: list  # the VMD bones read


def motion_keyframes(motion, schema_name="tha3", fps=24.0, start_frame=1, source="the motion"):
    """MotionKeys of a vmd.Motion on a schema's parameters at the scene's `fps`."""
    schema = get_schema(schema_name)
    scale = fps / vmd.FPS
    if start_frame + motion.last_frame * scale > MAX_FRAME:  # (and a day of samples to make)
        raise MotionError(f"{source}: it runs to its frame {motion.last_frame:,} ({motion.last_frame / vmd.FPS:,.0f} s), "
                          f"past Blender's last frame ({MAX_FRAME:,}) at {fps:g} frames a second")
    keyframes, unknown = {}, []
    by_parameter = {}
    for name, keys in motion.morphs.items():
        parameters = parameters_for_morph(name, schema)
        if not parameters:
            unknown.append(name)
            continue
        for parameter in parameters:
            by_parameter.setdefault(parameter, []).append(keys)
    for parameter, curves in by_parameter.items():
        frames = np.unique(np.concatenate([[key.frame for key in keys] for keys in curves]).astype(np.float64))
        total = sum(np.interp(frames, [key.frame for key in keys], [key.weight for key in keys]) for keys in curves)
        limits = schema.parameter(parameter)
        frames, values = held_in_range(frames, total, limits.minimum, limits.maximum)
        keyframes[parameter] = linear_keys(start_frame + frames * scale, values)

    bones = {normalize_name(name): keys for name, keys in motion.bones.items()}
    neck, head, body = (bones.get(normalize_name(name)) for name in (NECK, HEAD, UPPER_BODY))
    bones_used = [name for name, keys in ((NECK, neck), (HEAD, head), (UPPER_BODY, body)) if keys]
    turned = [keys for keys in (neck, head, body) if keys]
    if turned:
        first = min(keys[0].frame for keys in turned)
        last = max(keys[-1].frame for keys in turned)
        frames = np.arange(math.floor(first * scale), math.floor(last * scale + 1e-9) + 1)
        times = frames / scale
        values = {}
        if (neck or head) and {"head_x", "head_y", "neck_z"} <= set(schema.names):
            turns = [tha_rotation(rotation_at(keys, times)) for keys in (neck, head) if keys]
            chain = turns[0] if len(turns) == 1 else np.einsum("tij,tjk->tik", *turns)
            roll, turn, nod = zyx_angles(chain)
            values.update(neck_z=-roll / HEAD_DEGREES, head_y=-turn / HEAD_DEGREES, head_x=-nod / HEAD_DEGREES)
        if body and {"body_y", "body_z"} <= set(schema.names):
            turn, roll = yz_angles(tha_rotation(rotation_at(body, times)))
            values.update(body_y=-turn / BODY_DEGREES, body_z=-roll / BODY_DEGREES)
        for parameter, series in values.items():
            limits = schema.parameter(parameter)
            keyframes[parameter] = linear_keys(start_frame + frames, np.clip(series, limits.minimum, limits.maximum))
    return MotionKeys(keyframes, sorted(unknown), bones_used)


def held_in_range(frames, values, low, high):
    """A piecewise-linear curve through (frames, values) held within [low, high], as (frames,
    values) of a piecewise-linear curve: a key added where a segment crosses a bound, so the
    part inside keeps its slope."""
    frames, values = list(map(float, frames)), list(map(float, values))
    out_frames, out_values = frames[:1], values[:1]
    for (f0, v0), (f1, v1) in zip(zip(frames, values), zip(frames[1:], values[1:])):
        crossings = sorted((f0 + (bound - v0) / (v1 - v0) * (f1 - f0)) for bound in (low, high)
                           if (v0 - bound) * (v1 - bound) < 0)
        for frame in crossings:
            out_frames.append(frame)
            out_values.append(v0 + (frame - f0) / (f1 - f0) * (v1 - v0))
        out_frames.append(f1)
        out_values.append(v1)
    return np.array(out_frames), np.clip(out_values, low, high)


def eased(curve, t):
    """A VMD segment's Bezier ease (x1, y1, x2, y2 in 0..127; one curve, or one per value of `t`
    as a (4, ...) array) at the time fractions `t`: the curve from (0, 0) to (1, 1) solved for
    x = t (bisection: x is monotonic in its parameter)."""
    x1, y1, x2, y2 = (np.asarray(value, dtype=np.float64) / 127.0 for value in curve)
    t = np.asarray(t, dtype=np.float64)
    low, high = np.zeros_like(t), np.ones_like(t)
    for _ in range(40):
        s = (low + high) / 2
        x = 3 * (1 - s) ** 2 * s * x1 + 3 * (1 - s) * s * s * x2 + s ** 3
        low, high = np.where(x < t, s, low), np.where(x < t, high, s)
    s = (low + high) / 2
    return 3 * (1 - s) ** 2 * s * y1 + 3 * (1 - s) * s * s * y2 + s ** 3


def rotation_at(keys, times):
    """(T, 4) unit quaternions (x, y, z, w) of a bone's keys at VMD `times`: held before the first
    key and after the last, slerped between with the ease stored on the later key."""
    frames = np.array([key.frame for key in keys], dtype=np.float64)
    rotations = np.array([key.rotation for key in keys], dtype=np.float64)
    curves = np.array([key.curve for key in keys], dtype=np.float64)
    times = np.clip(np.asarray(times, dtype=np.float64), frames[0], frames[-1])
    if len(keys) == 1:
        return np.repeat(rotations[:1], len(times), axis=0)
    later = np.clip(np.searchsorted(frames, times, side="right"), 1, len(keys) - 1)
    fraction = np.clip((times - frames[later - 1]) / (frames[later] - frames[later - 1]), 0.0, 1.0)
    return slerp(rotations[later - 1], rotations[later], eased(curves[later].T, fraction))


def slerp(a, b, fraction):
    """Rows of unit quaternions a to b (the shorter way round) at `fraction` of the way."""
    dot = np.sum(a * b, axis=1)
    b = np.where(dot[:, None] < 0, -b, b)
    dot = np.abs(dot)
    angle = np.arccos(np.clip(dot, -1.0, 1.0))
    near = dot > 0.9995  # (nearly the same turn: a straight mix, normalised)
    sine = np.where(near, 1.0, np.sin(angle))
    wa = np.where(near, 1 - fraction, np.sin((1 - fraction) * angle) / sine)
    wb = np.where(near, fraction, np.sin(fraction * angle) / sine)
    mixed = wa[:, None] * a + wb[:, None] * b
    return mixed / np.linalg.norm(mixed, axis=1, keepdims=True)


def tha_rotation(quaternions):
    """(T, 3, 3) rotation matrices in THA's frame (x the character's left, y up, z its front) of
    MMD rotation quaternions (x, y, z, w): MMD's axes to Blender's as the importer turns them
    (import_plan.to_blender_quaternion), then Blender's (left, back, up) to THA's."""
    w, x, y, z = np.array([to_blender_quaternion(quaternion) for quaternion in quaternions]).reshape(-1, 4).T
    x, y, z = x, z, -y  # Blender (x, y, z) is THA (x, -z, y): a proper turn, so the axis turns along
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=-1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=-1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=-1),
    ], axis=1)


def zyx_angles(matrices):
    """Degrees (about z, about y, about x) of M = Rz Ry Rx: the neck's roll, then the head's
    turn and nod in the rolled frame, as the dataset renderer composes them."""
    roll = np.degrees(np.arctan2(matrices[:, 1, 0], matrices[:, 0, 0]))
    turn = np.degrees(np.arcsin(np.clip(-matrices[:, 2, 0], -1.0, 1.0)))
    nod = np.degrees(np.arctan2(matrices[:, 2, 1], matrices[:, 2, 2]))
    return roll, turn, nod


def yz_angles(matrices):
    """Degrees (about y, about z) of M = Ry Rz: the upper body's turn, then its roll."""
    turn = np.degrees(np.arctan2(matrices[:, 0, 2], matrices[:, 2, 2]))
    roll = np.degrees(np.arctan2(matrices[:, 1, 0], matrices[:, 1, 1]))
    return turn, roll
