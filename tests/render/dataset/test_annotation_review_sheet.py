"""The annotate and review-sheet subcommands, without Blender."""

import json
import os

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from tha_studio.commands import main
from tha_studio.render.dataset import annotation as A
from tha_studio.render.dataset import manifest
from tha_studio.render.dataset import review_sheet as R
from tha_studio.render.dataset.plan import DatasetConfig, ensure_config


def test_annotate_command_writes_sidecars_and_reports_broken_files(shared, tmp_path, capsys):
    models = tmp_path / "models"
    (models / "good").mkdir(parents=True)
    (models / "good" / "Gene_light.pmx").symlink_to(shared / "assets/mmd/gene_light/Gene_light.pmx")
    (models / "bad.pmx").write_text("text")
    (models / "gone.pmx").symlink_to(tmp_path / "deleted.pmx")
    os.mkfifo(models / "pipe.pmx")  # opened, it would block the command for ever
    code = main(["annotate", str(models), "--annotations", str(tmp_path / "notes")])
    out, err = capsys.readouterr()
    assert code == 0
    assert "bad.pmx: " in err and "not an MMD model" in err
    assert f"gone.pmx: a link to {tmp_path / 'deleted.pmx'}, which is not there" in err
    assert "pipe.pmx: a named pipe, not a model file" in err
    # The skull's top where the crown narrows to a quarter of the face's width (measured in front).
    assert "good/Gene_light.pmx: head 16.66..19.77; eye_wink_left=ウィンク２" in out
    assert "annotated 1 model(s), 3 could not be read" in out
    sidecar = A.load_sidecar(tmp_path / "notes" / "good" / "Gene_light.pmx.tha.json")
    assert sidecar.morphs_for("mouth_aaa") == [("あ", 1.0, None)]


def test_annotate_names_a_folder_without_models_before_annotating_any(shared, tmp_path, capsys):
    # A mistyped folder said "annotated 0 model(s)" and succeeded.
    models, empty = tmp_path / "models", tmp_path / "empty"
    models.mkdir()
    (models / "Gene_light.pmx").symlink_to(shared / "assets/mmd/gene_light/Gene_light.pmx")
    (empty / "textures").mkdir(parents=True)
    (empty / "textures" / "skin.png").write_bytes(b"")
    assert main(["annotate", str(models), str(empty)]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"tha_studio annotate: error: {empty}: no models under it (looked for .pmx, .pmd, .vrm, .glb, .gltf, .blend, .zip)"]
    assert not (models / "Gene_light.pmx.tha.json").exists()  # (nothing annotated before the error)


def test_a_sidecar_that_cannot_be_read_is_kept_until_fresh_and_annotations_must_be_a_folder(shared, tmp_path, capsys):
    models = tmp_path / "models"
    models.mkdir()
    (models / "Gene_light.pmx").symlink_to(shared / "assets/mmd/gene_light/Gene_light.pmx")
    sidecar = tmp_path / "notes" / "Gene_light.pmx.tha.json"
    sidecar.parent.mkdir()
    sidecar.write_text('{"head": {"top": 19.9,', encoding="utf-8")  # cut short: a person's edits may be in it
    assert main(["annotate", str(models), "--annotations", str(sidecar.parent)]) == 1
    assert "Gene_light.pmx.tha.json: not valid JSON" in capsys.readouterr().err
    assert sidecar.read_text(encoding="utf-8") == '{"head": {"top": 19.9,'
    assert main(["annotate", str(models), "--annotations", str(sidecar.parent), "--fresh"]) == 0
    assert A.load_sidecar(sidecar).morphs_for("mouth_aaa") == [("あ", 1.0, None)]
    capsys.readouterr()
    # A file where the folder should be: said once, not once per model.
    assert main(["annotate", str(models), "--annotations", str(sidecar)]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [f"tha_studio annotate: error: --annotations {sidecar}: not a folder"]


def make_dataset(folder, shared):
    ensure_config(folder, DatasetConfig())
    rest = np.zeros((256, 256, 4), np.uint8)
    rest[70:190, 90:170] = (200, 150, 120, 255)
    path = folder / "images/train/gene/rest.png"
    path.parent.mkdir(parents=True)
    Image.fromarray(rest, "RGBA").save(path)
    manifest.append_record(folder / "parts/shard-1-of-1.jsonl",
                           {"type": "model", "model": "gene/Gene_light.pmx", "split": "train",
                            "rest": "images/train/gene/rest.png", "sha256": {}})
    manifest.append_record(folder / "parts/shard-1-of-1.jsonl",
                           {"type": "failure", "model": "broken.pmx", "split": "train", "reason": "the file is empty"})
    manifest.merge(folder)
    A.annotate_file(shared / "assets/mmd/gene_light/Gene_light.pmx", folder / "annotations", "gene/Gene_light.pmx")


def test_review_sheet_tiles_models_draws_the_band_and_flags_by_tile_number(shared, tmp_path, capsys):
    dataset = tmp_path / "dataset"
    make_dataset(dataset, shared)
    assert main(["review-sheet", str(dataset), "--columns", "2", "--tile", "128"]) == 0
    sheet = np.array(Image.open(dataset / "review_sheet-p001.png").convert("RGB")).astype(int)
    assert "2 model(s), 1 flagged, on 1 page(s)" in capsys.readouterr().out
    # Tile 1 (at 4, 4, 128 px): the red band rows at 64 and 192 of 256 -> 32 and 96.
    for row in (4 + 32, 4 + 96):
        line = sheet[row, 10:120]
        assert (line[:, 0] > 200).all() and (line[:, 1] < 80).all()
    index = json.loads((dataset / "review_sheet.png.json").read_text(encoding="utf-8"))["tiles"]
    assert [(t["tile"], t["model"], t["flagged"]) for t in index] == [
        (1, "gene/Gene_light.pmx", False), (2, "broken.pmx", True)]

    assert main(["review-sheet", str(dataset), "--flag", "1", "--reason", "hair hides the eyes"]) == 0
    flagged = A.load_sidecar(dataset / "annotations/gene/Gene_light.pmx.tha.json")
    assert flagged.review == {"flagged": True, "reasons": ["hair hides the eyes"], "source": "person"}
    assert "2 model(s), 2 flagged" in capsys.readouterr().out
    frame = np.array(Image.open(dataset / "review_sheet-p001.png").convert("RGB")).astype(int)[6, 10:100]
    assert (frame[:, 0] > 200).all() and (frame[:, 1] < 60).all()  # tile 1 now framed in red

    assert main(["review-sheet", str(dataset), "--flag", "7"]) == 1
    assert "no tile 7" in capsys.readouterr().err
    # (--tile 20000 held 14 GB for a single model's tile before it was refused.)
    assert main(["review-sheet", str(dataset), "--tile", "20000", "--out", str(tmp_path / "huge.png")]) == 1
    assert "--per-page 100 tiles of 20000 pixels make pages of up to 40,132 megapixels" in capsys.readouterr().err
    assert not (tmp_path / "huge.png").exists()


def test_a_review_sheet_of_many_models_is_pages_and_an_index_with_folders_and_flags(tmp_path, capsys):
    dataset = tmp_path / "dataset"
    ensure_config(dataset, DatasetConfig())
    journal = dataset / "parts/shard-1-of-1.jsonl"
    rest = np.zeros((64, 64, 4), np.uint8)
    rest[16:48, 20:44] = (200, 150, 120, 255)
    for i in range(230):  # the same file name in every folder, as in a download tree
        model_id = f"pack_{i // 10}/キャラ{i:03d}/model.pmx"
        image = f"images/train/m{i:03d}/rest.png"
        (dataset / image).parent.mkdir(parents=True)
        Image.fromarray(rest, "RGBA").save(dataset / image)
        record = {"type": "model", "model": model_id, "split": "train", "rest": image, "sha256": {}}
        if i % 50 == 7:
            record["texture_warnings"] = [f"{model_id}: texture tex/skin.png is missing"]
        manifest.append_record(journal, record)
    manifest.append_record(journal, {"type": "failure", "model": "broken/model.pmx", "split": "train",
                                     "reason": "not an MMD model"})
    manifest.merge(dataset)

    assert main(["review-sheet", str(dataset), "--tile", "64", "--per-page", "100", "--columns", "10"]) == 0
    assert "231 model(s), 1 flagged, on 3 page(s)" in capsys.readouterr().out
    index = json.loads((dataset / "review_sheet.png.json").read_text(encoding="utf-8"))
    assert [(p["file"], p["tiles"]) for p in index["pages"]] == [
        ("review_sheet-p001.png", [1, 100]), ("review_sheet-p002.png", [101, 200]), ("review_sheet-p003.png", [201, 231])]
    tiles = {t["tile"]: t for t in index["tiles"]}
    assert tiles[150]["page"] == 2 and tiles[150]["model"].endswith("/model.pmx")
    textured = [t["tile"] for t in index["tiles"] if t["flags"]]
    assert [tiles[n]["flags"] for n in textured] == [["textures (1)"]] * 5 + [["failed"]]
    assert tiles[231]["model"] == "broken/model.pmx" and tiles[231]["flags"] == ["failed"]
    pages = [Image.open(dataset / p["file"]) for p in index["pages"]]
    cell = 64 + R.CAPTION_HEIGHT + 4
    assert [page.size for page in pages] == [(10 * 68 + 4, 10 * cell + 4)] * 2 + [(10 * 68 + 4, 4 * cell + 4)]
    front = Image.open(dataset / "review_sheet.png")
    assert front.width < 1000 and front.height < 400  # the index page, not the tiles

    # The index page names each page and the tiles to look at (red text).
    red = np.array(front.convert("RGB")).astype(int)
    assert ((red[..., 0] > 180) & (red[..., 1] < 80)).sum() > 50

    # Fewer models later: the pages the longer sheet left are removed.
    (dataset / "manifest.jsonl").write_text((dataset / "manifest.jsonl").read_text(encoding="utf-8").splitlines()[0] + "\n",
                                            encoding="utf-8")
    assert main(["review-sheet", str(dataset), "--tile", "64"]) == 0
    assert sorted(p.name for p in dataset.glob("review_sheet-p*.png")) == ["review_sheet-p001.png"]


@pytest.mark.parametrize("index_text, problem", [
    ("garbage", "not a sheet index (not valid JSON"),
    ("[]", "not a sheet index (no list of tiles)"),
    ('{"tiles": [1, 2]}', "tile entry 1 is not a tile number with a model"),
    ('{"tiles": [{"tile": 1}]}', "tile entry 1 is not a tile number with a model"),
    ('{"tiles": [{"tile": 1, "model": "../../../outside.pmx"}]}', "tile 1 names model '../../../outside.pmx', which is not a model id"),
])
def test_a_damaged_sheet_index_is_named_and_nothing_is_flagged(tmp_path, capsys, index_text, problem):
    dataset = tmp_path / "deep" / "dataset"
    ensure_config(dataset, DatasetConfig())
    # A sidecar where the hand-edited index points, outside the dataset: it must stay unflagged.
    outside = tmp_path / "outside.pmx.tha.json"
    A.save_sidecar(A.Annotation(model_file="outside.pmx"), outside)
    before = outside.read_bytes()
    (dataset / "review_sheet.png.json").write_text(index_text, encoding="utf-8")
    assert main(["review-sheet", str(dataset), "--flag", "1"]) == 1
    assert f"review_sheet.png.json: {problem}" in capsys.readouterr().err  # not a KeyError or TypeError
    assert outside.read_bytes() == before


def test_tile_labels_show_the_folder_and_the_flags():
    entry = R.SheetEntry("nested/folder/初音ミク/model.pmx", None, (64, 192), {"eye_wink_left": 0.5, "mouth_aaa": 0.95},
                         texture_warnings=["skin.png missing"])
    assert entry.flags == ["textures (1)", "low L"]
    assert R.model_folder(entry.model_id) == "nested/folder/初音ミク/" and R.model_folder("loose.pmx") == "./"
    font, _ = R.label_font()
    draw = ImageDraw.Draw(Image.new("RGBA", (10, 10)))
    cut = R.fit(draw, "a/very/long/folder/path/that/cannot/fit/初音ミク/", font, 80)
    assert cut.startswith("…") and cut.endswith("初音ミク/") and draw.textlength(cut, font=font) <= 80


def test_japanese_labels_draw_glyphs_not_boxes():
    font, warning = R.label_font()
    assert warning is None, warning  # Blender's Noto Sans CJK (the bpy wheel's datafiles)
    names = "初音ミク 鏡音リン 眉上げ くわっ 口_微笑 ｳｨﾝｸ２右 ＡＢＣ abc 123 …/"
    assert R.missing_glyphs(font, names) == []
    fallback = ImageFont.load_default(R.FONT_SIZE)  # what the sheet drew before: boxes for kana and kanji
    assert set(R.missing_glyphs(fallback, "初音ミク")) == set("初音ミク")

    # On a tile: the caption drawn with the sheet's font is not the caption of boxes.
    entry = R.SheetEntry("初音ミク/ミク.pmx", None, (64, 192))
    with_font = np.array(R._tile(entry, 1, 160, font))[160:]
    with_boxes = np.array(R._tile(entry, 1, 160, fallback))[160:]
    assert (with_font != with_boxes).any()


def test_the_japanese_font_is_found_where_bpy_is_imported_already():
    """In Blender, and in a test worker that ran Blender tests first, bpy is in sys.modules (CI
    found no font there once)."""
    import bpy  # noqa: F401

    font, warning = R.label_font()
    assert warning is None
    assert not R.missing_glyphs(font, "初音ミク")
