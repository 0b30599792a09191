"""The Blender annotation session's files: a model with a legal 244-byte file name is annotated and
saved beside it, and a temporary sidecar a killed Blender left is removed when a session starts."""

import subprocess
import sys

import pytest


def ended_process_id():
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.slow
def test_a_244_byte_model_name_annotates_in_blender_and_stale_temporaries_go(ext_module, tmp_path):
    write_character = ext_module("render.formats.mmd").write_character
    annotations = ext_module("render.dataset.annotation")
    temp_path_for = ext_module("atomic_files").temp_path_for
    session = ext_module("render.blender.annotation_session")

    name = "初音ミク" * 20 + ".pmx"
    assert len(name.encode()) == 244
    model = write_character(tmp_path / "character")
    model = model.rename(model.with_name(name))
    sidecar = annotations.sidecar_path(model)
    left = temp_path_for(sidecar, annotations.temp_tag(ended_process_id()))  # a Blender killed while saving
    left.write_text("{half a sidecar")

    imported = ext_module("render.blender.model_import").import_model(model)
    annotation = session.start(imported.root)
    assert not left.exists()
    assert annotation.morphs_for("mouth_aaa") == [("あ", 1.0, None)]
    assert session.save(imported.root) == sidecar and sidecar.is_file()
    assert annotations.load_sidecar(sidecar).model_file == name
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
