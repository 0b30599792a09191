"""The annotation panel through the installed extension: start, cycle and preview, confirm, drag, save."""

import json

import bpy
import pytest


@pytest.fixture
def gene_copy(shared, tmp_path):
    """Gene_light in a writable folder (the sidecar is written beside the model)."""
    folder = tmp_path / "gene"
    folder.mkdir()
    for item in (shared / "assets" / "mmd" / "gene_light").iterdir():
        (folder / item.name).symlink_to(item, target_is_directory=item.is_dir())
    return folder / "Gene_light.pmx"


def key_value(mesh, name):
    return mesh.data.shape_keys.key_blocks[name].value


@pytest.mark.slow
def test_annotate_gene_by_hand_and_save(ext_module, gene_copy):
    imported = ext_module("render.blender.model_import").import_model(gene_copy)
    bpy.context.view_layer.objects.active = imported.meshes[0]
    assert bpy.ops.tha_studio.annotation_start.poll()
    assert not bpy.ops.tha_studio.annotation_cycle.poll()  # greyed out until the annotation is open
    assert bpy.ops.tha_studio.annotation_start() == {"FINISHED"}
    assert bpy.ops.tha_studio.annotation_cycle.poll()
    session = ext_module("render.blender.annotation_session")
    top, bottom = (session.handle(imported.root, which) for which in ("top", "bottom"))
    annotation = session.load(imported.root)
    assert top.location.z == pytest.approx(annotation.head_top * 0.08)
    assert bottom.location.z == pytest.approx(annotation.head_bottom * 0.08)
    assert tuple(top.lock_location) == (True, True, False)

    # The panel's lines are made when the annotation changes, not parsed while drawing.
    state = imported.root.tha_annotation
    assert state.head_text == f"Head {annotation.head_bottom:.2f} .. {annotation.head_top:.2f} (auto)"

    # Cycle the left wink's candidates: each previewed alone at full weight.
    state.candidate = 2
    state.role = "eye_wink_left"
    assert state.candidate == 0 and state.role_text.startswith("Now: ウィンク２ (auto, ")
    mesh = imported.meshes[0]
    names = [c[0] for c in session.candidates(imported.root, "eye_wink_left")]
    assert names[:2] == ["ウィンク２", "まば左"]
    assert bpy.ops.tha_studio.annotation_cycle(step=1) == {"FINISHED"}
    assert key_value(mesh, "まば左") == 1.0 and key_value(mesh, "ウィンク２") == 0.0
    assert bpy.ops.tha_studio.annotation_cycle(step=1) == {"FINISHED"}
    assert key_value(mesh, "eyeBlinkLeft") == 1.0 and key_value(mesh, "まば左") == 0.0
    assert bpy.ops.tha_studio.annotation_cycle(step=-1) == {"FINISHED"}
    assert bpy.ops.tha_studio.annotation_confirm() == {"FINISHED"}
    assert state.role_text == "Now: まば左 (person, 1.00)"

    # A both-eyes candidate previews on its half only.
    state.candidate = names.index("まばたき") - 1
    bpy.ops.tha_studio.annotation_cycle(step=1)
    assert key_value(mesh, "まばたき.tha_left") == 1.0 and key_value(mesh, "まばたき") == 0.0

    top.location.z += 0.04  # the person drags the top handle up
    assert bpy.ops.tha_studio.annotation_save() == {"FINISHED"}
    sidecar = gene_copy.with_name("Gene_light.pmx.tha.json")
    saved = json.loads(sidecar.read_text(encoding="utf-8"))
    assert saved["morph_roles"]["eye_wink_left"]["morphs"] == [{"name": "まば左", "weight": 1.0}]
    assert saved["morph_roles"]["eye_wink_left"]["source"] == "person"
    assert saved["head"]["top"] == pytest.approx(annotation.head_top + 0.5, abs=1e-4)
    assert saved["head"]["source"] == "person"
    assert state.head_text.endswith("(person)")  # the panel shows what was saved
    assert all(k.value == 0.0 for k in mesh.data.shape_keys.key_blocks[1:])  # preview reset

    # The batch reads the person's choice from the sidecar beside the model.
    schema = ext_module("pose.schema").get_schema("tha1")
    again = ext_module("render.dataset.annotation").load_sidecar(sidecar)
    assert again.morphs_for("eye_wink_left") == [("まば左", 1.0, None)]
    assert "left_eye" in again.available_parameters(schema)


def test_start_on_something_else_is_refused_cleanly(ext_module):
    empty = bpy.data.objects.new("not a model", None)
    bpy.context.scene.collection.objects.link(empty)
    bpy.context.view_layer.objects.active = empty
    assert not bpy.ops.tha_studio.annotation_start.poll()
    panel = ext_module("addon.annotate").THA_PT_annotation
    assert panel.bl_category == "THA Studio"
    # A rig of an unsaved file (its annotation would be kept beside the .blend) is reported.
    rig = bpy.data.objects.new("rig", bpy.data.armatures.new("rig"))
    bpy.context.scene.collection.objects.link(rig)
    bpy.context.view_layer.objects.active = rig
    assert bpy.ops.tha_studio.annotation_start.poll() and not bpy.data.filepath
    with pytest.raises(RuntimeError, match="rig: save this Blender file first"):
        bpy.ops.tha_studio.annotation_start()
    assert "tha_studio_annotation" not in rig and not rig.children
