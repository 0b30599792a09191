"""Helpers for comparing our networks with the golden tensors of the official code.

shared/assets/golden/PROTOCOL.md §5 and §10: outputs are stored as float16 plus exact float32
centre patches and float64 per-channel means. Tolerances follow §10: |ours - stored| <= atol +
2^-10 |stored| against float16, atol alone against the float32 patches; atol is small for
outputs that do not pass through a grid_sample and larger for resampled images, whose error is
the grid's rounding times the image gradient at sharp alpha edges.
"""

import json
from pathlib import Path

import numpy as np
import torch

# Outputs that are resampled images, or blends of them (PROTOCOL.md §10).
RESAMPLED = {
    "eyebrow_image",
    "eyebrow_image_no_combine_alpha",
    "morphed_eyebrow_layer",
    "warped_eyebrow_layer",
    "output_image",
    "iris_mouth_image_1",
    "iris_mouth_image_0",
    "warped_image",
    "color_changed_image",
    "resampled_image",
}
ATOL_PLAIN = 1e-4
ATOL_RESAMPLED = 1e-2


# Synthetic weights chain five networks that amplify float32 rounding, by an amount that depends on
# the CPU's kernels (their order of summation): the official code's own float32 THA2 run is 1.9e-3
# to 2.5e-3 from its float64 run (PROTOCOL.md §8); our float32 torch poser on an AVX2 EPYC 4.9e-3 to
# 5.4e-3 from ours. A wrong crop, slice or blend moves the picture by O(0.1), a wrong sign of a
# term by more than the mean bound. Exactness is checked in float64 (`float64_reference`).
END_TO_END_ATOL = 1e-2
END_TO_END_MEAN_ATOL = 2e-4


def assert_end_to_end_near(name, posed, stored):
    """A float32 posed picture within END_TO_END_ATOL of the official one at most, and
    END_TO_END_MEAN_ATOL on average."""
    difference = np.abs(posed - stored)
    assert difference.max() < END_TO_END_ATOL, f"{name}: max difference {difference.max():.2e}"
    assert difference.mean() < END_TO_END_MEAN_ATOL, f"{name}: mean difference {difference.mean():.2e}"


def float64_reference(weights, image, poses):
    """(B, 4, H, W) numpy: the torch poser over `weights` (a WeightSet) in float64, what float32
    rounding is measured against."""
    from tha_studio.neural.poser import Poser

    poser = Poser(weights, device="cpu", precision="float32")
    for network in poser.networks.values():
        network.double()
    poser.dtype = torch.float64
    poser.set_image(image.double())
    return poser.pose(poses).numpy()


def keys_of(keys_file):
    """[(key, shape)] of a `.keys.txt` state_dict listing."""
    rows = [line.split("\t") for line in Path(keys_file).read_text().splitlines() if line.strip()]
    return [(key, tuple(json.loads(shape))) for key, shape, _rule in rows]


def case_inputs(npz):
    """The forward arguments, in order (`in_<name>` keys as stored)."""
    return [torch.from_numpy(npz[name]) for name in npz.files if name.startswith("in_")]


def output_names(npz):
    """[(index, name)] of the stored outputs."""
    names = []
    for key in npz.files:
        if key.startswith("out_"):
            index, name = key[4:].split("_", 1)
            names.append((int(index), name))
    return sorted(names)


def compare_output(name, ours, npz, index):
    """(max diff vs float16 beyond the float16 term, max diff vs float32 patch, max mean diff)."""
    ours = ours.detach().float().cpu().numpy()
    stored = npz[f"out_{index:02d}_{name}"].astype(np.float32)
    assert ours.shape == stored.shape, f"{name}: shape {ours.shape}, golden {stored.shape}"
    excess = np.abs(ours - stored) - 2.0**-10 * np.abs(stored)
    stored_patch = npz[f"f32patch_{index:02d}_{name}"]
    if name.endswith("_nhwc"):
        # (n, h, w, 2) as the official code returns it; patches and means are over h, w per channel.
        ours, stored_patch = np.moveaxis(ours, -1, 1), np.moveaxis(stored_patch, -1, 1)
    h, w = ours.shape[-2:]
    patch = ours[..., h // 2 - 16 : h // 2 + 16, w // 2 - 16 : w // 2 + 16]
    patch_diff = np.abs(patch - stored_patch).max()
    mean_diff = np.abs(ours.astype(np.float64).mean(axis=(2, 3)) - npz[f"mean64_{index:02d}_{name}"]).max()
    return float(excess.max()), float(patch_diff), float(mean_diff)


def assert_outputs_match(outputs, npz, label, resampled=()):
    """Every stored output of one official forward against ours (a list in official order).

    `resampled` adds output names that are resampled in this network only (e.g. THA4's final_image)."""
    checked = 0
    for index, name in output_names(npz):
        atol = ATOL_RESAMPLED if name in RESAMPLED or name in resampled else ATOL_PLAIN
        excess, patch_diff, mean_diff = compare_output(name, outputs[index], npz, index)
        assert excess <= atol, f"{label} {name}: differs from golden float16 by {excess:.2e} beyond rounding"
        assert patch_diff <= atol, f"{label} {name}: centre patch differs from golden float32 by {patch_diff:.2e}"
        assert mean_diff <= atol / 10, f"{label} {name}: channel means differ from golden by {mean_diff:.2e}"
        checked += 1
    assert checked == len(outputs), f"{label}: {checked} golden outputs for {len(outputs)} of ours"
