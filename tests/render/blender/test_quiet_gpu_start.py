"""Blender's GPU start-up noise ("EGL Error (0x3009): EGL_BAD_MATCH", three lines on every start)
is dropped; anything else C code prints to stderr still shows."""

import subprocess
import sys

from shared_assets import ROOT  # the repository root

SCRIPT = """
import os, sys
sys.path.insert(0, {root!r})
import cli
cli.load_package()
from tha_studio.render.blender.scene import filtered_c_stderr
with filtered_c_stderr():
    os.write(2, b"EGL Error (0x3009): EGL_BAD_MATCH: Arguments are inconsistent.\\n")
    os.write(2, b"Error: a real problem\\n")
    print("from Python", file=sys.stderr)
os.write(2, b"after\\n")
"""


def test_only_the_gpu_start_noise_is_dropped_from_c_level_stderr():
    result = subprocess.run([sys.executable, "-c", SCRIPT.format(root=str(ROOT))], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == ["Error: a real problem", "from Python", "after"]


def test_render_commands_print_no_gpu_start_noise(tmp_path):
    models = tmp_path / "models"
    demo = subprocess.run([sys.executable, str(ROOT / "cli.py"), "demo", "-o", str(tmp_path / "demo.png"),
                           "--model-dir", str(models)], capture_output=True, text=True, timeout=300)
    assert demo.returncode == 0, demo.stderr
    dataset = subprocess.run([sys.executable, str(ROOT / "cli.py"), "render-dataset", str(models), str(tmp_path / "out"),
                              "--poses-per-model", "1", "--no-progress"], capture_output=True, text=True, timeout=300)
    assert dataset.returncode == 0, dataset.stderr
    assert "1 model(s), 3 image(s) rendered" in dataset.stdout
    assert "EGL" not in demo.stderr + dataset.stderr, demo.stderr + dataset.stderr
