#!/usr/bin/env python3
"""How fast the pure MMD reader and writer are (no Blender): read, write and the character.

    .venv/bin/python bench/bench_mmd_parse.py [--repeat 10] [MODEL ...]

Without models it times ../shared's Gene_light.pmx, the babylon-mmd edge cases and THA Studio's
procedural character. For each model: read (file to Model), to_bytes (Model to PMX bytes) and
whether the written bytes equal the file's; the table gives the median and fastest of the runs.
The Blender build time is in bench/bench_import.py; Gene_light's aim is under 1 s for both.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import cli  # noqa: E402

cli.load_package(ROOT)

from tha_studio.render.formats.mmd import pmx, procedural, read_model  # noqa: E402

MMD = ROOT.parent / "shared" / "assets" / "mmd"


def timed(function, repeat):
    seconds, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - started)
    return result, statistics.median(seconds), min(seconds)


def default_models(folder):
    models = [MMD / "gene_light" / "Gene_light.pmx", *sorted((MMD / "edge_cases").glob("*.pmx"))]
    models = [m for m in models if m.exists()]
    return models + [procedural.write_character(folder)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", type=Path, help=".pmx/.pmd files (default: ../shared's and ours)")
    parser.add_argument("--repeat", type=int, default=10, help="runs per model")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        models = args.models or default_models(folder)
        print(f"{'model':28} {'bytes':>10} {'verts':>7} {'tris':>7} {'read ms (min)':>15} "
              f"{'write ms (min)':>15} {'identical':>9}")
        for path in models:
            model, read_median, read_min = timed(lambda: read_model(path), args.repeat)
            data, write_median, write_min = timed(lambda: pmx.to_bytes(model), args.repeat)
            identical = "yes" if data == path.read_bytes() else ("n/a" if model.format == "pmd" else "no")
            print(f"{path.name[:28]:28} {path.stat().st_size:>10,} {model.vertex_count:>7,} {len(model.faces):>7,} "
                  f"{read_median * 1000:>8.1f} ({read_min * 1000:>4.1f}) {write_median * 1000:>8.1f} ({write_min * 1000:>4.1f}) "
                  f"{identical:>9}")
        _, make_median, make_min = timed(procedural.make_character, args.repeat)
        print(f"\nprocedural.make_character(): {make_median * 1000:.1f} ms median ({make_min * 1000:.1f} fastest)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
