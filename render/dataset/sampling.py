"""Pose sampling for dataset examples, after the THA1 write-up §5.2, for every pose schema.

- Morph parameters (eyebrow, eye, mouth, iris size; breathing) are uniform in their range.
- Rotations (head_x, head_y, neck_z; THA3's body_y, body_z) have a density that grows
  linearly from the centre of the range to its ends, p(x) ∝ |x| on [-1, 1], to make hard
  examples (far from the rest pose) common.
- Iris rotation is uniform in [-1, 1].
- THA2/THA3 have several morphs acting on one feature, and the THA2 write-up asks that the
  weights on one feature sum to at most 1. So each feature slot (left eyebrow, right
  eyebrow, left eye, right eye, mouth) gets one of its parameters, chosen uniformly among
  those the model can show, with a uniform weight; the others in the slot stay 0. THA1
  has one morph per feature, so each is simply uniform.

A pose is a pure function of (seed, model id, example index): any worker, shard or rerun
draws the same pose for the same example. Only `Generator.random()` is used, whose stream
numpy keeps stable.
"""

import hashlib

import numpy as np

ROTATION_GROUPS = ("head", "body")
# Groups whose pose parameters are rendered in the "posed" image but not the "expression" one.
MOTION_GROUPS = ("head", "body", "breathing")
SLOT_GROUPS = ("eyebrow", "eye", "mouth")


def example_rng(seed, model_id, index):
    """A generator seeded from the run seed, the model's id and the example's index."""
    # surrogateescape: a file name that is not UTF-8 (cp932 from a Japanese zip) seeds from its
    # real bytes instead of failing every example; UTF-8 ids hash as before
    digest = hashlib.sha256(str(model_id).encode("utf-8", "surrogateescape")).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *words, int(index)])))


def linear_extreme(uniform):
    """Map uniforms in [0, 1) to [-1, 1] with density |x| (most mass near ±1).

    The sign comes from which half the uniform falls in; within a half, |x| = sqrt(w) has
    P(|x| <= a) = a², whose density 2a grows linearly from 0 to the end.
    """
    uniform = np.asarray(uniform, dtype=np.float64)
    centred = 2.0 * uniform - 1.0
    return np.sign(centred) * np.sqrt(np.abs(centred))


def feature_slots(schema):
    """Feature slots of a schema: lists of parameter names of which at most one is non-zero.

    Empty for schemas with one parameter per feature (THA1).
    """
    slots = []
    for group in SLOT_GROUPS:
        names = schema.group_names(group)
        if len(names) <= 2:
            continue  # THA1: one parameter per eye, one mouth parameter
        left = [n for n in names if n.endswith("_left")]
        right = [n for n in names if n.endswith("_right")]
        middle = [n for n in names if n not in left and n not in right]
        if group == "mouth":
            slots.append(list(names))  # the mouth is one feature: its corners belong to it
        else:
            slots += [s for s in (left, right, middle) if s]
    return slots


def sample_pose(schema, seed, model_id, index, available=None):
    """One pose vector (float32) for example `index` of `model_id`.

    `available` is the set of parameter names this model can show (its annotated roles, plus
    the bone-driven parameters); the others stay 0. None means all of them.
    """
    rng = example_rng(seed, model_id, index)
    # Draw a fixed number of uniforms in a fixed order, so one parameter's value does not
    # depend on which others the model has.
    uniforms = rng.random(2 * schema.size)
    values, choosers = uniforms[: schema.size], uniforms[schema.size :]
    can_show = set(schema.names) if available is None else set(available)
    pose = schema.neutral()
    slotted = set()
    for slot_number, slot in enumerate(feature_slots(schema)):
        slotted.update(slot)
        candidates = [name for name in slot if name in can_show]
        if not candidates:
            continue
        chosen = candidates[min(int(choosers[slot_number] * len(candidates)), len(candidates) - 1)]
        i = schema.index(chosen)
        pose[i] = _scale(schema.parameters[i], values[i])
    for i, parameter in enumerate(schema.parameters):
        if parameter.name in slotted or parameter.name not in can_show:
            continue
        if parameter.group in ROTATION_GROUPS:
            pose[i] = linear_extreme(values[i])
        else:
            pose[i] = _scale(parameter, values[i])
    return pose


def _scale(parameter, uniform):
    return parameter.minimum + (parameter.maximum - parameter.minimum) * uniform


def sample_poses(schema, seed, model_id, count, available=None, start=0):
    """Poses for examples start .. start+count-1 of one model, shape (count, schema.size)."""
    return np.stack([sample_pose(schema, seed, model_id, i, available) for i in range(start, start + count)])


def expression_part(schema, pose):
    """The pose with its head, body and breathing parameters at rest: what the "expression" image shows."""
    pose = schema.check(pose).copy()
    for group in MOTION_GROUPS:
        for i in schema.group_indices(group):
            pose[..., i] = 0.0
    return pose
