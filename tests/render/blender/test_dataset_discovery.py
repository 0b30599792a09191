"""render-dataset on a download tree with a folder link back up the tree and a copy of one model
in train and in test: each model is rendered once per path, and the copies share one split; names
of models that are no files (a link to a moved model, a named pipe) fail naming what they are."""

import json
import os
import subprocess
import sys

import pytest

from shared_assets import ROOT  # the repository root


@pytest.mark.slow
def test_a_link_loop_and_a_copy_across_splits_render_each_model_once_in_one_split_and_no_files_fail(tmp_path):
    from tha_studio.render.formats.mmd import write_character

    models = tmp_path / "models"
    write_character(models / "train" / "miku")
    write_character(models / "test" / "miku copy")  # the same bytes, as a re-download would be
    (models / "train" / "miku" / "up").symlink_to("../..", target_is_directory=True)  # a loop
    (models / "train" / "rin.pmx").symlink_to(tmp_path / "moved" / "rin.pmx")  # its model was moved
    os.mkfifo(models / "train" / "pipe.pmx")  # opened, it would hold its worker for ever
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, str(ROOT / "cli.py"), "render-dataset", str(models), str(out),
                             "--poses-per-model", "1", "--no-progress"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    rendered = {r["model"]: r["split"] for r in records if r["type"] == "model"}
    assert rendered == {"test/miku copy/tha_studio_character.pmx": "test",
                        "train/miku/tha_studio_character.pmx": "test"}
    assert sorted(p.parent.parent.name for p in (out / "images").rglob("rest.png")) == ["test", "test"]
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {f["model"]: f["reason"] for f in failures} == {
        "train/pipe.pmx": f"{models / 'train' / 'pipe.pmx'}: a named pipe, not a model file",
        "train/rin.pmx": f"{models / 'train' / 'rin.pmx'}: a link to {tmp_path / 'moved' / 'rin.pmx'}, "
                         "which is not there"}
