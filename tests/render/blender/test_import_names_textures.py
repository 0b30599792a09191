"""Bytes a model's text cannot be read as, and texture paths the system refuses: the import
goes on with a warning naming what was replaced or not found, instead of failing."""

import os

import pytest

from tha_studio.render.formats.mmd import make_character, pmx


@pytest.fixture
def model_import(ext_module):
    return ext_module("render.blender.model_import")


def broken_names(model):
    """A lone UTF-16 surrogate (half a character: a tool that cut a name) in a material, a bone,
    a morph and the model's own name (kept in the model's JSON only, escaped), as a PMX in
    UTF-16 carries them."""
    model.name = "キャラ\ud800"
    model.materials[0].name = "肌\udc00"
    model.bones[-1].name = "髪\ud83d"
    model.morphs[0].name = model.morphs[0].name + "\udfff"
    return model


def test_broken_name_bytes_are_replaced_with_a_warning_and_the_morphs_still_work(model_import, tmp_path):
    model = broken_names(make_character())
    path = pmx.write(model, tmp_path / "broken_names.pmx")
    imported = model_import.import_model(path)
    warnings = [w for w in imported.warnings if "not valid text" in w]
    assert len(warnings) == 3, imported.warnings  # material, bone, morph
    assert any("material name '肌\ufffd'" in w for w in warnings)
    assert "肌\ufffd" in [m.name for m in imported.meshes[0].data.materials]
    assert imported.armature.data.bones[-1].name == "髪\ufffd"
    # the morph is still found by the name the file (and so the annotation) gives it
    assert imported.morph(model.morphs[0].name) is not None
    imported.set_morph(model.morphs[0].name, 1.0)


def test_a_cp932_file_name_imports(model_import, tmp_path):
    folder = tmp_path / os.fsdecode("モデル".encode("cp932"))  # not UTF-8: surrogate-escaped
    path = pmx.write(make_character(), folder / os.fsdecode("キャラ.pmx".encode("cp932")))
    imported = model_import.import_model(path)
    assert imported.meshes and any("file name" in w for w in imported.warnings)


@pytest.mark.parametrize("stored, words", [
    ("t" * 300 + ".png", "cannot be looked up (File name too long)"),  # one name over 255 bytes
    ("/".join(["folder" * 40] * 40) + "/skin.png", "cannot be looked up (File name too long)"),  # over 4096
    ("tex\ud800.png", "not found"),  # half a character
])
def test_a_texture_path_the_system_refuses_is_a_warning_about_that_texture(model_import, tmp_path, stored, words):
    model = make_character()
    model.textures.append(stored)
    model.materials[0].texture = len(model.textures) - 1
    path = pmx.write(model, tmp_path / "long_texture.pmx")
    imported = model_import.import_model(path)
    assert imported.meshes
    shown = stored[:20].replace("\ud800", "\ufffd")
    warnings = [w for w in imported.warnings if w.startswith(f"texture '{shown}") and words in w]
    assert len(warnings) == 1, imported.warnings
    assert len(warnings[0]) < 400  # the path is clipped in the message


def test_a_model_linked_into_another_folder_finds_its_textures_and_buffers(model_import, shared, tmp_path):
    """A models folder may link to a model file alone (its textures, a .gltf's .bin, left where
    the file is): they are found from the file's own folder, as where it lies."""
    import gltf_fixtures
    from tha_studio.render.formats.avatar_model import read_avatar_model

    gene = shared / "assets" / "mmd" / "gene_light" / "Gene_light.pmx"
    models = tmp_path / "models"
    models.mkdir()
    (models / "gene.pmx").symlink_to(gene)
    imported = model_import.import_model(models / "gene.pmx")
    assert not [warning for warning in imported.warnings if warning.startswith("texture ")]
    images = {node.image for mesh in imported.meshes for material in mesh.data.materials
              for node in material.node_tree.nodes if node.type == "TEX_IMAGE"}
    assert len(images) >= 10 and all(os.path.isfile(image.filepath) for image in images)
    gltf = gltf_fixtures.export_face_glb(tmp_path / "face.gltf", "GLTF_SEPARATE")
    assert (tmp_path / "face.bin").is_file()
    (models / "face.gltf").symlink_to(gltf)
    assert read_avatar_model(models / "face.gltf").positions.shape == read_avatar_model(gltf).positions.shape
    face = model_import.import_model(models / "face.gltf")
    assert sorted(obj.name for obj in face.meshes) == ["Face", "Teeth"]


def test_a_gltf_whose_texture_file_is_missing_imports_untextured_with_a_warning(model_import, tmp_path):
    """A .gltf's textures are files beside it; one that is gone is named (the manifest's
    texture_warnings) and left off its material, which Blender would draw magenta in every
    render of a dataset."""
    import bpy
    from PIL import Image

    bpy.ops.wm.read_homefile(use_empty=True)
    Image.new("RGBA", (4, 4), (200, 40, 40, 255)).save(tmp_path / "skin.png")
    bpy.ops.mesh.primitive_plane_add()
    material = bpy.data.materials.new("Skin")  # (with a Principled BSDF: Blender 5 materials use nodes)
    if material.node_tree is None:  # (Blender 4.2 to 4.5 make the nodes on request)
        material.use_nodes = True
    texture = material.node_tree.nodes.new("ShaderNodeTexImage")
    texture.image = bpy.data.images.load(str(tmp_path / "skin.png"))
    principled = next(node for node in material.node_tree.nodes if node.type == "BSDF_PRINCIPLED")
    material.node_tree.links.new(texture.outputs["Color"], principled.inputs["Base Color"])
    bpy.context.object.data.materials.append(material)
    folder = tmp_path / "avatar"
    folder.mkdir()
    assert bpy.ops.export_scene.gltf(filepath=str(folder / "plane.gltf"), export_format="GLTF_SEPARATE") == {"FINISHED"}
    [written] = folder.glob("*.png")
    bpy.ops.wm.read_homefile(use_empty=True)
    whole = model_import.import_model(folder / "plane.gltf")
    assert not whole.warnings
    written.unlink()
    bpy.ops.wm.read_homefile(use_empty=True)
    imported = model_import.import_model(folder / "plane.gltf")
    assert imported.warnings == [f"texture {written} of material 'Skin' not found"]
    [skin] = imported.meshes[0].data.materials
    assert all(node.image is None for node in skin.node_tree.nodes if node.type == "TEX_IMAGE")
