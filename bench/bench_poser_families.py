#!/usr/bin/env python3
"""Poser speed for THA1, THA2 and the THA4 student: seconds per frame on 2 CPU threads.

    .venv/bin/python bench/bench_poser_families.py [--families tha1 tha2 tha4] [--batches 1 8] [--repeats 3]

For each family and batch size, after one warm-up call, the median of `--repeats` calls of:

- cached:   `poser.pose(batch)` with the picture set once (its pose-independent work done already:
            THA2's eyebrow decomposer, THA4's premultiplication; THA1 has none);
- uncached: `poser.set_image(picture)` then `poser.pose(batch)` every call;
- onnxruntime: the cached call on the ONNX Runtime poser (neural/ort) with the same weights, timed
            in turns with the torch poser's cached call; "x torch" is torch's time over its time,
            and "max |diff|" the largest difference between the two backends' pictures as they
            composite (colour times alpha, and alpha, in [0, 1]): where alpha is ~0 the straight
            colour is arbitrary (THA4 divides by an alpha of 1e-7 there).

Weights: THA1 and THA2 use the golden synthetic weights (the amount of computation does not depend
on the values; no official THA1/THA2 files are shipped here); THA4 uses the real lambda_00 student
from ../shared when present, else synthetic ones. Wall time and the process's CPU time are both
printed: the machine may be shared, and CPU time shows how much of the wall time was ours.
Official code on this kind of machine (PROTOCOL.md §12, 2 threads, batch 1): THA1 3.26 s, THA2
3.23 s uncached / 3.46 s cached, THA4 lambda_00 2.11 s.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("THA_STUDIO_SHARED", ROOT.parent / "shared"))
THA4_CHARACTER = SHARED / "assets" / "golden" / "tha4_lambda_00"
OFFICIAL_BATCH1 = {"tha1": "3.26", "tha2": "3.23 / 3.46", "tha4": "2.11"}


def import_package():
    sys.path.insert(0, str(ROOT))
    import cli

    cli.load_package(ROOT)


def make_poser(family):
    """(Poser, picture tensor, description of the weights)."""
    import torch

    from tha_studio.neural import weights
    from tha_studio.neural.poser import Poser
    from tha_studio.neural.synthetic import synthetic_state_dict

    if family == "tha4" and (THA4_CHARACTER / "face_morpher.pt").is_file():
        weight_set = weights.open_weights(THA4_CHARACTER)
        source = "real lambda_00"
    else:
        module = weights.family_module(family)
        variant = module.VARIANTS[0]
        state_dicts = {
            name: synthetic_state_dict(module.build_network(name, variant), f"{family}/{name}", 0.05)
            for name in module.NETWORKS
        }
        weight_set = weights.WeightSet(family, variant, state_dicts)
        source = "synthetic"
    poser = Poser(weight_set, device="cpu", precision="float32")
    size = poser.image_size
    # A picture-like input: an opaque disc on a transparent background.
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    inside = (x**2 + y**2 < 0.5).float()[None]
    rgba = torch.cat([torch.rand(3, size, size) * inside, inside])  # RGB 0 where alpha is 0
    picture = (rgba * 2 - 1)[None]
    return poser, picture, source


def timed(call, repeats, warm_up=True):
    """Median wall and CPU seconds of `repeats` calls, after one warm-up call."""
    if warm_up:
        call()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def composited(images):
    """Network images (B, 4, H, W) in [-1, 1] -> colour times alpha, and alpha, in [0, 1]."""
    import numpy as np

    alpha = (images[:, 3:4] + 1) / 2
    return np.concatenate([(images[:, :3] + 1) / 2 * alpha, alpha], axis=1)


def ort_poser(poser):
    from tha_studio.neural.ort.poser import OrtPoser
    from tha_studio.neural.ort.weight_sources import WeightSet

    weights = poser.weights
    arrays = {n: {k: v.detach().float().numpy() for k, v in s.items()} for n, s in weights.state_dicts.items()}
    return OrtPoser(WeightSet(weights.family, weights.variant, arrays, weights.sources), device="cpu", threads=2)


def bench_family(family, batches, repeats):
    import numpy as np

    poser, picture, source = make_poser(family)
    runtime = ort_poser(poser)
    rows = []
    for batch in batches:
        poses = np.random.default_rng(0).uniform(0, 0.5, (batch, poser.schema.size)).astype(np.float32)
        poser.set_image(picture)
        runtime.set_image(picture.numpy())
        difference = float(np.abs(composited(runtime.pose(poses)) - composited(poser.pose(poses).numpy())).max())
        # In turns, so that the machine's load falls on both backends alike.
        torch_times, ort_times = [], []
        for _ in range(repeats):
            torch_times.append(timed(lambda: poser.pose(poses), 1, warm_up=False))
            ort_times.append(timed(lambda: runtime.pose(poses), 1, warm_up=False))
        cached = tuple(statistics.median(t[i] for t in torch_times) for i in (0, 1))
        onnx = tuple(statistics.median(t[i] for t in ort_times) for i in (0, 1))

        def uncached_call():
            poser.set_image(picture)
            poser.pose(poses)

        uncached = timed(uncached_call, repeats)
        for label, (wall, cpu) in (("cached", cached), ("uncached", uncached)):
            rows.append((family, source, batch, label, wall / batch, cpu / batch, ""))
        rows.append((family, source, batch, "onnxruntime", onnx[0] / batch, onnx[1] / batch,
                     f"{cached[0] / onnx[0]:.2f}x torch, max |diff| {difference:.1e}"))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=["tha1", "tha2", "tha4"], choices=["tha1", "tha2", "tha4"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per row, after one warm-up (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args(argv)

    import_package()
    import torch

    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average before: "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    header = ("family", "weights", "batch", "mode", "wall s/frame", "cpu s/frame", "vs torch cached",
              "official b1 s/frame (goldens' run)")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for family in args.families:
        for family_name, source, batch, label, wall, cpu, versus in bench_family(family, args.batches, args.repeats):
            official = OFFICIAL_BATCH1[family_name] if batch == 1 else ""
            print(f"{family_name} | {source} | {batch} | {label} | {wall:.3f} | {cpu:.3f} | {versus} | {official}",
                  flush=True)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
