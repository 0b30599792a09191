"""THA4 student (lambda_00, real weights) against the official mode_14 outputs."""

import numpy as np
import pytest
import torch

from tha_studio.neural import tha4
from tha_studio.pose.schema import THA4

from golden import assert_outputs_match, keys_of

POSES = ["pose0_neutral", "pose1_mouth_aaa", "pose2_left_wink_head_y", "pose3_body_y_breathing"]


@pytest.fixture(scope="module")
def character(shared):
    return shared / "assets" / "golden" / "tha4_lambda_00"


@pytest.fixture(scope="module")
def students(character):
    face = tha4.SirenFaceMorpher()
    face.load_state_dict(torch.load(character / "face_morpher.pt", map_location="cpu", weights_only=True), strict=True)
    body = tha4.SirenBodyMorpher()
    body.load_state_dict(torch.load(character / "body_morpher.pt", map_location="cpu", weights_only=True), strict=True)
    return face.eval(), body.eval()


@pytest.mark.parametrize("name, cls", [("face_morpher", tha4.SirenFaceMorpher), ("body_morpher", tha4.SirenBodyMorpher)])
def test_state_dict_matches_official_key_list(name, cls, character):
    ours = [(k, tuple(v.shape)) for k, v in cls().state_dict().items()]
    assert ours == keys_of(character / f"{name}.keys.txt")


@pytest.mark.parametrize("pose_name", POSES)
def test_student_matches_official_final_and_face(pose_name, students, character):
    face_morpher, body_morpher = students
    case = np.load(character / f"{pose_name}.npz")
    image = torch.from_numpy(np.load(character / "input_image.npz")["image"])
    pose = torch.from_numpy(case["in_pose"])
    with torch.no_grad():
        face = face_morpher(pose[:, THA4.slice_for("face_morpher")])
        final = body_morpher(tha4.compose_face(image, face), pose)[0]
    # The final image is a warp of the picture: resampled tolerance; the face is a direct SIREN output.
    assert_outputs_match([final, face], case, f"tha4 lambda_00 {pose_name}", resampled=("final_image",))
