"""The ONNX Runtime poser end to end: the official goldens with real and synthetic weights, the
torch poser on the same weights, and the weights read without torch.

Torch appears here only to make the synthetic weights and the torch poser compared against;
the backend itself never imports it (tests/test_layers.py)."""

import numpy as np
import pytest
import torch
from PIL import Image

from tha_studio.neural import tha1, tha2, tha3
from tha_studio.neural.ort.poser import OrtPoser, open_weights
from tha_studio.neural.ort.weight_sources import WeightSet, WeightsError
from tha_studio.neural.poser import Poser
from tha_studio.neural.synthetic import synthetic_state_dict
from tha_studio.neural.weights import WeightSet as TorchWeightSet
from tha_studio.pose.schema import THA1, THA3

from golden import assert_end_to_end_near, float64_reference

# The aim of issue 11: the official output within 1e-4. Our torch poser is within 6e-5 of it.
OFFICIAL_ATOL = 1e-4


pytestmark = pytest.mark.usefixtures("two_threads")


def as_numpy(weight_set):
    return WeightSet(weight_set.family, weight_set.variant,
                     {n: {k: v.detach().numpy() for k, v in s.items()} for n, s in weight_set.state_dicts.items()})


def synthetic(module, variant, golden_prefix, scale):
    state_dicts = {name: synthetic_state_dict(module.build_network(name, variant), f"{golden_prefix}/{name}", scale)
                   for name in module.NETWORKS}
    return TorchWeightSet(module.FAMILY, variant, state_dicts)


def real_cases(shared):
    return sorted((shared / "assets/golden/tha3_separable_float_real").glob("*.npz"))


@pytest.mark.parametrize("optimization", ["all", "extended", "basic", "disabled"])
def test_real_tha3_weights_reproduce_the_official_poser_within_1e_4(shared, tha3_data, optimization):
    poser = OrtPoser("tha3", device="cpu", threads=2, optimization=optimization)
    cases = real_cases(shared)
    assert len(cases) == 6
    for path in cases:
        case = np.load(path)
        poser.set_image(case["image_in"])
        final = poser.pose(case["pose"][None])[0]
        difference = np.abs(final - case["image_out"]).max()
        assert difference <= OFFICIAL_ATOL, f"{path.name}: differs from the official picture by {difference:.2e}"


def test_the_weights_read_without_torch_equal_torch_load(tha3_data):
    from tha_studio.neural.weights import open_weights as open_with_torch

    ours, theirs = open_weights("tha3"), open_with_torch("tha3")
    assert (ours.family, ours.variant) == (theirs.family, theirs.variant) == ("tha3", "separable_float")
    for network, state in theirs.state_dicts.items():
        assert list(ours.state_dicts[network]) == list(state)
        for key, tensor in state.items():
            assert np.array_equal(ours.state_dicts[network][key], tensor.numpy()), f"{network}.{key}"


def test_synthetic_tha3_end_to_end_goldens(shared):
    weights = synthetic(tha3, "separable_float", "tha3_separable_float", 0.01)
    poser = OrtPoser(as_numpy(weights), device="cpu", threads=2)
    cases = sorted((shared / "assets/golden/tha3_separable_float").glob("e2e_poser_*.npz"))
    assert len(cases) == 3
    for path in cases:
        case = np.load(path)
        poser.set_image(case["in_image"])
        final = poser.pose(case["in_pose"])
        stored = case["out_00_final_image"].astype(np.float32)
        excess = (np.abs(final - stored) - 2.0**-10 * np.abs(stored)).max()
        assert excess <= 1e-3, f"{path.name}: final differs by {excess:.2e} beyond float16 rounding"
        # Synthetic weights chain five networks that amplify float32 rounding (the torch poser's test
        # allows the same 1e-3); the real weights above are held to 1e-4.
        patch = final[..., 240:272, 240:272]
        assert np.abs(patch - case["f32patch_00_final_image"]).max() <= 1e-3


def assert_as_close_to_exact_as_torch(weights, image, poses):
    """Synthetic weights on a noise picture are ill-conditioned: float32 and float64 torch differ by
    O(0.1) there. The backend must be no further from float64 than torch's own float32 is."""
    ours = OrtPoser(as_numpy(weights), device="cpu", threads=2).set_image(image.numpy()).pose(poses)
    theirs = Poser(weights, device="cpu", precision="float32").set_image(image).pose(poses).numpy()
    exact = float64_reference(weights, image, poses)
    ours_error, torch_error = np.abs(ours - exact).max(), np.abs(theirs - exact).max()
    assert ours.shape == theirs.shape
    assert ours_error <= 1.5 * torch_error + 1e-5, f"ONNX Runtime {ours_error:.2e}, torch {torch_error:.2e} from float64"


def test_tha3_standard_variant_is_as_exact_as_the_torch_poser():
    weights = synthetic(tha3, "standard_float", "tha3_standard_float", 0.01)
    image = torch.rand(1, 4, 512, 512, generator=torch.Generator().manual_seed(1)) * 2 - 1
    # One pose that takes every network (float64 convolutions run without oneDNN: 40 s a pose in CI).
    poses = THA3.vector(mouth_aaa=1.0, head_y=0.4, eye_wink_left=1.0, body_z=-0.5)[None]
    assert_as_close_to_exact_as_torch(weights, image, poses)


@pytest.mark.slow
def test_tha2_end_to_end_goldens(shared):
    weights = synthetic(tha2, "float", "tha2", 0.005)
    poser = OrtPoser(as_numpy(weights), device="cpu", threads=2)
    names = ["mouth_open", "wink_head_turn", "head_turn_neck_tilt"]
    cases = [np.load(shared / "assets/golden/tha2" / f"e2e_poser_{name}.npz") for name in names]
    poser.set_image(cases[0]["in_image"])
    images = poser.pose(np.concatenate([case["in_pose"] for case in cases]))
    for name, case, image in zip(names, cases, images):
        # As the torch poser's test (golden.END_TO_END_ATOL: the float32 rounding these weights
        # amplify depends on the CPU's kernels; on an AVX2 EPYC the torch poser was up to 5.8e-3 from
        # ONNX Runtime, each within bounds of the official picture).
        assert_end_to_end_near(name, image[None], case["out_00_final_image"])


def test_tha1_is_as_exact_as_the_torch_poser(shared):
    weights = synthetic(tha1, "float", "tha1", 0.05)
    image = torch.from_numpy(np.load(shared / "assets/golden/tha1/face_morpher_case0.npz")["in_image"])
    poses = THA1.vector(head_x=0.3, head_y=-0.5, neck_z=0.2, left_eye=0.7, mouth=0.8)[None]  # (one pose, as above)
    assert_as_close_to_exact_as_torch(weights, image, poses)


@pytest.mark.slow
def test_tha4_student_reproduces_the_official_pictures(shared):
    character = shared / "assets/golden/tha4_lambda_00"
    poser = OrtPoser(character, device="cpu", threads=2)
    assert (poser.family, poser.variant) == ("tha4", "student")
    poser.set_image(character / "character.png")
    names = ["pose0_neutral", "pose1_mouth_aaa", "pose2_left_wink_head_y", "pose3_body_y_breathing"]
    cases = [np.load(character / f"{name}.npz") for name in names]
    pictures = poser.pose_rgba(np.concatenate([case["in_pose"] for case in cases]))
    for name, picture in zip(names, pictures):
        official = np.asarray(Image.open(character / f"{name}.png").convert("RGBA"))
        opaque = official[..., 3] == 255
        assert opaque.mean() > 0.2
        assert np.abs(picture[opaque].astype(int) - official[opaque].astype(int)).max() <= 1, name


def test_eyebrow_and_face_work_is_cached_per_eyebrow_and_face_pose(shared, tha3_data):
    poser = OrtPoser("tha3", device="cpu", threads=2)
    case = np.load(real_cases(shared)[0])
    poses = np.stack([
        THA3.vector(eyebrow_angry_left=0.6, eyebrow_angry_right=0.6, mouth_aaa=1.0),
        THA3.vector(eyebrow_raised_left=1.0, head_y=0.4),
        THA3.vector(eyebrow_angry_left=0.6, eyebrow_angry_right=0.6, mouth_iii=1.0),
        THA3.vector(eyebrow_angry_left=0.6, eyebrow_angry_right=0.6, mouth_aaa=1.0, head_x=0.5, breathing=0.3),
    ])
    fresh = [poser.set_image(case["image_in"]).pose(pose)[0] for pose in poses]
    poser.set_image(case["image_in"])
    batch = poser.pose(poses)
    caches = poser.prepared["caches"]
    assert len(caches["eyebrows"]) == 2  # two distinct eyebrow poses among four frames
    assert len(caches["face"]) == 3  # the last frame turns the first one's face
    again = poser.pose(poses[::-1])
    for i in range(4):
        assert np.abs(batch[i] - fresh[i]).max() <= 1e-6
        assert np.abs(again[3 - i] - fresh[i]).max() <= 1e-6


def test_a_pickle_that_would_run_code_is_refused_without_running_it(tmp_path):
    import os
    import pickle
    import zipfile

    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    folder = tmp_path / "weights"
    folder.mkdir()
    with zipfile.ZipFile(folder / "face_morpher.pt", "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"w": Evil()}, protocol=2))
    for name in ("two_algo_face_rotator", "combiner"):
        (folder / f"{name}.pt").write_bytes((folder / "face_morpher.pt").read_bytes())
    with pytest.raises(WeightsError, match=r"face_morpher\.pt: refused: the file names posix\.system"):
        open_weights(folder)
    assert not marker.exists()


def test_weights_of_another_family_or_variant_are_refused_naming_the_file(tmp_path, tha3_data):
    from tha_studio.neural.weights import open_weights as open_with_torch
    from tha_studio.neural.weights import save_safetensors

    file = save_safetensors(tmp_path / "tha3.safetensors", open_with_torch("tha3"))
    with pytest.raises(WeightsError, match=r"tha3\.safetensors: holds THA3 weights, not THA1"):
        open_weights(file, family="tha1")
    with pytest.raises(WeightsError, match=r"holds THA3 separable_float weights, not standard_float"):
        open_weights(file, variant="standard_float")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "editor.pt").write_bytes(b"not a zip")
    with pytest.raises(WeightsError, match="not a folder of THA weights"):
        open_weights(tmp_path / "junk")
    (tmp_path / "empty").mkdir()
    for name in ("eyebrow_decomposer", "eyebrow_morphing_combiner", "face_morpher", "two_algo_face_body_rotator"):
        (tmp_path / "empty" / f"{name}.pt").symlink_to(tha3_data / "models" / "separable_float" / f"{name}.pt")
    (tmp_path / "empty" / "editor.pt").write_bytes(b"")  # a copy interrupted before its first byte
    with pytest.raises(WeightsError, match=r"empty.editor\.pt: not a PyTorch weights file \(it is empty\)"):
        open_weights(tmp_path / "empty")
    weights = open_weights(file)  # and the file itself opens without torch
    assert (weights.family, weights.variant) == ("tha3", "separable_float")


def test_its_threads_do_not_spin_waiting_for_work(tha3_data):
    # ONNX Runtime's default spinning held the cores its caller needed (bench/bench_ort_threads.py).
    for spinning, expected in ((False, "0"), (True, "1")):
        poser = OrtPoser("tha3", device="cpu", threads=2, spinning=spinning)
        for session in poser.sessions.values():
            options = session.get_session_options()
            assert options.get_session_config_entry("session.intra_op.allow_spinning") == expected
    assert OrtPoser("tha3", device="cpu").sessions["rotation"].get_session_options().get_session_config_entry(
        "session.intra_op.allow_spinning") == "0"
