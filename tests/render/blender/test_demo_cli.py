"""The README's first command (`python cli.py demo`) and `cli.py import`, run as a user runs them.

In this environment Blender is the `bpy` module, so `blender -b --python cli.py -- demo` is
exercised as `python cli.py demo` in a subprocess (cli.py treats both the same way).
"""

import subprocess
import sys
import tempfile

import bpy
import numpy as np
from PIL import Image

from shared_assets import ROOT  # the repository root


def run_cli(*args, cwd):
    env_home = tempfile.mkdtemp(prefix="tha_studio_cli_user_")
    return subprocess.run(
        [sys.executable, str(ROOT / "cli.py"), *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": env_home, "BLENDER_USER_RESOURCES": env_home},
    )


def test_demo_renders_the_sample_character_to_out_demo_png(tmp_path):
    result = run_cli("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    picture = tmp_path / "out" / "demo.png"
    assert f"wrote {picture}" in result.stdout
    rgba = np.asarray(Image.open(picture))
    assert rgba.shape == (256, 256, 4)
    alpha = rgba[..., 3] > 0
    assert 0.3 < alpha.mean() < 0.8  # head and shoulders fill much of the frame
    rows, columns = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    assert rows[0] <= 16 and rows[-1] >= 239 and abs((columns[0] + columns[-1]) / 2 - 127.5) < 4
    assert not list(picture.parent.glob(".*"))  # no temporary file left beside it
    # Textured and shaded: the shirt's generated texture and the face differ in colour.
    assert rgba[alpha][:, :3].std(axis=0).max() > 30


def test_import_command_saves_a_blend_that_keeps_the_morphs(tmp_path, shared, ext_module):
    gene = shared / "assets" / "mmd" / "gene_light" / "Gene_light.pmx"
    result = run_cli("import", gene, "-o", tmp_path / "gene.blend", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "28646 vertices, 47106 faces, 13 materials, 224 bones, 184 morphs" in result.stdout
    bpy.ops.wm.open_mainfile(filepath=str(tmp_path / "gene.blend"))
    imported = ext_module("render.blender.model_import").ImportedModel.from_object(bpy.data.objects["Gene_light_mesh"])
    assert len(imported.morphs) == 184 and imported.armature.name == "Gene_light"
    assert imported.morph("あ")["shape_keys"] == {"Gene_light_mesh": "あ"}


def test_cli_errors_are_one_line_without_traceback(tmp_path):
    result = run_cli("import", tmp_path / "missing.pmx", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == f"tha_studio import: error: {tmp_path / 'missing.pmx'}: no such file"
    assert "Traceback" not in result.stderr
    result = run_cli("demo", "-o", "picture.jpg", cwd=tmp_path)
    assert result.returncode == 1 and "the output must be a .png file" in result.stderr
    for scale in ("nan", "1e300", "0"):  # NaN or infinite vertices, saved without a word
        result = run_cli("import", tmp_path / "missing.pmx", "--scale", scale, cwd=tmp_path)
        assert result.returncode == 1 and "--scale must be a positive number up to 1000" in result.stderr
