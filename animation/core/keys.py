"""Keyframe lists shared by the generators, presets and face capture, and their evaluation.

Everything here produces lipsync/curves.py's `Keyframe` (frame, value, Blender interpolation
name, Bezier handles), so the Blender side writes lip sync, generated motion and captured
faces the same way: one F-curve per parameter, each key's `interpolation`, and for BEZIER keys
the two handles as given (handle type FREE, so Blender keeps them where they are).

A keyframe track is {parameter name: [Keyframe, ...]}, keys in frame order.
"""

import numpy as np

from ...lipsync.curves import Keyframe


def flat_bezier_keys(points):
    """BEZIER keys through (frame, value) points with flat handles a third of the way to each
    neighbour: every move starts and ends at rest and a run of equal values stays flat."""
    keys = []
    for index, (frame, value) in enumerate(points):
        previous = points[index - 1][0] if index else frame - 1.0
        following = points[index + 1][0] if index + 1 < len(points) else frame + 1.0
        keys.append(Keyframe(float(frame), float(value), "BEZIER",
                             (frame - (frame - previous) / 3.0, float(value)),
                             (frame + (following - frame) / 3.0, float(value))))
    return keys


def tangent_bezier_keys(frames, values, slopes):
    """BEZIER keys whose handles lie on the curve's tangent (slope in value per frame), a third
    of the way to each neighbour: the cubic between two keys is then the Hermite spline of the
    sampled curve, so a smooth function keyed every few frames stays smooth and close."""
    frames = np.asarray(frames, dtype=np.float64)
    keys = []
    for index, (frame, value, slope) in enumerate(zip(frames, values, slopes)):
        before = (frame - frames[index - 1]) / 3.0 if index else 1.0 / 3.0
        after = (frames[index + 1] - frame) / 3.0 if index + 1 < len(frames) else 1.0 / 3.0
        keys.append(Keyframe(float(frame), float(value), "BEZIER",
                             (float(frame - before), float(value - slope * before)),
                             (float(frame + after), float(value + slope * after))))
    return keys


def linear_keys(frames, values, tolerance=1e-6):
    """LINEAR keys through sampled values, leaving out the middle keys of runs that stay within
    `tolerance` of one value (a dense capture of a still face keys only where it moves)."""
    frames = np.asarray(frames, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    keep = np.ones(len(values), dtype=bool)
    if len(values) > 2:
        flat_before = np.abs(values[1:-1] - values[:-2]) <= tolerance
        flat_after = np.abs(values[2:] - values[1:-1]) <= tolerance
        keep[1:-1] = ~(flat_before & flat_after)
    return [Keyframe(float(f), float(v), "LINEAR") for f, v in zip(frames[keep], values[keep])]


def evaluate_keys(keys, frames):
    """The values of a keyed curve at frames (a number or an array), as Blender's F-curve gives
    them: constant outside the keys, CONSTANT/LINEAR/BEZIER between them. BEZIER keys without
    handles get flat ones at thirds (lipsync/curves.py's convention)."""
    scalar = np.ndim(frames) == 0
    frames = np.atleast_1d(np.asarray(frames, dtype=np.float64))
    if not keys:
        return 0.0 if scalar else np.zeros_like(frames)
    key_frames = np.array([k.frame for k in keys])
    key_values = np.array([k.value for k in keys])
    if np.any(np.diff(key_frames) <= 0):
        raise ValueError("keyframes must be in increasing frame order, one per frame")
    result = np.interp(frames, key_frames, key_values)  # LINEAR everywhere, constant outside
    segment = np.clip(np.searchsorted(key_frames, frames, side="right") - 1, 0, len(keys) - 1)
    inside = (frames > key_frames[0]) & (frames < key_frames[-1])
    for index in np.unique(segment[inside]):
        key, following = keys[index], keys[index + 1]
        where = inside & (segment == index)
        if key.interpolation == "CONSTANT":
            result[where] = key.value
        elif key.interpolation == "BEZIER":
            result[where] = _bezier(key, following, frames[where])
    return float(result[0]) if scalar else result


def _bezier(key, following, frames):
    span = following.frame - key.frame
    p0 = np.array([key.frame, key.value])
    p1 = np.array(key.handle_right if key.handle_right is not None else (key.frame + span / 3.0, key.value))
    p2 = np.array(following.handle_left if following.handle_left is not None
                  else (following.frame - span / 3.0, following.value))
    p3 = np.array([following.frame, following.value])
    # Blender keeps a segment's handles inside it, so x(u) rises monotonically: bisection finds u.
    low, high = np.zeros_like(frames), np.ones_like(frames)
    for _ in range(48):
        middle = (low + high) / 2.0
        below = _cubic(p0[0], p1[0], p2[0], p3[0], middle) < frames
        low, high = np.where(below, middle, low), np.where(below, high, middle)
    return _cubic(p0[1], p1[1], p2[1], p3[1], (low + high) / 2.0)


def _cubic(a, b, c, d, u):
    v = 1.0 - u
    return v * v * v * a + 3.0 * v * v * u * b + 3.0 * v * u * u * c + u * u * u * d


def keyed_pose(values, frame, interpolation="BEZIER"):
    """One key per parameter at a frame: {name: [Keyframe]} for keying a pose (a preset) in one go."""
    return {name: flat_bezier_keys([(frame, value)]) if interpolation == "BEZIER"
            else [Keyframe(float(frame), float(value), interpolation)]
            for name, value in values.items()}
