"""The small synthetic PMX files of ../shared (bone-only models, constraints, a sphere, a box) import."""

import bpy
import pytest

EDGE_CASES = ("bone_flag_test", "bone_hierarchy_test", "bone_hierarchy_test2", "constraint_test",
              "matcap_sample", "uv_morph_test")


@pytest.mark.parametrize("name", EDGE_CASES)
def test_edge_case_imports_with_the_files_bones_and_faces(name, shared, ext_module):
    from tha_studio.render.formats.mmd import read_model

    path = shared / "assets" / "mmd" / "edge_cases" / f"{name}.pmx"
    model = read_model(path)
    imported = ext_module("render.blender.model_import").import_model(path)
    mesh = imported.meshes[0].data
    assert (len(mesh.vertices), len(mesh.polygons)) == (len(model.positions), len(model.faces))
    # Blender lists bones parents first, so they are matched by name, not by position.
    bones = {b["name_j"]: b for b in imported.armature.data.bones}
    assert sorted(bones) == sorted(b.name for b in model.bones)
    for source in model.bones:
        bone = bones[source.name]
        expected_parent = model.bones[source.parent].name if source.parent >= 0 else None
        assert (bone.parent["name_j"] if bone.parent else None) == expected_parent
        assert bone.length > 0  # zero-length MMD bones get a small length instead of vanishing
    # A texture the sample names but does not ship is reported, and the import goes on.
    assert all("not found" in warning for warning in imported.warnings)
    assert len(bpy.data.objects) == 2
