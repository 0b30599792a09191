"""The pose schemas against the official parameter lists (shared/reference/tha.md §2.2, §6)."""

import json

import numpy as np
import pytest

from tha_studio.pose.schema import GROUPS, SCHEMAS, THA1, THA2, THA3, THA4, get_schema


def test_sizes_match_the_official_pose_vectors():
    assert (THA1.size, THA2.size, THA3.size, THA4.size) == (6, 42, 45, 45)


def test_tha3_order_matches_the_reference_table():
    names = THA3.names
    assert names[:2] == ("eyebrow_troubled_left", "eyebrow_troubled_right")
    assert names[12:14] == ("eye_wink_left", "eye_wink_right")
    assert names[24:27] == ("iris_small_left", "iris_small_right", "mouth_aaa")
    assert names[31] == "mouth_delta" and names[36] == "mouth_smirk"
    assert names[37:] == ("iris_rotation_x", "iris_rotation_y", "head_x", "head_y", "neck_z", "body_y", "body_z", "breathing")
    assert THA2.names == names[:42]
    assert THA4.names == names


def test_tha1_order_and_slices():
    assert THA1.names == ("head_x", "head_y", "neck_z", "left_eye", "right_eye", "mouth")
    assert THA1.slice_for("face_morpher") == slice(3, 6)
    assert THA1.slice_for("combiner") == slice(0, 3)


def test_network_slices_cover_the_vector_as_the_official_posers_do():
    assert [THA3.slices[n] for n in ("eyebrow_morphing_combiner", "face_morpher", "editor")] == [
        slice(0, 12), slice(12, 39), slice(39, 45)]
    assert THA2.slice_for("two_algo_face_rotator") == slice(39, 42)
    assert THA4.slice_for("face_morpher") == slice(0, 39)
    with pytest.raises(KeyError, match="networks are"):
        THA3.slice_for("combiner")


def test_groups_partition_each_schema():
    for schema in SCHEMAS.values():
        grouped = sum((schema.group_names(g) for g in GROUPS), ())
        assert sorted(grouped) == sorted(schema.names)
    assert THA3.group_names("breathing") == ("breathing",)
    assert THA3.group_names("body") == ("body_y", "body_z")
    assert len(THA3.group_names("mouth")) == 11 and len(THA3.group_names("eyebrow")) == 12
    assert THA3.group_names("iris") == ("iris_small_left", "iris_small_right", "iris_rotation_x", "iris_rotation_y")
    assert THA2.group_names("body") == ()


def test_ranges_and_defaults():
    assert THA3.parameter("head_y").minimum == -1.0 and THA3.parameter("breathing").minimum == 0.0
    assert THA3.parameter("iris_rotation_x").minimum == -1.0
    defaults = THA3.defaults()
    assert defaults[THA3.index("mouth_aaa")] == 1.0 and defaults.sum() == 1.0
    assert THA1.defaults().tolist() == [0, 0, 0, 0, 0, 1]


def test_vector_sets_named_values_from_the_identity_pose():
    vector = THA3.vector(mouth_aaa=1, head_y=0.5)
    assert vector.dtype == np.float32 and vector.shape == (45,)
    assert vector[26] == 1.0 and vector[40] == 0.5 and np.count_nonzero(vector) == 2
    assert THA3.vector({"eye_wink_left": 0.25})[12] == 0.25
    assert THA3.as_dict(vector)["head_y"] == 0.5


def test_unknown_name_suggests_close_names():
    with pytest.raises(KeyError, match="mouth_aaa"):
        THA3.vector(mouth_aa=1)
    with pytest.raises(KeyError, match="eye_wink_left"):
        THA3.index("eye_wink_lft")


def test_out_of_range_value_is_refused_and_clamp_clips():
    with pytest.raises(ValueError, match=r"head_y=2.0 is outside \[-1.0, 1.0\]"):
        THA3.vector(head_y=2)
    batch = np.full((3, 45), 5.0)
    batch[1] = -5
    clamped = THA3.clamp(batch)
    assert clamped.dtype == np.float32 and clamped.shape == (3, 45)
    assert clamped[0].max() == 1.0 and clamped[1, THA3.index("head_x")] == -1.0 and clamped[1, 0] == 0.0


def test_check_names_the_expected_size():
    with pytest.raises(ValueError, match="need 45 values"):
        THA3.check(np.zeros(42))


def test_golden_pose_vectors_fit_the_schema(shared):
    poses = json.loads((shared / "assets/golden/poses.json").read_text())["vectors"]
    for name, vector in poses.items():
        if len(vector) == 45:
            assert np.allclose(THA3.clamp(vector), vector), name


def test_get_schema_by_name():
    assert get_schema("THA3") is THA3
    with pytest.raises(KeyError, match="tha1, tha2, tha3, tha4"):
        get_schema("tha5")


@pytest.mark.parametrize("name, suggested", [
    ("Mouth_AAA", "mouth_aaa"),  # another case
    ("mouth", "mouth_aaa, mouth_iii, mouth_uuu, mouth_eee"),  # the start of several
    ("eye_wink", "eye_wink_left, eye_wink_right"),
    ("hed_x", "head_x"),  # a slip
])
def test_an_unknown_name_suggests_the_parameters_meant(name, suggested):
    with pytest.raises(KeyError, match=rf"no parameter '{name}'; did you mean {suggested}"):
        THA3.index(name)
