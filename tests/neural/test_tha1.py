"""THA1 networks against the official outputs (shared/assets/golden/tha1, synthetic weights by the stated rule)."""

import numpy as np
import pytest
import torch

from tha_studio.neural import tha1

from golden import assert_outputs_match, case_inputs, read_keys, synthetic_state_dict

NETWORKS = {
    # network: (class, forward argument names, outputs that are resampled images or blends of them)
    "face_morpher": (tha1.FaceMorpher, ["image", "pose"], ()),
    "two_algo_face_rotator": (tha1.TwoAlgoFaceRotator, ["image", "pose"], ("resampled_image",)),
    "combiner": (tha1.Combiner, ["first_image", "second_image", "pose"], ()),
}


@pytest.fixture(scope="module")
def golden(shared):
    return shared / "assets" / "golden"


@pytest.fixture(scope="module")
def networks(golden):
    """Each network once per module (about 34M parameters each), loaded strictly with the unit-case weights."""
    loaded = {}
    for name, (cls, _, _) in NETWORKS.items():
        module = cls()
        module.load_state_dict(synthetic_state_dict(golden, f"tha1/{name}", 0.05), strict=True)
        loaded[name] = module.eval()
    return loaded


@pytest.mark.parametrize("name", NETWORKS)
def test_state_dict_matches_official_key_list(name, golden):
    ours = [(k, tuple(v.shape)) for k, v in NETWORKS[name][0]().state_dict().items()]
    official = [(k, shape) for k, shape, _ in read_keys(golden / "tha1" / f"{name}.keys.txt")]
    assert ours == official


@pytest.mark.slow
@pytest.mark.parametrize("case_index", [0, 1])
@pytest.mark.parametrize("name", NETWORKS)
def test_every_output_matches_official(name, case_index, networks, golden):
    _, argument_names, resampled = NETWORKS[name]
    case = np.load(golden / "tha1" / f"{name}_case{case_index}.npz")
    with torch.no_grad():
        outputs = networks[name](*case_inputs(case, argument_names))
    assert_outputs_match(outputs, case, resampled)


def test_wrong_weights_are_refused():
    module = tha1.Combiner()
    state = module.state_dict()
    state.pop("retouch_color_change.0.weight")
    with pytest.raises(RuntimeError, match="retouch_color_change"):
        module.load_state_dict(state, strict=True)
