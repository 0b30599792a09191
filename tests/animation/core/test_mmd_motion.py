"""An MMD motion's morphs and head turns as THA keyframes (animation/core/mmd_motion.py)."""

import math

import numpy as np
import pytest

from tha_studio.animation.core import mmd_motion
from tha_studio.animation.core.keys import evaluate_keys
from tha_studio.pose.schema import get_schema
from tha_studio.render.formats.mmd import vmd


@pytest.mark.parametrize("name, parameters", [
    ("あ", ["mouth_aaa"]), ("お", ["mouth_ooo"]), ("▲", ["mouth_delta"]),
    ("まばたき", ["eye_wink_left", "eye_wink_right"]),
    ("ウィンク", ["eye_happy_wink_left"]), ("ｳｨﾝｸ右", ["eye_happy_wink_right"]),  # (half-width too)
    ("ウィンク２", ["eye_wink_left"]), ("ウィンク２右", ["eye_wink_right"]),
    ("笑い", ["eye_happy_wink_left", "eye_happy_wink_right"]),
    ("困る", ["eyebrow_troubled_left", "eyebrow_troubled_right"]), ("左眉上", ["eyebrow_raised_left"]),
    ("ぺろっ", []), ("照れ", []),  # a tongue out and a blush: nothing THA shows
])
def test_morph_names_move_the_parameters_they_mean(name, parameters):
    assert mmd_motion.parameters_for_morph(name, get_schema("tha3")) == parameters


def test_tha1_sprites_take_the_eyes_and_mouth():
    tha1 = get_schema("tha1")
    assert mmd_motion.parameters_for_morph("まばたき", tha1) == ["left_eye", "right_eye"]
    assert mmd_motion.parameters_for_morph("あ", tha1) == ["mouth"]
    assert mmd_motion.parameters_for_morph("困る", tha1) == []


def test_morph_keys_land_on_the_scenes_frames_and_add_up_as_mmd_adds_them():
    motion = vmd.Motion(morphs={
        "あ": [vmd.MorphKey(0, 0.0), vmd.MorphKey(15, 1.0), vmd.MorphKey(30, 0.0)],
        "まばたき": [vmd.MorphKey(0, 0.0), vmd.MorphKey(6, 0.75)],
        "ウィンク２": [vmd.MorphKey(0, 0.5)],  # with まばたき, past 1 on the left eye: held at 1
        "ぺろっ": [vmd.MorphKey(0, 1.0)],
    })
    read = mmd_motion.motion_keyframes(motion, "tha3", fps=24.0, start_frame=101)
    assert read.morphs_unknown == ["ぺろっ"] and read.bones_used == []
    mouth = read.keyframes["mouth_aaa"]
    assert [(k.frame, k.value, k.interpolation) for k in mouth] == [(101, 0, "LINEAR"), (113, 1, "LINEAR"), (125, 0, "LINEAR")]
    # 0.5 + まばたき's rise: 1 at its VMD frame 4 (scene 104.2), and held there.
    assert evaluate_keys(read.keyframes["eye_wink_left"], [101, 103, 104.2, 105.8, 110]) == pytest.approx(
        [0.5, 0.8125, 1.0, 1.0, 1.0])
    assert evaluate_keys(read.keyframes["eye_wink_right"], [101, 105.8]) == pytest.approx([0.0, 0.75])


def test_mmds_straight_ease_is_straight_and_an_ease_in_starts_slow():
    t = np.linspace(0, 1, 11)
    assert mmd_motion.eased(vmd.LINEAR, t) == pytest.approx(t, abs=1e-9)
    slow = mmd_motion.eased((127, 0, 127, 127), t)
    assert slow[0] == pytest.approx(0, abs=1e-9) and slow[-1] == pytest.approx(1) and (slow[1:-1] < t[1:-1]).all()


def mmd_quaternion(tha_matrix):
    """The MMD quaternion (x, y, z, w) of a rotation given in THA's frame: the way back through
    Blender's axes (import_plan.to_blender_quaternion inverted)."""
    m = tha_matrix
    w = math.sqrt(max(0.0, 1 + m[0][0] + m[1][1] + m[2][2])) / 2
    x, y, z = (m[2][1] - m[1][2]) / (4 * w), (m[0][2] - m[2][0]) / (4 * w), (m[1][0] - m[0][1]) / (4 * w)
    bx, by, bz = x, -z, y  # THA's axis in Blender's: (x, -z, y)
    return (-bx, -bz, -by, w)  # Blender (w, -x, -z, -y) from MMD (x, y, z, w)


def turn(axis, degrees):
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return {"x": np.array([[1, 0, 0], [0, c, -s], [0, s, c]]), "y": np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]),
            "z": np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])}[axis]


def test_neck_and_head_turns_come_apart_into_roll_turn_and_nod_as_the_renderer_composes_them():
    # posing.py: the neck rolls by -15° neck_z, the head turns by -15° head_y and nods by -15° head_x.
    head_x, head_y, neck_z, body_y, body_z = 0.4, -0.6, 0.3, 0.5, -0.2
    neck = turn("z", -15 * neck_z) @ turn("y", -10 * head_y)  # the neck takes part of the turn
    head = turn("y", -5 * head_y) @ turn("x", -15 * head_x)
    neck_then_head = neck @ head
    assert np.allclose(neck_then_head, turn("z", -15 * neck_z) @ turn("y", -15 * head_y) @ turn("x", -15 * head_x))
    body = turn("y", -15 * body_y) @ turn("z", -15 * body_z)
    motion = vmd.Motion(bones={"首": [vmd.BoneKey(0, rotation=mmd_quaternion(neck))],
                               "頭": [vmd.BoneKey(0, rotation=mmd_quaternion(head))],
                               "上半身": [vmd.BoneKey(0, rotation=mmd_quaternion(body))]})
    read = mmd_motion.motion_keyframes(motion, "tha3", fps=30.0, start_frame=1)
    assert read.bones_used == ["首", "頭", "上半身"]
    got = {name: read.keyframes[name][0].value for name in ("head_x", "head_y", "neck_z", "body_y", "body_z")}
    assert got == pytest.approx({"head_x": head_x, "head_y": head_y, "neck_z": neck_z, "body_y": body_y,
                                 "body_z": body_z}, abs=1e-6)


def test_a_head_turn_is_slerped_with_its_ease_sampled_on_the_scenes_frames_and_held_in_range():
    ahead = vmd.BoneKey(0)
    aside = vmd.BoneKey(30, rotation=mmd_quaternion(turn("y", -30.0)), curve=vmd.LINEAR)  # head_y 2: past THA's 1
    read = mmd_motion.motion_keyframes(vmd.Motion(bones={"頭": [ahead, aside]}), "tha3", fps=24.0, start_frame=1)
    keys = read.keyframes["head_y"]
    values = evaluate_keys(keys, np.arange(1, 26))
    assert values[0] == pytest.approx(0, abs=1e-9) and values[12] == pytest.approx(1.0) and values[-1] == pytest.approx(1.0)
    assert values[6] == pytest.approx(0.5 * 2 * 6 / 24 * 2, abs=1e-6)  # a quarter of the way: 7.5°, half a unit
    assert "head_x" in read.keyframes and all(abs(k.value) < 1e-9 for k in read.keyframes["head_x"])


def test_a_motion_past_blenders_last_frame_is_refused_before_any_work():
    motion = vmd.Motion(bones={"頭": [vmd.BoneKey(0), vmd.BoneKey(9_000_000)]})
    with pytest.raises(mmd_motion.MotionError, match=r"far.vmd: it runs to its frame 9,000,000 \(300,000 s\), past "
                                                     r"Blender's last frame \(1,048,574\) at 24 frames a second"):
        mmd_motion.motion_keyframes(motion, "tha3", fps=24.0, source="far.vmd")


def test_an_hours_head_motion_is_keyed_to_its_last_key():
    keys = [vmd.BoneKey(frame, rotation=(0.0, math.sin(0.1 * (frame % 7)), 0.0, math.cos(0.1 * (frame % 7))),
                        curve=(64, 0, 64, 127)) for frame in range(0, 108_000, 15)]
    read = mmd_motion.motion_keyframes(vmd.Motion(bones={"頭": keys}), "tha3", fps=24.0)
    assert read.keyframes["head_y"][-1].frame == 1 + 86_388  # (its last key, VMD 107,985, at 24 a second)
