"""THA1 networks against the official outputs (shared/assets/golden/tha1, synthetic weights by the stated rule)."""

import numpy as np
import pytest
import torch

from tha_studio.neural import tha1
from tha_studio.neural.poser import Poser
from tha_studio.neural.synthetic import synthetic_state_dict
from tha_studio.neural.weights import WeightSet
from tha_studio.pose.schema import THA1

from golden import assert_outputs_match, case_inputs, keys_of

UNIT_SCALE = 0.05  # PROTOCOL.md §2: the SCALE of every unit case


@pytest.fixture(scope="module")
def golden(shared):
    return shared / "assets" / "golden" / "tha1"


@pytest.fixture(scope="module")
def networks():
    """Each network once per module (about 34M parameters each), loaded strictly with the unit-case weights."""
    loaded = {}
    for name in tha1.NETWORKS:
        network = tha1.build_network(name)
        network.load_state_dict(synthetic_state_dict(network, f"tha1/{name}", UNIT_SCALE), strict=True)
        loaded[name] = network
    return loaded


@pytest.mark.parametrize("name", tha1.NETWORKS)
def test_state_dict_matches_official_key_list(name, golden):
    ours = [(k, tuple(v.shape)) for k, v in tha1.build_network(name).state_dict().items()]
    assert ours == keys_of(golden / f"{name}.keys.txt")


@pytest.mark.slow
@pytest.mark.parametrize("case_index", [0, 1])
@pytest.mark.parametrize("name", tha1.NETWORKS)
def test_every_output_matches_official(name, case_index, networks, golden):
    case = np.load(golden / f"{name}_case{case_index}.npz")
    with torch.no_grad():
        outputs = networks[name](*case_inputs(case))
    assert_outputs_match(outputs, case, f"tha1 {name} case {case_index}")


def test_rotator_blends_toward_the_input_where_alpha_is_one():
    # THA1's convention (alpha weights the input) is the opposite of THA2+'s new networks.
    rotator = tha1.TwoAlgoFaceRotator()
    torch.nn.init.constant_(rotator.pumarola_alpha_mask[0].weight, 0.0)  # sigmoid(0) = 0.5 everywhere
    image = torch.rand(1, 4, 64, 64) * 2 - 1  # the convolutions take any size divisible by 8
    with torch.no_grad():
        color_changed, _, color_change, alpha, *_ = rotator(image, torch.zeros(1, 3))
    torch.testing.assert_close(alpha, torch.full_like(alpha, 0.5))
    torch.testing.assert_close(color_changed, 0.5 * image + 0.5 * color_change)


def test_missing_key_is_refused():
    network = tha1.build_network("combiner")
    state = network.state_dict()
    state.pop("retouch_color_change.0.weight")
    with pytest.raises(RuntimeError, match="retouch_color_change"):
        network.load_state_dict(state, strict=True)


def test_unknown_network_is_named():
    with pytest.raises(ValueError, match="editor.*networks are face_morpher"):
        tha1.build_network("editor")


@pytest.mark.slow
def test_poser_chains_the_networks_as_the_official_poser(networks, golden):
    """No THA1 end-to-end golden exists: check the glue against the official MorphRotateCombinePoser's steps."""
    state_dicts = {name: network.state_dict() for name, network in networks.items()}
    poser = Poser(WeightSet("tha1", "float", state_dicts), device="cpu", precision="float32")
    image = torch.from_numpy(np.load(golden / "face_morpher_case0.npz")["in_image"])
    pose = THA1.vector(head_x=0.3, head_y=-0.5, neck_z=0.2, left_eye=0.7, mouth=0.8)
    poser.set_image(image)
    ours = poser.pose(pose)
    with torch.no_grad():
        pose_tensor = torch.from_numpy(pose)[None]
        rotation, morph = pose_tensor[:, 0:3], pose_tensor[:, 3:6]  # the official poser's own slicing
        morphed = networks["face_morpher"](image, morph)[0]
        rotated = networks["two_algo_face_rotator"](morphed, rotation)
        expected = networks["combiner"](rotated[0], rotated[1], rotation)[0]
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)
    assert ours.shape == (1, 4, 256, 256)
