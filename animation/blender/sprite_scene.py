"""A scene built around talking-head sprites: camera, render settings, keyframes from a file,
frames or a video out. Used by the command line; the interface uses the user's own scene.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
from pathlib import Path

import bpy

from ...errors import UserError
from ... import json_text
from ...input_files import not_a_file, read_text
from ...lipsync.curves import MAX_FRAME
from ...pose.colour_space import linear_to_srgb
from ...render.blender import scene as scenes
from . import sprite as sprites

ENGINES = {"workbench": "WORKBENCH", "cycles": "CYCLES", "eevee": "EEVEE"}


class KeyframeFileError(UserError):
    """A pose keyframe file that cannot be read; the message names the file and the line."""


def read_keyframes(path):
    """{frame: {parameter: value}} from a JSON or CSV file.

    JSON: {"frames": {"1": {"mouth_aaa": 0.0}, "12": {"mouth_aaa": 1.0}}} (or that inner mapping).
    CSV: a header `frame,<parameter>,<parameter>...` and one row per keyed frame; an empty cell
    keys nothing for that parameter. Separated by semicolons (decimal commas then read as
    points) or tabs where the header is.
    """
    path = Path(path)
    if kind := not_a_file(path):
        raise KeyframeFileError(f"{path}: is {kind}, not a keyframe file")
    try:
        text = read_text(path)
    except OSError as error:
        raise KeyframeFileError(f"{path}: cannot read ({error.strerror or error})") from None
    except UnicodeDecodeError as error:  # (Excel's plain "CSV" is the Windows code page's, not UTF-8)
        line = error.object[: error.start].count(b"\n") + 1
        raise KeyframeFileError(f"{path}: line {line}: not UTF-8 text (byte 0x{error.object[error.start]:02x}); "
                                "save it as UTF-8 (in Excel: CSV UTF-8)") from None
    if path.suffix.lower() == ".json":
        return _keyframes_from_json(text, path)
    if path.suffix.lower() == ".csv":
        return _keyframes_from_csv(text, path)
    raise KeyframeFileError(f"{path}: keyframes must be a .json or .csv file")


def _keyframes_from_json(text, path):
    try:
        data = json_text.loads(text)
    except json.JSONDecodeError as error:
        raise KeyframeFileError(f"{path}: line {error.lineno}: not JSON ({error.msg})") from None
    frames = data.get("frames", data) if isinstance(data, dict) else None
    if not isinstance(frames, dict):
        raise KeyframeFileError(f'{path}: expected {{"frames": {{"<frame>": {{"<parameter>": value}}}}}}')
    keyed = {}
    for frame, values in frames.items():
        if not isinstance(values, dict):
            raise KeyframeFileError(f"{path}: frame {frame}: expected a mapping of parameter to value")
        number = _frame_number(frame, path, f"frame {frame!r}")
        if number in keyed:  # ("1" and "01"): one of them would be lost without a word
            raise KeyframeFileError(f"{path}: frame {number} is keyed twice ({frame!r} and an earlier spelling)")
        keyed[number] = {str(name): _number(value, path, f"frame {frame}, {name}") for name, value in values.items()}
    return keyed


def _keyframes_from_csv(text, path):
    lines = text.splitlines()
    # A spreadsheet where the decimal mark is a comma (German, French, ...) saves its CSV with
    # semicolons, and a table pasted from one is tab-separated: the header's first separator says.
    separator = next((mark for mark in ",;\t" if lines and lines[0].strip().lower().startswith("frame" + mark)), ",")
    reader = csv.reader(lines, delimiter=separator)
    try:
        rows = list(reader)
    except csv.Error as error:  # (a cell over the csv module's 128 KiB, say)
        raise KeyframeFileError(f"{path}: line {reader.line_num}: {error}") from None
    if not rows or not rows[0] or rows[0][0].strip().lower() != "frame":
        raise KeyframeFileError(f"{path}: line 1: the header must start with 'frame'")
    decimal_comma = separator != ","
    names = [name.strip() for name in rows[0][1:]]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise KeyframeFileError(f"{path}: line 1: the header names {', '.join(twice)} twice")
    keyed, lines = {}, {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(names) + 1:
            raise KeyframeFileError(f"{path}: line {line}: {len(row)} cells, the header has {len(names) + 1}")
        frame = _frame_number(row[0], path, f"line {line}")
        if frame in keyed:
            raise KeyframeFileError(f"{path}: line {line}: frame {frame} is keyed again (first on line {lines[frame]})")
        lines[frame] = line
        keyed[frame] = {name: _number(cell.replace(",", ".") if decimal_comma else cell, path, f"line {line}, {name}",
                                      written=cell)
                        for name, cell in zip(names, row[1:]) if cell.strip()}
    return keyed


def _frame_number(text, path, where):
    try:
        frame = int(str(text).strip())
    except ValueError:
        raise KeyframeFileError(f"{path}: {where}: {text!r} is not a frame number") from None
    if not 0 <= frame <= MAX_FRAME:
        raise KeyframeFileError(f"{path}: {where}: frame {frame} is outside Blender's frames 0 to {MAX_FRAME:,}")
    return frame


def _number(value, path, where, written=None):
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise KeyframeFileError(f"{path}: {where}: {value if written is None else written!r} is not a number")
    return number


def key_from_file(obj, path):
    """Keyframe a sprite's sliders from a keyframe file; returns the keyed frame range."""
    keyed = read_keyframes(path)
    if not keyed:
        raise KeyframeFileError(f"{path}: no keyframes")
    keys = sprites.sliders(obj)
    for frame, values in keyed.items():
        unknown = sorted(set(values) - set(keys))
        if unknown:
            raise KeyframeFileError(f"{path}: frame {frame}: {obj.name} has no slider {unknown[0]!r}")
        for name, value in values.items():  # (a slider would clamp it without a word)
            low, high = keys[name].slider_min, keys[name].slider_max
            if not low - 1e-6 <= value <= high + 1e-6:
                raise KeyframeFileError(f"{path}: frame {frame}, {name}: {value:g} is outside [{low:g}, {high:g}]")
    for frame, values in keyed.items():
        sprites.key_pose(obj, values, frame)
    return min(keyed), max(keyed)


def frame_camera(scene, objects, margin=0.02):
    """An orthographic front camera framing the sprites' planes."""
    low, high = scenes.world_bounds(objects)
    return scenes.aim_orthographic_camera(low, high, margin=margin, scene=scene)


def setup_sprite_render(scene, engine="workbench", resolution=512, samples=16):
    """Render settings that show a sprite's picture as drawn: Standard view transform, flat
    (unlit) Workbench texture colour, transparent film."""
    if engine not in ENGINES:
        raise UserError(f"unknown engine {engine!r}; engines are {', '.join(ENGINES)}")
    if ENGINES[engine] == "EEVEE":
        scenes.setup_render(scene, engine="WORKBENCH", resolution=(resolution, resolution))
        scenes.use_eevee(scene)
    else:
        scenes.setup_render(scene, engine=ENGINES[engine], resolution=(resolution, resolution), samples=samples)
    scene.display.shading.light = "FLAT"
    scene.render.use_lock_interface = True  # frame handlers change images while rendering
    return scene


def render_frames(scene, folder, frame_start, frame_end):
    """Render each frame to <folder>/frame_NNNN.png (atomically); returns the paths."""
    folder = Path(folder)
    written = []
    for frame in range(frame_start, frame_end + 1):
        scene.frame_set(frame)
        written.append(scenes.render_to_png(folder / f"frame_{frame:04d}.png", scene))
    return written


def render_video(scene, path, frame_start, frame_end, container="MPEG4", on_frame=None):
    """Render the frame range to a video (H.264, with the scene's sound as AAC if it has any).
    With `on_frame(frame)`, called as each frame is done, Blender's own lines a frame are not
    printed (the caller shows progress)."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    render = scene.render
    saved = (render.filepath, render.film_transparent, render.use_file_extension)
    settings = render.image_settings
    if hasattr(settings, "media_type"):  # Blender 5.0: video is a media type of its own
        settings.media_type = "VIDEO"
    settings.file_format = "FFMPEG"
    render.ffmpeg.format = container
    render.ffmpeg.codec = "H264"
    render.ffmpeg.constant_rate_factor = "HIGH"
    render.ffmpeg.audio_codec = "AAC"
    render.ffmpeg.audio_channels = "MONO"
    render.film_transparent = False  # H.264 has no alpha: the sprite stands on the world's colour
    if scene.world is None:
        scene.world = bpy.data.worlds.new("THA background")
        scene.world.color = (0.5, 0.5, 0.5)
    render.use_file_extension = False
    render.filepath = str(path)
    scene.frame_start, scene.frame_end = frame_start, frame_end

    def frame_done(rendered_scene, *_):
        if rendered_scene == scene:
            on_frame(rendered_scene.frame_current)

    if on_frame is not None:
        bpy.app.handlers.render_post.append(frame_done)
    try:
        with scenes.quiet_output() if on_frame is not None else contextlib.nullcontext():
            bpy.ops.render.render(animation=True, scene=scene.name)
    except RuntimeError as error:  # Blender's FFmpeg refusing the size, the disk full, ...
        raise UserError(f"{path}: Blender could not write the video: {str(error).removeprefix('Error: ').strip()}") from None
    finally:
        if frame_done in bpy.app.handlers.render_post:
            bpy.app.handlers.render_post.remove(frame_done)
        render.filepath, render.film_transparent, render.use_file_extension = saved
        if hasattr(settings, "media_type"):
            settings.media_type = "IMAGE"
        settings.file_format = "PNG"
    if not path.is_file() or path.stat().st_size == 0:
        raise UserError(f"{path}: Blender wrote no video (is FFmpeg missing from this Blender?)")
    return path


def render_baked_video(scene, bake_folder, path, frame_start, frame_end, container="MPEG4", on_frame=None):
    """The pictures one sprite baked into `bake_folder` (frames `frame_start` to `frame_end`,
    the baked range) laid over the world's colour in the Video Sequencer and rendered to a video
    with the scene's sound, as `render_video` does.

    Each frame shows the picture exactly as baked, scaled to the output's size. (Workbench draws
    a picture's soft edges with hashed alpha, averaged over its 8 anti-aliasing samples: 8% of a
    512x512 frame's pixels more than a level off, some edge pixels over 100, at 165 ms a frame
    on two cores; here a frame takes about 14 ms, its encoding included.) The strips are removed
    again, so the saved scene renders its camera as before."""
    from ..core.bake_cache import BakeCache
    from .timeline import free_channel, sequencer_strips

    frame_files = [BakeCache.frame_file(bake_folder, frame, frame_start) for frame in range(frame_start, frame_end + 1)]
    if not frame_files:
        raise UserError("no baked frames to make a video of (bake the sprite first)")
    editor = scene.sequence_editor or scene.sequence_editor_create()
    strips = sequencer_strips(editor)
    channel = free_channel(editor, frame_start, frame_end + 1)
    added = []
    try:
        # (Blender 5.0 takes an effect strip's length, 4.2 to 4.5 its end frame.)
        span = ({"length": len(frame_files)} if "length" in strips.bl_rna.functions["new_effect"].parameters
                else {"frame_end": frame_start + len(frame_files)})
        background = strips.new_effect("THA video background", "COLOR", channel, frame_start, **span)
        added.append(background)
        world = scene.world.color if scene.world is not None else (0.5, 0.5, 0.5)
        background.color = [float(value) for value in linear_to_srgb(world[:3])]  # display-encoded, as strips take it
        pictures = strips.new_image("THA video frames", str(frame_files[0]), free_channel(editor, frame_start, frame_end + 1),
                                    frame_start, fit_method="FIT")
        added.append(pictures)
        for file in frame_files[1:]:
            pictures.elements.append(file.name)
        pictures.blend_type = "ALPHA_OVER"
        return render_video(scene, path, frame_start, frame_end, container, on_frame)
    finally:
        for strip in reversed(added):
            strips.remove(strip)


def save_over_draft():
    """Save the open .blend over the draft a command saved earlier in its run (to give the bake
    its //tha_cache/ folder), without turning that draft into a .blend1 backup beside the result.
    (The command's first save is the one that keeps a backup of a file that was there before.)"""
    filepaths = bpy.context.preferences.filepaths
    versions = filepaths.save_version
    filepaths.save_version = 0
    try:
        scenes.save_main_blend()
    finally:
        filepaths.save_version = versions
