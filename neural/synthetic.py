"""Deterministic synthetic weights: the rule the golden tensors were made with.

shared/assets/golden/PROTOCOL.md §2: for each state_dict key k of a network,
seed = crc32("<NETWORK_ID>/<k>"), draw = default_rng(seed).standard_normal(shape, float32);
InstanceNorm weights are 1 + 0.1*draw, InstanceNorm biases 0.1*draw, everything else
draw*scale. Used by the golden tests and by benchmarks where real weights are absent (the
amount of computation does not depend on the values).
"""

import zlib

import numpy as np
import torch
from torch import nn


def norm_parameter_names(module):
    """{key: "norm_weight" | "norm_bias"} for every InstanceNorm parameter of `module`."""
    rules = {}
    for prefix, child in module.named_modules():
        if isinstance(child, nn.InstanceNorm2d):
            dot = f"{prefix}." if prefix else ""
            rules[f"{dot}weight"] = "norm_weight"
            rules[f"{dot}bias"] = "norm_bias"
    return rules


def synthetic_tensor(network_id, key, shape, rule, scale):
    seed = zlib.crc32(f"{network_id}/{key}".encode("utf-8"))
    draw = np.random.default_rng(seed).standard_normal(tuple(shape), dtype=np.float32)
    if rule == "norm_weight":
        values = np.float32(1) + np.float32(0.1) * draw
    elif rule == "norm_bias":
        values = np.float32(0.1) * draw
    else:
        values = draw * np.float32(scale)
    return torch.from_numpy(values.astype(np.float32, copy=False))


def synthetic_state_dict(module, network_id, scale=0.05):
    """A state_dict for `module` filled by the golden rule (float32; cast it for half variants)."""
    norms = norm_parameter_names(module)
    return {
        key: synthetic_tensor(network_id, key, value.shape, norms.get(key, "normal"), scale)
        for key, value in module.state_dict().items()
    }
