"""Expression presets: valid for every schema they claim, applied whole, saved and read as JSON."""

import json

import pytest

from tha_studio.animation.core.presets import (
    EXPRESSION_GROUPS, FAMILIES, Preset, PresetError, builtin_presets, expression_parameters, presets_from_json,
    presets_to_json)
from tha_studio.pose.schema import SCHEMAS, get_schema

NAMED_IN_THE_ISSUE = {"neutral", "happy", "sad", "angry", "surprised", "relaxed"}


@pytest.mark.parametrize("schema_name", sorted(SCHEMAS))
def test_builtin_presets_are_valid_for_every_schema_they_claim(schema_name):
    schema = get_schema(schema_name)
    presets = builtin_presets(schema)
    expression = set(expression_parameters(schema))
    for name, preset in presets.items():
        assert preset.schema_name == schema_name
        assert set(preset.values) <= expression, name
        for parameter, value in preset.values.items():
            assert schema.parameter(parameter).minimum <= value <= schema.parameter(parameter).maximum
        # Applied: every expression parameter set, inside its range, as a valid pose vector.
        applied = preset.values_for(schema)
        assert set(applied) == expression
        schema.vector(applied)
    if schema_name != "tha1":
        assert NAMED_IN_THE_ISSUE <= set(presets)
        assert set(presets) == set(builtin_presets(get_schema("tha2")))  # one table for the 42-parameter family
    assert set(presets["neutral"].values_for(schema).values()) == {0.0}
    assert len({tuple(sorted(p.values.items())) for p in presets.values()}) == len(presets)  # all different


def test_expression_parameters_are_the_face_without_gaze_or_head():
    tha3 = get_schema("tha3")
    names = expression_parameters(tha3)
    assert "iris_small_left" in names and "mouth_smirk" in names and "eyebrow_angry_right" in names
    assert not {"iris_rotation_x", "head_x", "breathing", "body_y"} & set(names)
    assert expression_parameters(get_schema("tha1")) == ("left_eye", "right_eye", "mouth")
    assert set(FAMILIES) == set(SCHEMAS)


def test_applying_a_preset_can_leave_the_mouth_to_lip_sync():
    tha3 = get_schema("tha3")
    happy = builtin_presets(tha3)["happy"]
    upper = happy.values_for(tha3, groups=("eyebrow", "eye"))
    assert upper["eyebrow_happy_left"] == pytest.approx(0.8)
    assert not any(name.startswith("mouth") for name in upper)
    with pytest.raises(PresetError, match="'nose' is not an expression group"):
        happy.values_for(tha3, groups=("nose",))


def test_a_users_pose_carries_its_other_parameters_and_applies_where_they_exist():
    tilt = Preset("shy tilt", "tha3", {"eye_relaxed_left": 0.5, "eye_relaxed_right": 0.5, "neck_z": -0.3,
                                       "breathing": 0.2})
    on_tha4 = tilt.values_for(get_schema("tha4"))
    assert on_tha4["neck_z"] == -0.3 and on_tha4["breathing"] == 0.2 and on_tha4["mouth_aaa"] == 0.0
    with pytest.raises(PresetError, match="'shy tilt' \\(made on tha3\\) sets breathing, which the tha2 pose does not have"):
        tilt.values_for(get_schema("tha2"))


@pytest.mark.parametrize("make, message", [
    (lambda: Preset("grin", "tha3", {"mouth_raised_corner_lef": 1.0}), "did you mean mouth_raised_corner_left"),
    (lambda: Preset("grin", "tha3", {"mouth_aaa": 1.5}), "mouth_aaa=1.5 is outside \\[0, 1\\]"),
    (lambda: Preset("grin", "tha3", {"head_x": "left"}), "head_x='left' is outside \\[-1, 1\\]"),
    (lambda: Preset("", "tha3", {}), "needs a name"),
    (lambda: Preset("grin", "tha9", {}), "unknown pose schema 'tha9'"),
    (lambda: Preset("grin", "tha1", {"eye_wink_left": 1.0}), "tha1 pose has no parameter 'eye_wink_left'"),
])
def test_a_bad_preset_is_refused_naming_it_and_the_problem(make, message):
    with pytest.raises(PresetError, match=message):
        make()


def test_user_presets_round_trip_through_json():
    presets = [
        Preset("smirk", "tha3", {"mouth_smirk": 1.0, "eyebrow_serious_left": 0.4}),
        Preset("sleepy", "tha1", {"left_eye": 0.7, "right_eye": 0.7}),
        builtin_presets(get_schema("tha4"))["angry"],
    ]
    text = presets_to_json(presets)
    assert json.loads(text)["format"] == "tha_studio.expression_presets"
    assert presets_from_json(text) == presets


def presets_file(*entries, **top):
    return json.dumps({"format": "tha_studio.expression_presets", "version": 1, "presets": list(entries), **top})


@pytest.mark.parametrize("text, message", [
    ('{"format": "tha_studio.expression_presets",\n "version": 1,\n "presets": [}', "my.blend, line 3, column 14: not valid JSON"),
    ('{"presets": []}', "not a THA Studio presets file"),
    (presets_file(version=7), "presets version 7"),
    (presets_file({"name": "a", "schema": "tha3"}), "preset 1 must have exactly \"name\", \"schema\" and \"values\""),
    (presets_file({"name": "a", "schema": "tha3", "values": {}},
                  {"name": "b", "schema": "tha3", "values": {"mouth_ooo": 2}}),
     "preset 2: preset 'b': mouth_ooo=2 is outside"),
    (presets_file({"name": "a", "schema": "tha3", "values": {}}, {"name": "a", "schema": "tha3", "values": {}}),
     "two presets called 'a' for tha3"),
])
def test_a_bad_presets_file_is_refused_naming_where(text, message):
    with pytest.raises(PresetError, match=message.replace("(", "\\(").replace(")", "\\)")):
        presets_from_json(text, source="my.blend")


def test_the_same_name_may_exist_once_per_schema():
    both = [Preset("mine", "tha3", {}), Preset("mine", "tha1", {})]
    assert presets_from_json(presets_to_json(both)) == both
    assert EXPRESSION_GROUPS == ("eyebrow", "eye", "mouth")
