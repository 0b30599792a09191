"""Files saved by older THA Studio versions are brought up to date when they open (load_post)."""

import json

import bpy


def save_and_reopen(path):
    bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True)
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.ops.wm.open_mainfile(filepath=str(path))


def test_model_json_without_a_version_is_migrated_when_the_file_opens(shared, ext_module, tmp_path):
    model_import = ext_module("render.blender.model_import")
    imported = model_import.import_model(shared / "assets" / "mmd" / "edge_cases" / "uv_morph_test.pmx")
    root_name, mesh_name = imported.root.name, imported.meshes[0].name
    current = json.loads(imported.root[model_import.MODEL_PROPERTY])
    assert current["version"] == model_import.MODEL_INFO_VERSION
    # As files saved before the field existed store it: no "version", the other keys as now.
    old = {key: value for key, value in current.items() if key != "version"}
    imported.root[model_import.MODEL_PROPERTY] = json.dumps(old, ensure_ascii=False)
    # Not ours to repair: JSON of another kind under the same name, and a newer version's.
    stray = bpy.data.objects.new("stray", None)
    bpy.context.scene.collection.objects.link(stray)
    stray[model_import.MODEL_PROPERTY] = "not json"
    future = bpy.data.objects.new("future", None)
    bpy.context.scene.collection.objects.link(future)
    future[model_import.MODEL_PROPERTY] = json.dumps({"version": 99, "name": "later"})

    save_and_reopen(tmp_path / "old.blend")

    root = bpy.data.objects[root_name]
    assert json.loads(root[model_import.MODEL_PROPERTY]) == current
    assert bpy.data.objects["stray"][model_import.MODEL_PROPERTY] == "not json"
    assert json.loads(bpy.data.objects["future"][model_import.MODEL_PROPERTY]) == {"version": 99, "name": "later"}
    again = model_import.ImportedModel.from_object(bpy.data.objects[mesh_name])
    assert again.root == root and again.format == "pmx" and again.morphs == json.loads(json.dumps(imported.morphs))


def test_the_handler_survives_opening_files_and_goes_with_the_extension(ext_module):
    migrations = ext_module("addon.migrations")
    assert migrations.migrate_after_load in bpy.app.handlers.load_post
    migrations.unregister()
    try:
        assert migrations.migrate_after_load not in bpy.app.handlers.load_post
    finally:
        migrations.register()
    migrations.register()  # twice: still one handler
    assert list(bpy.app.handlers.load_post).count(migrations.migrate_after_load) == 1
