"""THA2 networks and poser against the official outputs (shared/assets/golden/tha2, synthetic weights)."""

import numpy as np
import pytest
import torch

from tha_studio.neural import tha2
from tha_studio.neural.synthetic import synthetic_state_dict

from golden import assert_outputs_match, case_inputs, keys_of

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
