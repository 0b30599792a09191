"""Cue track -> THA mouth curves: mapped values at cue centres, each transition style at the boundaries."""

import json

import numpy as np
import pytest

from tha_studio.lipsync import formats
from tha_studio.lipsync.cues import Cue, CueTrack
from tha_studio.lipsync.curves import CurveSettings, MappingError, MouthMapping, evaluate, mouth_curves
from tha_studio.pose.schema import get_schema

TRACK = CueTrack(
    (Cue(0.0, 0.5, "X"), Cue(0.5, 1.0, "D"), Cue(1.0, 1.5, "F"), Cue(1.5, 1.6, "B"), Cue(1.6, 2.0, "X")),
    duration=2.0,
)
MAPPING = MouthMapping.default("tha3")


def frame(seconds, settings):
    return settings.start_frame + seconds * settings.frame_rate


def test_default_mapping_uses_the_schemas_mouth_parameters():
    mouth = set(get_schema("tha3").group_names("mouth"))
    assert set(MAPPING.parameters) <= mouth
    assert MAPPING.values["D"] == {"mouth_aaa": 1.0}
    assert MAPPING.values["F"] == {"mouth_uuu": 1.0}
    assert MAPPING.values["E"]["mouth_ooo"] > 0 and MAPPING.values["C"]["mouth_eee"] > 0
    assert 0 < MAPPING.values["G"]["mouth_iii"] < MAPPING.values["B"]["mouth_iii"]  # lips nearly closed
    assert MAPPING.values["H"]["mouth_aaa"] == pytest.approx(0.5)
    assert not any(MAPPING.vector("A")) and not any(MAPPING.vector("X"))
    assert MouthMapping.default("tha1").parameters == ("mouth",)


@pytest.mark.parametrize("style", ["linear", "eased", "stepped"])
@pytest.mark.parametrize("rate, start", [(24, 1), (30, 0), (60, 101)])
def test_curves_hit_the_mapped_values_at_cue_centres(style, rate, start):
    settings = CurveSettings(style, 0.1, rate, start)
    curves = mouth_curves(TRACK, settings, MAPPING)
    for cue in TRACK:
        values = curves.values_at(frame(cue.centre, settings))
        expected = dict(zip(MAPPING.parameters, MAPPING.vector(cue.shape)))
        assert values == pytest.approx(expected, abs=1e-9), (style, cue)


def test_linear_passes_the_half_way_point_at_the_boundary_and_moves_in_straight_lines():
    settings = CurveSettings("linear", 0.2, 100, 0)
    curves = mouth_curves(TRACK, settings, MAPPING)
    boundary = frame(1.0, settings)  # D -> F
    at = curves.values_at(boundary)
    assert at["mouth_aaa"] == pytest.approx(0.5) and at["mouth_uuu"] == pytest.approx(0.5)
    quarter = curves.values_at(boundary - 5)  # a quarter of the 20-frame move
    assert quarter["mouth_aaa"] == pytest.approx(0.75) and quarter["mouth_uuu"] == pytest.approx(0.25)
    assert curves.values_at(boundary - 10)["mouth_aaa"] == pytest.approx(1.0)  # the move starts at blend/2
    assert {k.interpolation for keys in curves.keyframes.values() for k in keys} == {"LINEAR"}
    # The report's rest cases: from rest the shape rises 0 -> 1, to rest it falls 1 -> 0.
    assert curves.values_at(frame(0.5, settings))["mouth_aaa"] == pytest.approx(0.5)


def test_eased_starts_and_ends_gently_through_the_same_half_way_point():
    settings = CurveSettings("eased", 0.2, 100, 0)
    curves = mouth_curves(TRACK, settings, MAPPING)
    boundary = frame(1.0, settings)
    assert curves.values_at(boundary)["mouth_aaa"] == pytest.approx(0.5)
    quarter = curves.values_at(boundary - 5)["mouth_aaa"]
    assert quarter == pytest.approx(1 - 0.15625)  # smoothstep(0.25) = 0.15625: slower than linear
    near_start = 1 - curves.values_at(boundary - 9)["mouth_aaa"]
    assert 0 < near_start < 0.05 * 0.5  # flat at the hold: far less than a linear move's 5%
    keys = curves.keyframes["mouth_aaa"]
    assert all(k.interpolation == "BEZIER" for k in keys)
    for key, following in zip(keys, keys[1:]):  # flat handles a third of the way along
        assert key.handle_right == pytest.approx((key.frame + (following.frame - key.frame) / 3, key.value))
        assert following.handle_left == pytest.approx((following.frame - (following.frame - key.frame) / 3, following.value))


def test_stepped_switches_at_the_cue_boundaries():
    settings = CurveSettings("stepped", 0.2, 100, 0)
    curves = mouth_curves(TRACK, settings, MAPPING)
    boundary = frame(1.0, settings)
    assert curves.values_at(boundary - 0.01) == pytest.approx({**dict.fromkeys(MAPPING.parameters, 0.0), "mouth_aaa": 1.0})
    assert curves.values_at(boundary) == pytest.approx({**dict.fromkeys(MAPPING.parameters, 0.0), "mouth_uuu": 1.0})
    assert {k.interpolation for keys in curves.keyframes.values() for k in keys} == {"CONSTANT"}


def test_short_cues_are_keyed_at_their_centre_and_blend_zero_steps():
    settings = CurveSettings("linear", 0.3, 100, 0)
    curves = mouth_curves(TRACK, settings, MAPPING)
    b_keys = [k for k in curves.keyframes["mouth_iii"] if k.value > 0]
    assert [k.frame for k in b_keys] == pytest.approx([155.0])  # the 0.1 s B cue: its centre only
    stepped = mouth_curves(TRACK, CurveSettings("eased", 0.0, 100, 0), MAPPING)
    assert stepped.values_at(99.99)["mouth_aaa"] == 1.0 and stepped.values_at(100)["mouth_aaa"] == 0.0


def test_per_frame_values_and_pose_vectors():
    settings = CurveSettings("eased", 0.06, 24, 1)
    curves = mouth_curves(TRACK, settings, MAPPING)
    frames, values = curves.per_frame()
    assert frames[0] == 1 and frames[-1] == 49  # 2 s at 24 fps from frame 1
    assert values.shape == (49, len(MAPPING.parameters))
    assert values.min() >= 0 and values.max() <= 1
    for index, name in enumerate(curves.parameters):
        assert [evaluate(curves.keyframes[name], f) for f in frames] == pytest.approx(values[:, index])
    frames, poses = curves.pose_vectors()
    schema = get_schema("tha3")
    assert poses.shape == (49, 45)
    assert np.all(poses[:, [i for i in range(45) if i not in schema.group_indices("mouth")]] == 0)
    assert poses[frames.tolist().index(19), schema.index("mouth_aaa")] == pytest.approx(1.0)  # 0.75 s: D


def test_mapping_is_editable_and_checked():
    mapping = MouthMapping.from_json('{"D": {"mouth_aaa": 0.7, "mouth_delta": 0.2}}', "tha3")
    assert mapping.values["D"] == {"mouth_aaa": 0.7, "mouth_delta": 0.2}
    assert mapping.values["F"] == MAPPING.values["F"]  # the rest stays default
    assert "mouth_delta" in mapping.parameters
    assert MouthMapping.from_json(mapping.to_json(), "tha3") == mapping
    with pytest.raises(MappingError, match="'head_x' is not a tha3 mouth parameter"):
        MouthMapping.from_json('{"D": {"head_x": 0.5}}')
    with pytest.raises(MappingError, match="outside"):
        MouthMapping.from_json('{"D": {"mouth_aaa": 1.5}}')
    with pytest.raises(MappingError, match="'Q' is not a mouth shape"):
        MouthMapping.from_json('{"Q": {}}')
    with pytest.raises(MappingError, match="m.json, line 1: not valid JSON"):
        MouthMapping.from_json('{"D": ', source="m.json")
    with pytest.raises(MappingError, match="no entry for shape"):
        MouthMapping("tha3", {"A": {}})


def test_real_track_curves_look_like_speech(shared, tmp_path):
    track = formats.read_cues(shared / "assets" / "lipsync" / "rhubarb" / "en_male_watchingtv.ogg" / "ps_json.json")
    curves = mouth_curves(track, CurveSettings("eased", 0.06, 30, 1))
    frames, values = curves.per_frame()
    openness = values.sum(axis=1)
    # Closed at both ends, open in between, and moving: many openings and closings a second.
    assert openness[0] == 0 and openness[-1] == 0
    assert (openness > 0.3).mean() > 0.5
    changes = np.count_nonzero(np.abs(np.diff(values, axis=0)).sum(axis=1) > 0.05)
    assert changes / track.duration > 5
    from tha_studio.lipsync.plot import draw_curves

    picture = draw_curves(curves, track, tmp_path / "curves.png", title="watchingtv")
    from PIL import Image

    with Image.open(picture) as image:
        assert image.size == (1600, 600)
        assert len(image.getcolors(maxcolors=100000)) > 10  # curves and cue bands drawn, not a blank page
