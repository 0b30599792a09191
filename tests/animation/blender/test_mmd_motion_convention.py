"""An MMD motion's head reads as THA poses it: a real model (Gene) posed by the dataset renderer,
its bones' turns written as a VMD as MMD stores them, reads back as the pose it was given."""

import numpy as np
import pytest

pytestmark = pytest.mark.shared

POSES = [
    {"head_x": 0.4, "head_y": -0.6, "neck_z": 0.3, "body_y": 0.5, "body_z": -0.2},
    {"head_x": -0.9, "head_y": 0.8, "neck_z": -0.7, "body_y": -0.3, "body_z": 0.6},
]


def test_a_motion_made_from_a_rendered_pose_reads_back_as_that_pose(shared, ext_module, tmp_path):
    gene = shared / "assets" / "mmd" / "gene_light" / "Gene_light.pmx"
    schema = ext_module("pose.schema").get_schema("tha3")
    imported = ext_module("render.blender.model_import").import_model(gene)
    annotation = ext_module("render.dataset.annotation").annotate_model_file(gene)
    poser = ext_module("render.blender.posing").ModelPoser(imported, annotation, schema)
    vmd = ext_module("render.formats.mmd.vmd")
    bones = {}
    for frame, values in enumerate(POSES):
        pose = schema.neutral()
        for name, value in values.items():
            pose[schema.index(name)] = value
        poser.apply(pose)
        for role, name in (("neck", "首"), ("head", "頭"), ("upper_body", "上半身")):
            # The turn in the scene's axes (a pose bone's is in its own, along its length) ...
            bone = poser.bones[role]
            rest = (bone.id_data.matrix_world.to_3x3() @ bone.bone.matrix_local.to_3x3()).normalized()
            w, x, y, z = (rest @ bone.rotation_quaternion.to_matrix() @ rest.inverted()).to_quaternion()
            # ... and in MMD's: Blender's (w, -x, -z, -y) of MMD's (x, y, z, w), the importer's turn, taken back.
            bones.setdefault(name, []).append(vmd.BoneKey(frame * 30, rotation=(-x, -z, -y, w)))
    motion = vmd.read(vmd.write(vmd.Motion("Gene", bones=bones), tmp_path / "posed.vmd"))
    read = ext_module("animation.core.mmd_motion").motion_keyframes(motion, "tha3", fps=30.0, start_frame=1)
    for frame, values in enumerate(POSES):
        got = {name: next(k.value for k in read.keyframes[name] if k.frame == 1 + frame * 30) for name in values}
        assert got == pytest.approx(values, abs=1e-4), frame
    assert np.isfinite([k.value for keys in read.keyframes.values() for k in keys]).all()
