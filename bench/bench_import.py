#!/usr/bin/env python3
"""How long importing an MMD model takes: parse (pure reader) and build (Blender objects), apart.

    .venv/bin/python bench/bench_import.py [--repeat 5] [MODEL ...]

Without models it times ../shared's Gene_light.pmx and THA Studio's sample character. Each
run starts from an empty scene; the table gives the median and the fastest of the runs. The
aim for Gene_light is under 1 s in total.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENE = ROOT.parent / "shared" / "assets" / "mmd" / "gene_light" / "Gene_light.pmx"


def time_import(path, repeat):
    import bpy

    from tha_studio.render.blender import model_import
    from tha_studio.render.formats.mmd import read_model

    parse, build, steps = [], [], {}
    for _ in range(repeat):
        bpy.ops.wm.read_homefile(use_empty=True)
        started = time.perf_counter()
        model = read_model(path)
        parsed = time.perf_counter()
        imported = model_import.build_model(model, path.stem, path.parent, source=path)
        for step, seconds in imported.timings["build steps"].items():
            steps.setdefault(step, []).append(seconds)
        parse.append(parsed - started)
        build.append(time.perf_counter() - parsed)
    totals = [p + b for p, b in zip(parse, build)]
    return model, parse, build, totals, steps


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="*", type=Path)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="tha_studio_bench_"))
    sys.path.insert(0, str(ROOT))
    import cli

    cli.load_package(ROOT)
    from tha_studio.render.formats.mmd import write_character

    models = list(args.models)
    if not models:
        if GENE.is_file():
            models.append(GENE)
        models.append(write_character(tempfile.mkdtemp(prefix="tha_studio_bench_model_")))

    print(f"import time, {args.repeat} runs each (median / fastest, seconds), {os.cpu_count()} CPUs")
    print(f"{'model':<24} {'vertices':>8} {'faces':>7} {'bones':>5} {'morphs':>6} "
          f"{'parse':>13} {'build':>13} {'total':>13}")
    all_steps = {}
    for path in models:
        model, parse, build, totals, steps = time_import(Path(path), args.repeat)
        all_steps[Path(path).name] = steps
        cells = [f"{statistics.median(v):.3f} / {min(v):.3f}" for v in (parse, build, totals)]
        print(f"{Path(path).name:<24} {len(model.positions):>8} {len(model.faces):>7} {len(model.bones):>5} "
              f"{len(model.morphs):>6} {cells[0]:>13} {cells[1]:>13} {cells[2]:>13}")
    print()
    print("build steps (median seconds)")
    for name, steps in all_steps.items():
        print(f"{name:<24} " + "  ".join(f"{step} {statistics.median(v):.3f}" for step, v in steps.items()))


if __name__ == "__main__":
    main()
