"""Whether a .blend Blender saved is whole: its end block, or the zstd seekable footer."""

import subprocess
import sys

import pytest

from tha_studio.render.formats.blend_file import blend_file_problem


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Real .blend files of Blender's default scene: compressed and not (saved by Blender itself)."""
    folder = tmp_path_factory.mktemp("blends")
    script = ("import bpy, sys\n"
              "for name, compress in (('plain', False), ('compressed', True)):\n"
              "    bpy.ops.wm.save_as_mainfile(filepath=f'{sys.argv[1]}/{name}.blend', compress=compress, copy=True)\n")
    done = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return {name: (folder / f"{name}.blend").read_bytes() for name in ("plain", "compressed")}


@pytest.mark.parametrize("kind", ["plain", "compressed"])
def test_a_whole_blend_passes_and_one_cut_short_anywhere_is_named(saved, tmp_path, kind):
    data = saved[kind]
    path = tmp_path / "scene.blend"
    path.write_bytes(data)
    assert blend_file_problem(path) is None
    for size in (4096, len(data) // 2, len(data) - 1):  # (a full disk cut it at 4,096 bytes)
        path.write_bytes(data[:size])
        assert blend_file_problem(path) == (f"Blender left it cut short ({size:,} bytes, without its end): "
                                            "is the disk full?")


def test_what_is_no_blend_is_named(tmp_path):
    path = tmp_path / "picture.blend"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    assert blend_file_problem(path) == "is not a .blend file after saving (108 bytes)"
    assert blend_file_problem(tmp_path / "missing.blend").startswith("cannot be read back after saving (")
