"""`torchrun --nproc-per-node 2` on the CPU (gloo): the two processes share each epoch's examples (each
seen once), train on the same global batches as one process, to the same loss within a few percent."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared_assets import ROOT
from train_datasets import HOLD_OUT, THA1_POSES, cli

pytestmark = [pytest.mark.slow, pytest.mark.shared]

TRAIN_EXAMPLES = 2 * (THA1_POSES - HOLD_OUT)  # 64: 16 steps an epoch at batch 4


def run_args(dataset, out):
    return ["train", dataset, out, "--image-size", "32", "--hold-out", HOLD_OUT, "--batch-size", "4", "--epochs", "2",
            "--validation-limit", "2", "--threads", "1", "--log-examples", "--no-progress", "--seed", "1"]


def seen_examples(run):
    """{(step, epoch): [indices of rank 0, of rank 1, ...]} from examples.csv."""
    steps = {}
    for line in (run / "examples.csv").read_text(encoding="utf-8").splitlines():
        step, epoch, rank, indices = line.split(",")
        steps.setdefault((int(step), int(epoch)), {})[int(rank)] = [int(i) for i in indices.split()]
    return {key: [ranks[r] for r in sorted(ranks)] for key, ranks in steps.items()}


def losses(run):
    with open(run / "log.csv", newline="", encoding="utf-8") as handle:
        return [float(r["train_loss"]) for r in csv.DictReader(handle) if r["train_loss"]]


def test_two_processes_see_each_example_once_an_epoch_and_reach_one_process_loss(tha1_dataset, tmp_path):
    one = tmp_path / "one"
    cli(*run_args(tha1_dataset, one))
    two = tmp_path / "two"
    torchrun = Path(sys.executable).with_name("torchrun")
    result = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", str(ROOT / "cli.py"),
                             *map(str, run_args(tha1_dataset, two))], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout + result.stderr

    one_seen, two_seen = seen_examples(one), seen_examples(two)
    assert len(two_seen) == len(one_seen) == 2 * TRAIN_EXAMPLES // 4
    for epoch in (0, 1):
        steps = [ranks for (step, e), ranks in sorted(two_seen.items()) if e == epoch]
        assert all(len(ranks) == 2 and len(ranks[0]) == len(ranks[1]) == 2 for ranks in steps)
        indices = [i for ranks in steps for shard in ranks for i in shard]
        assert sorted(indices) == list(range(TRAIN_EXAMPLES))  # each example once, across the ranks
    for key, ranks in two_seen.items():  # the global batch is the one a single process takes
        assert sorted(ranks[0] + ranks[1]) == sorted(one_seen[key][0])

    single, double = losses(one), losses(two)
    assert len(single) == len(double) == 32
    print(f"last 8 steps' mean loss: one process {sum(single[-8:]) / 8:.5f}, two {sum(double[-8:]) / 8:.5f}")
    assert abs(sum(double[-8:]) - sum(single[-8:])) < 0.03 * sum(single[-8:])
    assert (two / "weights.safetensors").exists() and (two / "checkpoints").is_dir()
