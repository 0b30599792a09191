"""Pose sampling: THA1 write-up §5.2 distributions, feature slots for THA2/THA3, determinism."""

import numpy as np
import pytest

from tha_studio.pose.schema import get_schema
from tha_studio.render.dataset import sampling


def test_same_seed_model_and_index_give_the_same_pose_in_any_order():
    schema = get_schema("tha3")
    forward = [sampling.sample_pose(schema, 7, "a/model.pmx", i) for i in range(20)]
    backward = [sampling.sample_pose(schema, 7, "a/model.pmx", i) for i in reversed(range(20))][::-1]
    assert np.array_equal(np.stack(forward), np.stack(backward))
    assert not np.array_equal(forward[0], sampling.sample_pose(schema, 8, "a/model.pmx", 0))
    assert not np.array_equal(forward[0], sampling.sample_pose(schema, 7, "b/model.pmx", 0))
    assert not np.array_equal(forward[0], forward[1])
    assert np.array_equal(sampling.sample_poses(schema, 7, "a/model.pmx", 5, start=3), np.stack(forward[3:8]))


def test_tha1_head_density_grows_linearly_to_the_extremes_and_morphs_are_uniform():
    schema = get_schema("tha1")
    poses = sampling.sample_poses(schema, 1, "m", 6000)
    assert poses.dtype == np.float32 and poses.shape == (6000, 6)
    assert (poses >= schema.minimums).all() and (poses <= schema.maximums).all()
    for name in ("head_x", "head_y", "neck_z"):
        magnitude = np.abs(poses[:, schema.index(name)])
        # density 2a on [0, 1]: P(|x| <= a) = a^2
        for a in (0.25, 0.5, 0.75):
            assert np.mean(magnitude <= a) == pytest.approx(a * a, abs=0.025)
        assert np.mean(poses[:, schema.index(name)] > 0) == pytest.approx(0.5, abs=0.03)
    for name in ("left_eye", "right_eye", "mouth"):
        values = poses[:, schema.index(name)]
        assert np.mean(values <= 0.5) == pytest.approx(0.5, abs=0.03)
        assert np.mean(values <= 0.1) == pytest.approx(0.1, abs=0.02)


def test_tha3_feature_slots_hold_one_morph_each():
    schema = get_schema("tha3")
    poses = sampling.sample_poses(schema, 3, "m", 500)
    slots = sampling.feature_slots(schema)
    assert [len(s) for s in slots] == [6, 6, 6, 6, 11]
    for slot in slots:
        columns = poses[:, [schema.index(n) for n in slot]]
        assert ((columns > 0).sum(axis=1) <= 1).all()
        assert (columns.sum(axis=1) <= 1).all()
        # every parameter of the slot gets its turn
        assert ((columns > 0).sum(axis=0) > 500 / len(slot) / 2).all()
    body = np.abs(poses[:, schema.index("body_y")])
    assert np.mean(body > 0.5) == pytest.approx(0.75, abs=0.06)
    breathing = poses[:, schema.index("breathing")]
    assert breathing.min() >= 0 and breathing.max() <= 1
    iris = poses[:, schema.index("iris_rotation_x")]
    assert iris.min() < -0.8 and iris.max() > 0.8


def test_parameters_a_model_cannot_show_stay_at_rest_without_changing_the_others():
    schema = get_schema("tha2")
    everything = sampling.sample_pose(schema, 5, "m", 9)
    available = [n for n in schema.names if not n.startswith("eyebrow") and n != "mouth_smirk"]
    limited = sampling.sample_pose(schema, 5, "m", 9, available=available)
    for name in schema.names:
        if name.startswith("eyebrow") or name == "mouth_smirk":
            assert limited[schema.index(name)] == 0
    for name in ("head_x", "head_y", "neck_z", "iris_small_left", "iris_rotation_y"):
        assert limited[schema.index(name)] == everything[schema.index(name)]


def test_expression_part_keeps_the_face_and_rests_the_head_and_body():
    schema = get_schema("tha3")
    pose = sampling.sample_pose(schema, 2, "m", 0)
    expression = sampling.expression_part(schema, pose)
    for i, parameter in enumerate(schema.parameters):
        if parameter.group in ("head", "body", "breathing"):
            assert expression[i] == 0
        else:
            assert expression[i] == pose[i]


def test_linear_extreme_maps_uniforms_to_the_full_range():
    values = sampling.linear_extreme(np.array([0.0, 0.25, 0.5, 0.75, 0.999999]))
    assert values == pytest.approx([-1.0, -np.sqrt(0.5), 0.0, np.sqrt(0.5), 1.0], abs=1e-3)
