"""Keyframe helpers: Bezier evaluation as Blender's F-curves give it, agreeing with lip sync's curves."""

import numpy as np
import pytest

from tha_studio.animation.core.keys import (evaluate_keys, flat_bezier_keys, keyed_pose, linear_keys,
                                            tangent_bezier_keys)
from tha_studio.lipsync.cues import Cue, CueTrack
from tha_studio.lipsync.curves import CurveSettings, Keyframe, evaluate, mouth_curves


def test_flat_handles_evaluate_like_the_lip_sync_curves():
    """The same Keyframe type and the same reading of flat handles as lipsync/curves.py."""
    track = CueTrack((Cue(0.0, 0.4, "X"), Cue(0.4, 0.9, "D"), Cue(0.9, 1.5, "F"), Cue(1.5, 2.0, "X")), duration=2.0)
    curves = mouth_curves(track, CurveSettings("eased", 0.1, 24, 1))
    frames = np.linspace(0, 52, 521)
    for name, keys in curves.keyframes.items():
        ours = evaluate_keys(keys, frames)
        theirs = np.array([evaluate(keys, f) for f in frames])
        np.testing.assert_allclose(ours, theirs, atol=1e-9, err_msg=name)

    points = [(1, 0.0), (5, 1.0), (6, 1.0), (11, 0.0)]
    keys = flat_bezier_keys(points)
    np.testing.assert_allclose(evaluate_keys(keys, frames), [evaluate(keys, f) for f in frames], atol=1e-9)


def test_tangent_handles_follow_a_smooth_curve_between_sparse_keys():
    frames = np.arange(0, 241, 4.0)
    period = 96.0

    def curve(f):
        return 0.3 * np.sin(2 * np.pi * f / period)

    keys = tangent_bezier_keys(frames, curve(frames), 0.3 * 2 * np.pi / period * np.cos(2 * np.pi * frames / period))
    dense = np.linspace(0, 240, 2401)
    assert np.max(np.abs(evaluate_keys(keys, dense) - curve(dense))) < 1e-4


def test_evaluation_holds_outside_the_keys_and_steps_on_constant_keys():
    keys = [Keyframe(10.0, 0.5, "CONSTANT"), Keyframe(20.0, 1.0, "LINEAR"), Keyframe(30.0, 0.0, "LINEAR")]
    assert evaluate_keys(keys, 0.0) == 0.5
    assert evaluate_keys(keys, 15.0) == 0.5
    assert evaluate_keys(keys, 25.0) == pytest.approx(0.5)
    assert evaluate_keys(keys, 99.0) == 0.0
    with pytest.raises(ValueError, match="increasing frame order"):
        evaluate_keys([Keyframe(3.0, 0.0, "LINEAR"), Keyframe(3.0, 1.0, "LINEAR")], 3.0)


def test_linear_keys_keep_only_where_the_value_moves():
    values = [0, 0, 0, 0.5, 1, 1, 1, 1, 0.2]
    keys = linear_keys(np.arange(len(values)), values)
    assert [(k.frame, k.value) for k in keys] == [(0, 0), (2, 0), (3, 0.5), (4, 1), (7, 1), (8, 0.2)]
    np.testing.assert_allclose(evaluate_keys(keys, np.arange(len(values))), values)


def test_a_pose_is_keyed_once_per_parameter():
    keys = keyed_pose({"mouth_aaa": 0.4, "eye_wink_left": 1.0}, 12)
    assert set(keys) == {"mouth_aaa", "eye_wink_left"}
    assert [(k.frame, k.value, k.interpolation) for k in keys["mouth_aaa"]] == [(12.0, 0.4, "BEZIER")]
