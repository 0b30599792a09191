"""THA2 networks and poser against the official outputs (shared/assets/golden/tha2, synthetic weights)."""

import numpy as np
import pytest
import torch

from tha_studio.neural import tha2
from tha_studio.neural.poser import Poser
from tha_studio.neural.synthetic import synthetic_state_dict
from tha_studio.neural.weights import WeightSet

from golden import assert_end_to_end_near, assert_outputs_match, case_inputs, float64_reference, keys_of

UNIT_SCALE = 0.05  # PROTOCOL.md §2: the SCALE of every unit case
END_TO_END_SCALE = 0.005  # ... and of the THA2 end-to-end cases


@pytest.fixture(scope="module")
def golden(shared):
    return shared / "assets" / "golden"


def load_synthetic(name, scale):
    """A THA2 network loaded strictly with the golden synthetic weights at `scale`."""
    network = tha2.build_network(name)
    network.load_state_dict(synthetic_state_dict(network, f"tha2/{name}", scale), strict=True)
    return network


@pytest.fixture(scope="module")
def unit_networks():
    """Each network once per module (31-35M parameters each), with the unit-case weights."""
    return {name: load_synthetic(name, UNIT_SCALE) for name in tha2.NETWORKS}


@pytest.mark.parametrize("name", tha2.NETWORKS)
def test_state_dict_matches_official_key_list(name, golden):
    ours = [(k, tuple(v.shape)) for k, v in tha2.build_network(name).state_dict().items()]
    assert ours == keys_of(golden / "tha2" / f"{name}.keys.txt")


@pytest.mark.slow
@pytest.mark.parametrize("case_index", [0, 1])
@pytest.mark.parametrize("name", tha2.NETWORKS)
def test_every_output_matches_official(name, case_index, unit_networks, golden):
    case = np.load(golden / "tha2" / f"{name}_case{case_index}.npz")
    with torch.no_grad():
        outputs = unit_networks[name](*case_inputs(case))
    assert_outputs_match(outputs, case, f"tha2 {name} case {case_index}")


def test_unknown_network_is_named():
    with pytest.raises(ValueError, match="editor.*networks are eyebrow_decomposer"):
        tha2.build_network("editor")


# --- the pipeline, end to end through the Poser ---------------------------------------------------

END_TO_END_CASES = ["mouth_open", "wink_head_turn", "head_turn_neck_tilt"]


@pytest.fixture(scope="module")
def end_to_end_weights():
    """The five THA2 networks' end-to-end synthetic weights."""
    state_dicts = {
        name: synthetic_state_dict(tha2.build_network(name), f"tha2/{name}", END_TO_END_SCALE) for name in tha2.NETWORKS
    }
    return WeightSet("tha2", "float", state_dicts)


@pytest.mark.slow
def test_poser_reproduces_the_official_end_to_end_poses_in_one_batch(end_to_end_weights, golden):
    cases = [np.load(golden / "tha2" / f"e2e_poser_{name}.npz") for name in END_TO_END_CASES]
    assert all(np.array_equal(case["in_image"], cases[0]["in_image"]) for case in cases)
    image, poses = torch.from_numpy(cases[0]["in_image"]), np.concatenate([case["in_pose"] for case in cases])
    poser = Poser(end_to_end_weights, device="cpu", precision="float32")
    decomposer_calls = []
    hook = poser.networks["eyebrow_decomposer"].register_forward_hook(lambda *_: decomposer_calls.append(1))
    try:
        images = poser.set_image(image).pose(poses).numpy()
    finally:
        hook.remove()
    assert len(decomposer_calls) == 1, "the eyebrow decomposer should run once per picture, in set_image"
    for name, case, posed in zip(END_TO_END_CASES, cases, images):
        assert_end_to_end_near(name, posed, case["out_00_final_image"][0])  # float32: see golden.END_TO_END_ATOL
    # In float64 the pipeline is the official one: it differs from the stored (float32) picture by
    # what float32 rounding did to the official run, 1.9e-3 to 2.5e-3 (PROTOCOL.md §8), on any CPU.
    # Shown on one case, a wink and a head turn (every case runs all five networks): float64
    # convolutions run without oneDNN: 20 s a pose alone on a 2-core VM, 50 s beside a neighbour in CI.
    index = END_TO_END_CASES.index("wink_head_turn")
    exact = float64_reference(end_to_end_weights, image, poses[index : index + 1])[0]
    exact_difference = np.abs(exact - cases[index]["out_00_final_image"][0]).max()
    assert exact_difference < 2.6e-3, f"wink_head_turn: in float64 the picture differs by {exact_difference:.2e}"
