"""Reading shared/assets/golden: synthetic weights by the stated rule, cases, and output comparison.

The rule (PROTOCOL.md §2, weights_protocol.json): for each state_dict key k with shape s,
seed = crc32(f"{NETWORK_ID}/{k}"), draw = default_rng(seed).standard_normal(s, float32);
`normal` keys get draw * SCALE, InstanceNorm weights 1 + 0.1 * draw, InstanceNorm biases 0.1 * draw,
all in float32. The `.keys.txt` files list key, shape and rule in state_dict order.

Tolerances (PROTOCOL.md §10): against a float16 output, |ours - stored| <= atol + 2^-10 |stored| with atol
about 1e-4 for outputs that pass through no grid_sample and 1e-2 for resampled images (and blends of them);
against the exact float32 centre patches the same atol without the float16 term.
"""

import json
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

ATOL_DIRECT = 1e-4
ATOL_RESAMPLED = 1e-2
FLOAT16_RELATIVE = 2.0 ** -10


def read_keys(keys_file: Path):
    """[(key, shape tuple, rule)] from a `.keys.txt` file."""
    entries = []
    for line in Path(keys_file).read_text().splitlines():
        if line.strip():
            key, shape, rule = line.split("\t")
            entries.append((key, tuple(json.loads(shape)), rule))
    return entries


def synthetic_tensor(network_id: str, key: str, shape, rule: str, scale: float) -> np.ndarray:
    seed = zlib.crc32(f"{network_id}/{key}".encode("utf-8"))
    draw = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
    if rule == "normal":
        return draw * np.float32(scale)
    if rule == "norm_weight":
        return np.float32(1) + np.float32(0.1) * draw
    if rule == "norm_bias":
        return np.float32(0.1) * draw
    raise ValueError(f"{network_id}/{key}: unknown weight rule {rule!r}")


def synthetic_state_dict(golden: Path, network_id: str, scale: float) -> "OrderedDict[str, torch.Tensor]":
    """The synthetic weights of `network_id` ("tha1/combiner", ...) at `scale`."""
    keys_file = golden / f"{network_id}.keys.txt"
    return OrderedDict(
        (key, torch.from_numpy(synthetic_tensor(network_id, key, shape, rule, scale)))
        for key, shape, rule in read_keys(keys_file))


def network_scales(golden: Path, network_id: str):
    """(unit-case SCALE, end-to-end SCALE or None) from weights_protocol.json."""
    entry = json.loads((golden / "weights_protocol.json").read_text())["networks"][network_id]
    return entry["scale_unit_cases"], entry.get("scale_end_to_end")


def case_inputs(case, names):
    """The stored forward arguments `in_<name>` as tensors, in the order given."""
    return [torch.from_numpy(case[f"in_{name}"]) for name in names]


def output_names(case):
    """["00_final_image", ...]: every stored output, in forward order."""
    return sorted(k[len("out_"):] for k in case.files if k.startswith("out_"))


def _centre_patch(array: np.ndarray, channels_last: bool) -> np.ndarray:
    if channels_last:
        h, w = array.shape[1:3]
        return array[:, h // 2 - 16:h // 2 + 16, w // 2 - 16:w // 2 + 16, :]
    h, w = array.shape[-2:]
    return array[..., h // 2 - 16:h // 2 + 16, w // 2 - 16:w // 2 + 16]


def compare_output(ours: torch.Tensor, case, name: str, atol: float) -> dict:
    """Differences of one output against the stored tensor, its float32 patch and its float64 means.

    Returns {"excess": worst |diff| - allowed (<= 0 passes), "max_abs": ..., "patch_max_abs": ...}."""
    ours = ours.detach().cpu().float().numpy()
    stored = case[f"out_{name}"]
    assert ours.shape == stored.shape, f"{name}: shape {ours.shape}, golden {stored.shape}"
    stored32 = stored.astype(np.float32)
    diff = np.abs(ours - stored32)
    float16_term = FLOAT16_RELATIVE * np.abs(stored32) if stored.dtype == np.float16 else 0.0
    excess = float(np.max(diff - (atol + float16_term)))
    result = {"max_abs": float(diff.max()), "excess": excess}
    patch_key = f"f32patch_{name}"
    if patch_key in case.files:
        channels_last = name.endswith("_nhwc")
        patch_diff = np.abs(_centre_patch(ours, channels_last) - case[patch_key])
        result["patch_max_abs"] = float(patch_diff.max())
        result["excess"] = max(result["excess"], result["patch_max_abs"] - atol)
        axes = (1, 2) if channels_last else (2, 3)
        mean_diff = np.abs(ours.astype(np.float64).mean(axis=axes) - case[f"mean64_{name}"])
        result["mean_max_abs"] = float(mean_diff.max())
        result["excess"] = max(result["excess"], result["mean_max_abs"] - atol)
    return result


def assert_outputs_match(outputs, case, resampled=()):
    """Every stored output of `case` against `outputs` (the forward's list, same order).

    `resampled` names the outputs (without their index prefix) that are resampled images or blends of them."""
    names = output_names(case)
    assert len(outputs) == len(names), f"forward returned {len(outputs)} outputs, golden has {len(names)}: {names}"
    failures = []
    for ours, name in zip(outputs, names):
        atol = ATOL_RESAMPLED if name[3:] in resampled else ATOL_DIRECT
        result = compare_output(ours, case, name, atol)
        if result["excess"] > 0:
            failures.append(f"{name}: {result} (atol {atol})")
    assert not failures, "outputs differ from the official ones:\n" + "\n".join(failures)
