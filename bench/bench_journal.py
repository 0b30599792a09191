#!/usr/bin/env python3
"""Dataset journal cost at scale: appends, the start of a run (read_progress) and the merge.

    .venv/bin/python bench/bench_journal.py [--lines 1000000] [--schema tha1] [--poses 16]

Builds a synthetic shard journal of N lines in a temporary folder (one model record and
`--poses` example records per model, poses of the schema's size with float32 values, as
`render-dataset` writes them; written in bulk, not synced line by line) and prints:

- append: the median cost of one `manifest.append_record` (synced) at several journal sizes,
  beside the cost of reading the whole journal once, which is what every append paid before;
- start: `read_progress` of the journal, as a run does before planning;
- merge: `manifest.merge` of the journal into manifest.jsonl and failures.jsonl, as every
  single-shard run does at its end.

Start and merge each run in a fresh process, so their peak memory (maximum resident set) is
theirs alone. Figures only; nothing is asserted.
"""

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load():
    sys.path.insert(0, str(ROOT))
    import cli

    cli.load_package(ROOT)
    from tha_studio.render.dataset import manifest

    return manifest


def synthetic_lines(manifest, count, pose_size, poses):
    """`count` journal lines: model records, each followed by its examples (a failure every 50 models)."""
    rng = random.Random(0)
    import numpy as np

    made, model = 0, 0
    while made < count:
        model_id = f"source{model % 7}/author{model % 131}/model_{model:07d}.pmx"
        folder = f"images/train/model_{model:07d}-{model:010x}"
        if model % 50 == 49:
            yield manifest.dumps({"type": "failure", "model": model_id, "split": "train", "reason": "lacks eyes"}) + "\n"
            made, model = made + 1, model + 1
            continue
        yield manifest.dumps({"type": "model", "model": model_id, "split": "train", "rest": f"{folder}/rest.png",
                              "sha256": {"rest": "%064x" % rng.getrandbits(256)}, "available": ["a", "b"]}) + "\n"
        made += 1
        for index in range(poses):
            if made >= count:
                break
            pose = [float(v) for v in np.float32([rng.uniform(-1, 1) for _ in range(pose_size)])]
            yield manifest.dumps({"type": "example", "model": model_id, "split": "train", "index": index, "pose": pose,
                                  "expression": f"{folder}/{index:06d}_expression.png",
                                  "posed": f"{folder}/{index:06d}_posed.png",
                                  "sha256": {"expression": "%064x" % rng.getrandbits(256),
                                             "posed": "%064x" % rng.getrandbits(256)}}) + "\n"
            made += 1
        model += 1


def append_costs(manifest, journal, lines, sizes, appends=30):
    """(size, median append seconds, seconds to read the whole journal once) at each size."""
    rows, written = [], 0
    extra = {"type": "failure", "model": "zz/appended.pmx", "split": "train", "reason": "bench"}
    with open(journal, "a", encoding="utf-8") as handle:
        for size in sizes:
            while written < size:
                handle.write(next(lines))
                written += 1
            handle.flush()
            # Appends then cut back, so the journal keeps its size for the next step.
            length = handle.tell()
            times = []
            for _ in range(appends):
                started = time.perf_counter()
                manifest.append_record(journal, extra)
                times.append(time.perf_counter() - started)
            os.truncate(journal, length)
            started = time.perf_counter()
            journal.read_bytes()
            rows.append((size, statistics.median(times), time.perf_counter() - started))
    return rows


def phase(kind, folder):
    """In a fresh process: time one start or merge, print seconds and peak memory as JSON."""
    manifest = load()
    journals = manifest.journal_paths(folder)
    started = time.perf_counter()
    if kind == "start":
        manifest.read_progress(journals)
    else:
        manifest.merge(folder)
    seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_mib": peak_kib / 1024}))


def run_phase(kind, folder):
    output = subprocess.run([sys.executable, __file__, "--phase", kind, str(folder)], check=True,
                            capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000, help="journal lines (default 1,000,000)")
    parser.add_argument("--schema", default="tha1", choices=("tha1", "tha2", "tha3"), help="pose size of the records")
    parser.add_argument("--poses", type=int, default=16, help="examples per model")
    parser.add_argument("--phase", nargs=2, metavar=("KIND", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        return phase(args.phase[0], Path(args.phase[1]))

    manifest = load()
    from tha_studio.pose.schema import get_schema

    pose_size = get_schema(args.schema).size
    folder = Path(tempfile.mkdtemp(prefix="tha_studio_bench_journal_"))
    try:
        journal = folder / manifest.PARTS_FOLDER / "shard-1-of-1.jsonl"
        journal.parent.mkdir(parents=True)
        sizes = sorted({s for s in (1_000, 10_000, 100_000, args.lines) if s <= args.lines})
        lines = synthetic_lines(manifest, args.lines, pose_size, args.poses)
        appends = append_costs(manifest, journal, lines, sizes)
        megabytes = journal.stat().st_size / 1e6
        start = run_phase("start", folder)
        merge = run_phase("merge", folder)

        print(f"dataset journal: {args.lines:,} lines ({megabytes:,.0f} MB), {args.schema} poses of {pose_size}, "
              f"{args.poses} examples per model, {os.cpu_count()} CPUs")
        print(f"{'journal lines':>14} {'append ms':>10} {'read whole journal ms (old append)':>36}")
        for size, append_s, read_s in appends:
            print(f"{size:>14,} {append_s * 1e3:>10.2f} {read_s * 1e3:>36.1f}")
        print(f"{'':<22} {'seconds':>8} {'peak MiB':>9}")
        print(f"{'start (read_progress)':<22} {start['seconds']:>8.1f} {start['peak_mib']:>9.0f}")
        print(f"{'merge':<22} {merge['seconds']:>8.1f} {merge['peak_mib']:>9.0f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
