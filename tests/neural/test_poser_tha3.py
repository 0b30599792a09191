"""The THA3 poser end to end: golden finals with synthetic and real weights, and real pictures."""

import numpy as np
import pytest
import torch

from tha_studio.neural import tha3
from tha_studio.neural.poser import Poser
from tha_studio.neural.synthetic import synthetic_state_dict
from tha_studio.neural.weights import WeightSet, open_weights
from tha_studio.pose.schema import THA3


pytestmark = pytest.mark.usefixtures("two_threads")


@pytest.fixture(scope="module")
def real_poser(tha3_data):
    return Poser("tha3", device="cpu")


@pytest.fixture(scope="module")
def synthetic_poser():
    # The end-to-end golden cases use the unit rule at scale 0.01 (PROTOCOL.md §2).
    state_dicts = {
        name: synthetic_state_dict(tha3.build_network(name, "separable_float"), f"tha3_separable_float/{name}", 0.01)
        for name in tha3.NETWORKS
    }
    return Poser(WeightSet("tha3", "separable_float", state_dicts), device="cpu")


def real_cases(shared):
    folder = shared / "assets/golden/tha3_separable_float_real"
    return sorted(folder.glob("*.npz"))


def test_real_weights_reproduce_the_official_poser(shared, real_poser):
    """The default CPU poser (channels-last) and the NCHW one, each within 1e-4 of the official."""
    cases = real_cases(shared)
    assert len(cases) == 6
    assert real_poser.memory_format == torch.channels_last
    nchw = Poser(real_poser.weights, device="cpu", channels_last=False)
    for poser in (real_poser, nchw):
        for path in cases:
            case = np.load(path)
            poser.set_image(torch.from_numpy(case["image_in"]))
            final = poser.pose(case["pose"][None])[0].numpy()
            difference = np.abs(final - case["image_out"]).max()
            assert difference <= 1e-4, (f"{path.name}, {poser.memory_format}: final image differs from the official "
                                        f"one by {difference:.2e}")


def test_synthetic_end_to_end_cases_match(shared, synthetic_poser):
    folder = shared / "assets/golden/tha3_separable_float"
    cases = sorted(folder.glob("e2e_poser_*.npz"))
    assert len(cases) == 3
    for path in cases:
        case = np.load(path)
        synthetic_poser.set_image(torch.from_numpy(case["in_image"]))
        final = synthetic_poser.pose(case["in_pose"]).numpy()
        stored = case["out_00_final_image"].astype(np.float32)
        excess = (np.abs(final - stored) - 2.0**-10 * np.abs(stored)).max()
        assert excess <= 1e-3, f"{path.name}: final differs by {excess:.2e} beyond float16 rounding"
        patch = final[..., 240:272, 240:272]
        assert np.abs(patch - case["f32patch_00_final_image"]).max() <= 1e-3


def test_a_batch_equals_single_poses(shared, real_poser):
    case = np.load(real_cases(shared)[0])
    real_poser.set_image(torch.from_numpy(case["image_in"]))
    poses = np.stack([THA3.vector(mouth_aaa=1.0), THA3.vector(eye_wink_right=1.0, head_y=-0.5)])
    assert real_poser.chunk_size == 1  # the CPU default: one frame at a time
    chunked = real_poser.pose_outputs(poses)
    real_poser.chunk_size = None  # the whole batch through the networks at once, as on a GPU
    try:
        batch = real_poser.pose(poses)
    finally:
        real_poser.chunk_size = 1
    for i in range(2):
        single = real_poser.pose(poses[i])
        assert torch.allclose(batch[i], single[0], atol=5e-4)
    assert chunked["image"].shape == batch.shape and chunked["alpha"].shape[0] == 2
    assert torch.allclose(chunked["image"], batch, atol=5e-4)


def test_real_picture_posed_as_asked(tha3_data, real_poser, tmp_path):
    """Mouth open, a wink and a head turn on a real picture change the right places.

    PNGs go to /tmp/tha_studio_poser_*.png to look at.
    """
    from PIL import Image

    real_poser.set_image(tha3_data / "images/crypko_00.png")
    poses = {
        "neutral": THA3.vector(),
        "mouth_open": THA3.vector(mouth_aaa=1.0),
        "wink": THA3.vector(eye_wink_left=1.0),
        "head_turn": THA3.vector(head_y=0.8, body_y=0.4),
    }
    rgba = real_poser.pose_rgba(np.stack(list(poses.values())))
    pictures = dict(zip(poses, rgba))
    for name, picture in pictures.items():
        Image.fromarray(picture).save(f"/tmp/tha_studio_poser_{name}.png")

    def change(name, rows, cols):
        return np.abs(pictures[name][rows, cols].astype(int) - pictures["neutral"][rows, cols].astype(int)).mean()

    mouth, eyes, outside = (slice(150, 185), slice(230, 290)), (slice(105, 145), slice(200, 320)), (slice(400, 512), slice(0, 512))
    assert change("mouth_open", *mouth) > 3 * change("mouth_open", *eyes)
    assert change("wink", *eyes) > 3 * change("wink", *mouth)
    assert change("head_turn", slice(60, 200), slice(190, 330)) > 5
    assert change("mouth_open", *outside) < 0.5


def test_eyebrow_pose_cache_gives_the_same_images(shared, real_poser):
    """Faces are cached per eyebrow pose and morphed faces per face pose; mixed batches and
    repeats match fresh computations."""
    case = np.load(real_cases(shared)[0])
    image = torch.from_numpy(case["image_in"])
    poses = np.stack([
        THA3.vector(eyebrow_angry_left=0.6, eyebrow_angry_right=0.6, mouth_aaa=1.0),
        THA3.vector(eyebrow_raised_left=1.0, head_y=0.4),
        THA3.vector(eyebrow_angry_left=0.6, eyebrow_angry_right=0.6, mouth_iii=1.0),
        THA3.vector(eyebrow_angry_left=0.6, eyebrow_angry_right=0.6, mouth_aaa=1.0, head_x=0.5, breathing=0.3),
    ])
    fresh = []
    for pose in poses:
        real_poser.set_image(image)
        fresh.append(real_poser.pose(pose)[0])
    real_poser.set_image(image)
    batch = real_poser.pose(poses)
    caches = real_poser._cache["caches"]
    assert len(caches["eyebrows"]) == 2  # two distinct eyebrow poses among four frames
    assert len(caches["face"]) == 3  # the last frame turns the first one's face
    again = real_poser.pose(poses[::-1])
    for i in range(4):
        assert torch.allclose(batch[i], fresh[i], atol=5e-4)
        assert torch.allclose(again[3 - i], fresh[i], atol=5e-4)


def test_half_variant_runs_in_float32_on_the_cpu_and_matches_its_float_weights(tha3_data):
    weights = open_weights("tha3")
    half = WeightSet(
        "tha3", "separable_half", {n: {k: v.half() for k, v in s.items()} for n, s in weights.state_dicts.items()}
    )
    rounded = WeightSet(
        "tha3", "separable_float", {n: {k: v.float() for k, v in s.items()} for n, s in half.state_dicts.items()}
    )
    half_poser, float_poser = Poser(half, device="cpu"), Poser(rounded, device="cpu")
    assert half_poser.dtype == torch.float32 and half_poser.variant == "separable_half"
    picture = tha3_data / "images/crypko_01.png"
    pose = THA3.vector(mouth_ooo=1.0, head_x=-0.3)
    first = half_poser.set_image(picture).pose(pose)
    second = float_poser.set_image(picture).pose(pose)
    assert torch.equal(first, second)


def test_channels_last_is_the_default_for_tha3_on_the_cpu_and_float16_is_refused_there(synthetic_poser):
    from tha_studio.neural import tha1

    assert synthetic_poser.memory_format == torch.channels_last
    with pytest.raises(ValueError, match="precision 'float16' runs on a GPU only"):
        Poser(synthetic_poser.weights, device="cpu", precision="float16")  # was a blank picture after a minute
    tha1_weights = WeightSet("tha1", "float", {name: tha1.build_network(name).state_dict() for name in tha1.NETWORKS})
    assert Poser(tha1_weights, device="cpu").memory_format == torch.contiguous_format


def test_each_speedup_switched_off_changes_the_computation_not_the_picture(shared, real_poser, monkeypatch):
    """bench/bench_speedups.py measures each eager speed-up against its switched-off path: each
    switch must change which ops run, and the picture stays within 1e-4 of the official one (bit
    for bit where the speed-up claims to be)."""
    from tha_studio.neural import blocks

    from op_record import RecordedOps

    def frame():
        real_poser.set_image(torch.from_numpy(case["image_in"]))  # every stage runs
        with RecordedOps() as ops:
            final = real_poser.pose(case["pose"][None])[0]
        return final, ops.called

    case = np.load(real_cases(shared)[-1])
    frame()  # the first frame also packs weights
    on, ops_on = frame()
    # Summed taps, a tanh through a sigmoid, a blend through lerp, a conv summed by taps: 1e-7
    # relative, not bit for bit.
    rounded_apart = {"resize_as_transposed_conv", "join_free_decoder", "tanh_as_sigmoid", "blend_as_lerp",
                     "flow_head_by_taps"}
    for name in blocks.SPEEDUPS:
        monkeypatch.setitem(blocks.SPEEDUPS, name, False)
        off, ops_off = frame()
        monkeypatch.setitem(blocks.SPEEDUPS, name, True)
        assert ops_off != ops_on, f"switching {name} off changed nothing"
        if name not in rounded_apart:
            assert torch.equal(off, on), f"{name} off: {(off - on).abs().max():.2e} from on"
        difference = np.abs(off.numpy() - case["image_out"]).max()
        assert difference <= 1e-4, f"{name} off: {difference:.2e} from the official picture"
