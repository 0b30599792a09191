#!/usr/bin/env python3
"""THA3 poser speed on 2 CPU threads: seconds per frame, step by step.

    .venv/bin/python bench/bench_poser.py [--variants separable_float ...] [--batches 1 8]
                                          [--repeats 5] [--compile] [--families]

Frames: a lip-sync-like sequence (mouth shapes, blinks, a head sway; eyebrows held), the
common animation case. For each variant and batch size, after a warm-up call, the median (and
minimum) wall time and the process CPU time of `--repeats` calls, per frame, and the largest
difference of the images from step 1's (golden tolerance for real weights: 5e-4; with
synthetic weights only a rough check, as random networks amplify rounding), for the steps:

  1 eager           the networks as the official code runs them: NCHW, PyTorch's instance-norm
                    kernel, and every call redoes the per-picture work (`set_image` then `pose`)
  2 +group norm     instance norm computed by the group-norm kernel (same maths, faster on CPU)
  3 +cached picture the per-picture work done once (eyebrow decomposer, eyebrow combiner
                    encoder) and the face-morpher encoder reused per eyebrow pose
  4 +channels-last  NHWC activations (convolutions; norms fall back to the instance-norm kernel)
Steps 1-4 run the networks one frame at a time (the Poser's CPU default): measured here, batch 8
in one pass took 1.50 s/frame against 1.10 s/frame for single frames, activations no longer
fitting in cache.
  5 +compiled       torch.compile (inductor, frozen weights) on step 3's layout, one frame at
                    a time (--compile)

Weights: the real separable_float files from the tha3 package when installed, else (and for
the other variants) the golden synthetic rule; the amount of computation does not depend on the
values. Half variants run in float32 on the CPU (the Poser's "auto" precision: CPU float16
kernels are slow and some are missing), so their speed equals the float variant's.
The official code on a quiet 2-CPU machine of this kind (shared/assets/golden/PROTOCOL.md §12):
separable_float 1.91 s uncached / 1.84 s cached, standard_float 3.26 / 3.09 s per frame.
The machine may be shared: CPU time shows how much of the wall time was this process's work.
`--families` also runs bench_poser_families.py (THA1, THA2, THA4 student).
`--keep-freed-memory` first applies neural.poser.keep_freed_memory() (glibc keeps freed blocks):
on this VM that took eager separable_float from 1.04 to 0.61 s/frame (page faults of freshly
mapped activations), so compare runs with and without it, never across.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("separable_float", "separable_half", "standard_float", "standard_half")
OFFICIAL = {"separable_float": 1.91, "standard_float": 3.26}


def import_package():
    sys.path.insert(0, str(ROOT))
    import cli

    cli.load_package(ROOT)


def weight_set(variant):
    import torch

    from tha_studio.neural import tha3, weights
    from tha_studio.neural.synthetic import synthetic_state_dict

    if variant == "separable_float" and weights.tha3_package_data() is not None:
        return weights.open_weights("tha3"), "real"
    dtype = tha3.variant_dtype(variant)
    float_variant = variant.replace("_half", "_float")
    state_dicts = {}
    for name in tha3.NETWORKS:
        network = tha3.build_network(name, float_variant)
        # The end-to-end scale: at the unit scale (0.05) the chained random networks amplify
        # rounding differences to O(1) (PROTOCOL.md §2), which would hide real differences.
        state = synthetic_state_dict(network, f"tha3_{float_variant}/{name}", 0.01)
        state_dicts[name] = {k: v.to(dtype) for k, v in state.items()}
    return weights.WeightSet("tha3", variant, state_dicts), "synthetic"


def animation_poses(count):
    """`count` frames of talking: mouth shapes, a blink, a slow head sway; eyebrows held."""
    import numpy as np

    from tha_studio.pose.schema import THA3

    frames = []
    mouths = ("mouth_aaa", "mouth_iii", "mouth_uuu", "mouth_eee", "mouth_ooo")
    for i in range(count):
        values = {mouths[i % 5]: 0.4 + 0.6 * ((i * 7) % 10) / 10, "eyebrow_happy_left": 0.3, "eyebrow_happy_right": 0.3}
        if i % 6 == 3:
            values.update(eye_wink_left=1.0, eye_wink_right=1.0)
        values.update(head_y=0.3 * np.sin(i / 4), neck_z=0.1 * np.cos(i / 5), breathing=(i % 10) / 10)
        frames.append(THA3.vector(values))
    return np.stack(frames)


def frame_call(poser, picture, poses, redo_picture):
    """Seconds (wall, CPU) of one call, and the images."""
    wall, cpu = time.perf_counter(), time.process_time()
    if redo_picture:
        poser.set_image(picture)
    images = poser.pose(poses)
    return time.perf_counter() - wall, time.process_time() - cpu, images


def steps(compile_too):
    # (name, Poser options, group-norm kernel on, redo the picture's work every call)
    yield "1 eager", {}, False, True
    yield "2 +group norm", {}, True, True
    yield "3 +cached picture", {}, True, False
    yield "4 +channels-last", {"channels_last": True}, True, False
    if compile_too:
        yield "5 +compiled", {"compile": True}, True, False


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (several minutes of compiling)")
    parser.add_argument("--families", action="store_true", help="then run bench_poser_families.py")
    parser.add_argument(
        "--keep-freed-memory", action="store_true", help="call neural.poser.keep_freed_memory() first (glibc malloc tuning)"
    )
    args = parser.parse_args()

    import torch

    import_package()
    from tha_studio.neural import blocks
    from tha_studio.neural.poser import Poser

    torch.set_num_threads(2)
    if args.keep_freed_memory:
        from tha_studio.neural.poser import keep_freed_memory

        print(f"keep_freed_memory: {keep_freed_memory()}")
    from tha_studio.neural.weights import tha3_package_data

    data = tha3_package_data()
    picture = data / "images/crypko_00.png" if data else None
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    header = f"{'variant':16s} {'weights':9s} {'step':18s} {'batch':>5s} {'s/frame':>8s} {'min':>7s} {'CPU s':>7s} {'vs eager':>8s} {'max diff':>8s}"
    print(header)
    print("-" * len(header))
    for variant in args.variants:
        weights, source = weight_set(variant)
        if picture is None:
            picture_tensor = torch.rand(1, 4, 512, 512) * 2 - 1
        for batch in args.batches:
            poses = animation_poses(batch)
            # Every step is set up and warmed up (compiled) first, then timed in turns, so
            # that a change in the machine's load falls on all steps alike.
            runs = []
            for name, options, group_norm, redo in steps(args.compile):
                blocks.InstanceNorm.use_group_norm = group_norm
                poser = Poser(weights, device="cpu", **options)
                poser.set_image(picture or picture_tensor)
                images = poser.pose(poses)
                runs.append((name, poser, group_norm, redo, images, []))
            for _ in range(args.repeats):
                for name, poser, group_norm, redo, images, times in runs:
                    blocks.InstanceNorm.use_group_norm = group_norm
                    times.append(frame_call(poser, picture or picture_tensor, poses, redo)[:2])
            eager_median = statistics.median(t[0] for t in runs[0][5])
            for name, poser, group_norm, redo, images, times in runs:
                n = len(poses)
                median = statistics.median(t[0] for t in times) / n
                fastest = min(t[0] for t in times) / n
                cpu = statistics.median(t[1] for t in times) / n
                difference = (images - runs[0][4]).abs().max().item()
                print(
                    f"{variant:16s} {source:9s} {name:18s} {batch:5d} {median:8.3f} {fastest:7.3f} {cpu:7.3f} "
                    f"{eager_median / n / median:7.2f}x {difference:8.1e}",
                    flush=True,
                )
            del runs
        if variant in OFFICIAL:
            print(f"{variant:16s} official code, batch 1, quiet machine (PROTOCOL.md §12): {OFFICIAL[variant]:.2f} s/frame")
    blocks.InstanceNorm.use_group_norm = True
    if args.families and (ROOT / "bench/bench_poser_families.py").is_file():
        import subprocess

        subprocess.run([sys.executable, str(ROOT / "bench/bench_poser_families.py")], check=False)


if __name__ == "__main__":
    main()
