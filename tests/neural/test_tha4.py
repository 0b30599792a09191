"""THA4 student (lambda_00, real weights) against the official mode_14 outputs."""

import numpy as np
import pytest
import torch
from PIL import Image

from tha_studio.neural import image as image_io
from tha_studio.neural import tha4
from tha_studio.neural.poser import Poser
from tha_studio.neural.weights import open_weights
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


@pytest.mark.parametrize("pose_name", POSES[:1])  # all four poses go through the Poser below
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


# --- the pipeline, end to end through the Poser, from the character model folder -------------------


@pytest.fixture(scope="module")
def poser(character):
    weight_set = open_weights(character)
    assert (weight_set.family, weight_set.variant) == ("tha4", "student")
    poser = Poser(weight_set, device="cpu", precision="float32")
    picture = tha4.character_image_file(weight_set)
    assert picture == character / "character.png"
    return poser.set_image(picture)


def test_poser_premultiplies_the_picture_as_the_official_converter(poser, character):
    official = torch.from_numpy(np.load(character / "input_image.npz")["image"])
    torch.testing.assert_close(poser._cache["values"]["premultiplied_image"], official, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_poser_reproduces_official_outputs_and_pictures(poser, character):
    cases = [np.load(character / f"{name}.npz") for name in POSES]
    poses = np.concatenate([case["in_pose"] for case in cases])
    outputs = poser.pose_outputs(poses)
    pictures = image_io.tensor_to_rgba(outputs["image"])
    for index, (name, case) in enumerate(zip(POSES, cases)):
        ours = [outputs["premultiplied_image"][index : index + 1], outputs["face_image"][index : index + 1]]
        assert_outputs_match(ours, case, f"tha4 poser {name}", resampled=("final_image",))
        # The official app shows premultiplied colour as it is; where the character is opaque that equals ours.
        official = np.asarray(Image.open(character / f"{name}.png").convert("RGBA"))
        opaque = official[..., 3] == 255
        assert opaque.mean() > 0.2
        assert np.abs(pictures[index][opaque].astype(int) - official[opaque].astype(int)).max() <= 1


def test_straight_alpha_round_trip():
    straight = torch.rand(2, 4, 16, 16) * 2 - 1
    straight[:, 3:4] = straight[:, 3:4].clamp(min=-0.9)  # keep alpha away from 0, where colour is lost
    torch.testing.assert_close(tha4.unpremultiply(tha4.premultiply(straight)), straight, rtol=0, atol=1e-5)


def test_float16_is_refused_with_the_reason(character):
    # (A GPU shows it: tests/neural/test_gpu.py; the refusal comes before any device is asked.)
    with pytest.raises(ValueError, match="float16.*THA4.*sine of 30x"):
        Poser(open_weights(character), device="cpu", precision="float16")


def test_cuda_graphs_are_for_cuda_devices_only(character):
    # (They run and are checked against eager posing on a GPU: tests/neural/test_gpu.py.)
    assert Poser(open_weights(character), device="cpu").pipeline.graphs is None
    with pytest.raises(ValueError, match="cuda_graphs asked for on cpu: CUDA graphs run on CUDA devices only"):
        Poser(open_weights(character), device="cpu", cuda_graphs=True)


def test_unknown_variant_and_network_are_named():
    with pytest.raises(ValueError, match="teacher.*variants are student"):
        tha4.build_network("face_morpher", "teacher")
    with pytest.raises(ValueError, match="upscaler.*networks are face_morpher, body_morpher"):
        tha4.build_network("upscaler")


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_a_sprite_of_another_picture_is_refused_by_name(character, tha3_data, backend):
    # A sprite's frames come from a FrameSource: with a student's weights, only its character poses.
    from tha_studio.neural.sprite_frames import CharacterError, FrameSource, premultiplied_distance

    own = FrameSource(character / "character.png", "tha3", weights=str(character), backend=backend)
    assert own.pose_rgba(np.zeros(45, np.float32))[1].shape == (512, 512, 4)
    with pytest.raises(CharacterError, match=r"THA4 student model: it draws only its own character, .*character\.png; "
                                             r"crypko_00\.png is another picture"):
        FrameSource(tha3_data / "images" / "crypko_00.png", "tha3", weights=str(character), backend=backend)
    # Another file of the same drawing passes (the tha3 package ships lambda_00 as a sample).
    FrameSource(tha3_data / "images" / "lambda_00.png", "tha3", weights=str(character), backend=backend)
    assert premultiplied_distance(own.rgba, own.rgba) == 0.0
