"""The annotate and review-sheet subcommands, without Blender."""

import json

import numpy as np
from PIL import Image

from tha_studio.commands import main
from tha_studio.render.dataset import annotation as A
from tha_studio.render.dataset import manifest
from tha_studio.render.dataset.plan import DatasetConfig, ensure_config


def test_annotate_command_writes_sidecars_and_reports_broken_files(shared, tmp_path, capsys):
    models = tmp_path / "models"
    (models / "good").mkdir(parents=True)
    (models / "good" / "Gene_light.pmx").symlink_to(shared / "assets/mmd/gene_light/Gene_light.pmx")
    (models / "bad.pmx").write_text("text")
    code = main(["annotate", str(models), "--annotations", str(tmp_path / "notes")])
    out, err = capsys.readouterr()
    assert code == 0
    assert "bad.pmx: " in err and "not an MMD model" in err
    assert "good/Gene_light.pmx: head 16.66..19.85; eye_wink_left=ウィンク２" in out
    assert "annotated 1 model(s), 1 could not be read" in out
    sidecar = A.load_sidecar(tmp_path / "notes" / "good" / "Gene_light.pmx.tha.json")
    assert sidecar.morphs_for("mouth_aaa") == [("あ", 1.0, None)]


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
    sheet = np.array(Image.open(dataset / "review_sheet.png").convert("RGB")).astype(int)
    assert "2 model(s), 1 flagged" in capsys.readouterr().out
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
    frame = np.array(Image.open(dataset / "review_sheet.png").convert("RGB")).astype(int)[6, 10:100]
    assert (frame[:, 0] > 200).all() and (frame[:, 1] < 60).all()  # tile 1 now framed in red

    assert main(["review-sheet", str(dataset), "--flag", "7"]) == 1
    assert "no tile 7" in capsys.readouterr().err
