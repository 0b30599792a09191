"""A dataset render imports shape keys for the morphs its annotation uses only: a model with
thousands of morphs costs the memory of the few it moves, and renders the same images."""

import json

import numpy as np

from tha_studio.render.formats.mmd import make_character, pmx
from tha_studio.render.formats.mmd.model import Morph


def test_only_the_asked_morphs_get_shape_keys_and_every_morph_keeps_its_record(ext_module, tmp_path):
    model = make_character()
    model.morphs += [Morph(name=f"extra {i}", vertex_indices=np.array([i]), vertex_offsets=np.ones((1, 3), np.float32))
                     for i in range(3_000)]
    path = pmx.write(model, tmp_path / "many_morphs.pmx")
    imported = ext_module("render.blender.model_import").import_model(path, shape_keys_for={"まばたき", "あ"})
    keys = imported.meshes[0].data.shape_keys.key_blocks
    assert [key.name for key in keys] == ["Basis", "まばたき", "あ"]
    assert len(imported.morphs) == 3_008 and imported.morph("extra 7")["shape_keys"] == {}
    assert imported.set_morph("あ", 1.0) == 1


def test_images_with_the_role_morphs_only_equal_those_with_every_shape_key(ext_module, tmp_path):
    import bpy

    dataset_run = ext_module("render.blender.dataset_run")
    model_import = ext_module("render.blender.model_import")
    schema = ext_module("pose.schema").get_schema("tha1")
    settings = ext_module("render.dataset.settings").RenderSettings()
    triplets = ext_module("render.blender.triplets")
    path = pmx.write(make_character(), tmp_path / "character.pmx")
    annotation = ext_module("render.dataset.annotation").annotate_file(path, tmp_path / "sidecars", "c.pmx")[0]
    used = dataset_run.role_morphs(annotation, schema)
    assert {"まばたき", "あ"} <= used and len(used) < 8  # the model's eye and mouth morphs, not all 8
    pose = np.full(schema.size, 0.5, np.float32)  # every morph role half on, head turned
    images = {}
    for label, wanted in (("every morph", None), ("role morphs", used)):
        bpy.ops.wm.read_homefile(use_empty=True)
        imported = model_import.import_model(path, shape_keys_for=wanted)
        renderer = triplets.TripletRenderer(imported, annotation, schema, settings, temp_tag="t")
        images[label] = renderer.render_example(pose, tmp_path / f"{label}_e.png", tmp_path / f"{label}_p.png")
    assert images["role morphs"] == images["every morph"]
