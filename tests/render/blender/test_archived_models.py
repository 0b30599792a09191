"""A models folder as downloads leave it: zip archives made on a Japanese Windows (cp932 names,
backslashes, textures in a sibling folder), one of them damaged, a .7z; annotated into a folder
of sidecars and rendered, each model in an archive as the same model unpacked."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared_assets import ROOT

sys.path.insert(0, str(ROOT / "tests" / "render" / "dataset"))
from archive_files import windows_zip  # noqa: E402


def cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def character_files():
    """{path: bytes} of the sample character with its texture under a Japanese folder name, as
    its PMX names it (a Windows path)."""
    from tha_studio.render.formats.mmd.procedural import clothes_texture, make_character
    from tha_studio.render.formats.png import encode_png

    model = make_character()
    model.textures = ["テクスチャ\\服.png"]
    rgb = clothes_texture()
    texture = encode_png(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]))
    return model, {"キャラ/テクスチャ/服.png": texture}


@pytest.mark.slow
def test_models_in_archives_render_as_the_same_models_unpacked_and_a_bad_archive_is_named(tmp_path):
    from tha_studio.render.formats.mmd import pmx

    models = tmp_path / "models"
    model, files = character_files()
    loose = models / "unpacked" / "キャラ" / "モデル.pmx"
    for name, data in files.items():
        (models / "unpacked" / name).parent.mkdir(parents=True, exist_ok=True)
        (models / "unpacked" / name).write_bytes(data)
    pmx.write(model, loose)
    files["キャラ/モデル.pmx"] = loose.read_bytes()
    model.name = "別バージョン"  # a second model, a folder down, its texture in ../テクスチャ
    model.textures = ["..\\テクスチャ\\服.png"]
    other = tmp_path / "other.pmx"
    pmx.write(model, other)
    files["キャラ/別/モデル2.pmx"] = other.read_bytes()
    windows_zip(models / "downloads" / "chara.zip", files)
    data = (models / "downloads" / "chara.zip").read_bytes()
    (models / "downloads" / "cut.zip").write_bytes(data[: len(data) // 2])  # a download that stopped
    (models / "downloads" / "pack.7z").write_bytes(b"7z\xbc\xaf\x27\x1c")

    annotations, out = tmp_path / "annotations", tmp_path / "out"
    before = extracting_for_annotate()
    annotated = cli("annotate", models, "--annotations", annotations)
    assert annotated.returncode == 0, annotated.stderr
    zipped = ["downloads/chara.zip/キャラ/モデル.pmx", "downloads/chara.zip/キャラ/別/モデル2.pmx"]
    for model_id in zipped:
        assert f"{model_id}: head " in annotated.stdout
        assert (annotations / f"{model_id}.tha.json").is_file()
    assert "downloads/cut.zip: not a readable zip archive" in annotated.stderr
    assert "pack.7z: an archive THA Studio cannot open" in annotated.stderr
    assert not list(annotations.rglob("*.tmp")) and "annotated 3 model(s), 2 could not be read" in annotated.stdout

    rendered = cli("render-dataset", models, out, "--poses-per-model", "1", "--no-progress", "--annotations", annotations)
    assert rendered.returncode == 0, rendered.stderr
    assert "4 model(s), 9 image(s) rendered" in rendered.stdout
    assert f"skipped downloads/cut.zip: {models / 'downloads' / 'cut.zip'}: not a readable zip archive" in rendered.stdout
    assert "warning: 1 archive(s) left out, which THA Studio cannot open (downloads/pack.7z)" in rendered.stderr
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    rests = {r["model"]: r for r in records if r["type"] == "model"}
    assert sorted(rests) == [*zipped, "unpacked/キャラ/モデル.pmx"]
    assert all(r["texture_warnings"] == [] for r in rests.values())  # found in their folder of the archive

    def rest(model_id):
        return np.asarray(Image.open(out / rests[model_id]["rest"]).convert("RGBA"), dtype=np.int16)

    # Textured (the clothes' colours, not an untextured white-grey), and pixel for pixel the model
    # unpacked; the second model, with its own name only, renders alike.
    unpacked = rest("unpacked/キャラ/モデル.pmx")
    assert len(np.unique(unpacked[unpacked[..., 3] > 0][:, :3], axis=0)) > 50
    for model_id in zipped:
        assert np.array_equal(rest(model_id), unpacked), model_id
    # The dataset kept the sidecars it rendered with, and no extracted copy is left.
    for model_id in zipped:
        kept = json.loads((out / "annotations" / f"{model_id}.tha.json").read_text(encoding="utf-8"))
        assert kept == json.loads((annotations / f"{model_id}.tha.json").read_text(encoding="utf-8"))
    assert not (out / ".extracting").exists()
    assert extracting_for_annotate() == before  # annotate's copies of the archive are gone too


def extracting_for_annotate():
    return set(Path(tempfile.gettempdir()).glob("tha_studio_archive_*"))
