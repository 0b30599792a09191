#!/usr/bin/env python3
"""Dataset rendering speed: the pipeline's time per image against a bare Blender render of the same scene.

    .venv/bin/python bench/bench_dataset.py [--poses 12] [--engine workbench] [--schema tha1] [MODEL]

One run, one process, the same scene (Gene_light from ../shared by default, else THA Studio's
sample character), after one warm-up render each:

- pipeline: what the batch does per image: set shape keys and bones for the pose, render
  through Targa, zero RGB under transparency, encode the PNG, write it atomically, hash it and
  append a manifest line;
- bare: right after each pipeline image, `bpy.ops.render.render(write_still=True)` of the scene
  as it stands to a PNG, nothing else (Blender's own cost). Interleaving the two makes them
  share the machine's load, so the ratio holds on a busy machine;
- pipeline + import: `render.blender.dataset_run.render_model` for the whole model (annotation, import,
  rest image, examples), per image.

The aims: at most 1.25x the bare render per image, and 3 images per second at 256².

    .venv/bin/python bench/bench_dataset.py --styles workbench,cycles,toon [--poses 4] [MODEL]

compares the render styles instead: per style, a fresh import, one warm-up image, then the
pipeline's time per image for the sampled poses (expression and posed images), in one process.
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


def paired_times(model_path, folder, config):
    """Per image: the pipeline's step, then a bare render of the scene as it stands; interleaved,
    so both see the same machine load."""
    import hashlib

    import bpy

    from tha_studio.pose.schema import get_schema
    from tha_studio.render.dataset import manifest
    from tha_studio.render.dataset.plan import ModelEntry, load_or_make_annotation
    from tha_studio.render.blender.scene import quiet_output
    from tha_studio.render.blender.model_import import import_model
    from tha_studio.render.dataset.sampling import expression_part, sample_pose
    from tha_studio.render.blender.triplets import TripletRenderer

    schema = get_schema(config.schema)
    entry = ModelEntry(model_path.name, model_path, "train")
    annotation = load_or_make_annotation(entry, folder)
    bpy.ops.wm.read_homefile(use_empty=True)
    renderer = TripletRenderer(import_model(model_path), annotation, schema, config.render)
    scene = bpy.context.scene
    journal = folder / "parts" / "paired.jsonl"
    pipeline, bare = [], []
    with quiet_output():
        renderer.render_rest(folder / "warm.png")
        for index in range(config.poses_per_model):
            pose = sample_pose(schema, config.seed, entry.model_id, index)
            for part in (expression_part(schema, pose), pose):
                started = time.perf_counter()
                data = renderer.render(part, folder / f"{index}.png")
                manifest.append_record(journal, {"type": "example", "model": "m", "split": "train", "index": index,
                                                 "sha256": hashlib.sha256(data).hexdigest()})
                pipeline.append(time.perf_counter() - started)
                scene.render.image_settings.file_format = "PNG"
                scene.render.filepath = str(folder / "bare.png")
                scene.render.use_file_extension = False
                started = time.perf_counter()
                bpy.ops.render.render(write_still=True, scene=scene.name)
                bare.append(time.perf_counter() - started)
    return pipeline, bare


def style_times(model_path, folder, config, styles, samples):
    """Seconds per pipeline image for each render style, the same poses for each."""
    import dataclasses

    import bpy

    from tha_studio.pose.schema import get_schema
    from tha_studio.render.blender.scene import quiet_output
    from tha_studio.render.blender.model_import import import_model
    from tha_studio.render.blender.triplets import TripletRenderer
    from tha_studio.render.dataset.plan import ModelEntry, load_or_make_annotation
    from tha_studio.render.dataset.sampling import expression_part, sample_pose

    schema = get_schema(config.schema)
    entry = ModelEntry(model_path.name, model_path, "train")
    annotation = load_or_make_annotation(entry, folder)
    times = {}
    for style in styles:
        bpy.ops.wm.read_homefile(use_empty=True)
        settings = dataclasses.replace(config.render, engine=style, samples=samples)
        renderer = TripletRenderer(import_model(model_path), annotation, schema, settings)
        seconds = []
        with quiet_output():
            renderer.render_rest(folder / f"{style}-warm.png")
            for index in range(config.poses_per_model):
                pose = sample_pose(schema, config.seed, entry.model_id, index)
                for part in (expression_part(schema, pose), pose):
                    started = time.perf_counter()
                    renderer.render(part, folder / f"{style}-{index}.png")
                    seconds.append(time.perf_counter() - started)
        times[style] = statistics.median(seconds)
    return times


def job_run(model_path, folder, config):
    """The batch's whole job for one model (annotation, import, rest, examples): seconds per image."""
    from tha_studio.render.blender.dataset_run import render_model
    from tha_studio.render.dataset import manifest, plan

    entry = plan.ModelEntry(model_path.name, model_path, "train")
    work = plan.ModelWork(entry, rest=True, indices=list(range(config.poses_per_model)))
    journal = folder / "parts" / "job.jsonl"
    records = []

    def emit(record):
        manifest.append_record(journal, record)
        records.append(record)

    started = time.perf_counter()
    render_model(work, config, folder, emit, temp_tag="bench")
    if any(r["type"] == "failure" for r in records):
        raise SystemExit(f"the model failed: {records[-1]['reason']}")
    return (time.perf_counter() - started) / work.images


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", type=Path)
    parser.add_argument("--poses", type=int, default=12, help="sampled poses (2 images each)")
    parser.add_argument("--engine", default="workbench", choices=("workbench", "flat", "cycles", "toon"))
    parser.add_argument("--styles", help="compare these render styles instead (comma-separated, e.g. "
                        "workbench,cycles,toon)")
    parser.add_argument("--samples", type=int, default=16, help="Cycles and toon samples per pixel (default 16)")
    parser.add_argument("--schema", default="tha1", choices=("tha1", "tha2", "tha3"))
    parser.add_argument("--antialias", default="5", help="Workbench anti-aliasing samples (FXAA, 5, 8, ...)")
    args = parser.parse_args()

    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="tha_studio_bench_"))
    sys.path.insert(0, str(ROOT))
    import cli

    cli.load_package(ROOT)
    import bpy

    from tha_studio.render.dataset.plan import DatasetConfig
    from tha_studio.render.dataset.settings import RenderSettings
    from tha_studio.render.formats.mmd import write_character

    model = args.model or (GENE if GENE.is_file() else write_character(tempfile.mkdtemp(prefix="tha_studio_bench_model_")))
    config = DatasetConfig(schema=args.schema, seed=0, poses_per_model=args.poses,
                           render=RenderSettings(engine=args.engine, samples=args.samples, antialias=args.antialias))
    folder = Path(tempfile.mkdtemp(prefix="tha_studio_bench_dataset_"))
    if args.styles:
        styles = args.styles.split(",")
        times = style_times(model, folder / "styles", config, styles, args.samples)
        size = bpy.context.scene.render.resolution_x
        print(f"render styles: {model.name}, {args.schema} {size}x{size}, {args.poses} poses (2 images each), "
              f"{os.cpu_count()} CPUs, pipeline medians (Workbench AA {args.antialias}, "
              f"Cycles/toon {args.samples} samples)")
        print(f"{'style':<10} {'s/image':>8} {'images/s':>9}")
        for style in styles:
            print(f"{style:<10} {times[style]:>8.3f} {1 / times[style]:>9.2f}")
        return

    amortised = job_run(model, folder / "job", config)
    pipeline, bare = paired_times(model, folder / "paired", config)

    size = bpy.context.scene.render.resolution_x
    bare_s = statistics.median(bare)
    pipe_s = statistics.median(pipeline)
    print(f"dataset rendering: {model.name}, {args.schema} {size}x{size}, {args.engine} (AA {args.antialias}), {args.poses} poses, "
          f"{os.cpu_count()} CPUs (medians)")
    print(f"{'':<28} {'s/image':>8} {'images/s':>9} {'x bare':>7}")
    for name, seconds in (("bare Blender render", bare_s), ("pipeline", pipe_s), ("pipeline + import/annotate", amortised)):
        print(f"{name:<28} {seconds:>8.3f} {1 / seconds:>9.2f} {seconds / bare_s:>7.2f}")
    print(f"aims: pipeline <= 1.25x bare ({'met' if pipe_s <= 1.25 * bare_s else 'NOT met'}), "
          f">= 3 images/s ({'met' if 1 / pipe_s >= 3 else 'NOT met'})")


if __name__ == "__main__":
    main()
