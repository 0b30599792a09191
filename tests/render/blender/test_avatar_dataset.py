"""VRM and glb avatars in the dataset flow: read, annotated and rendered as MMD models are.

The avatar is a real model: Gene (../shared) imported by THA Studio, exported by Blender's glTF
exporter, and given VRM 0.x or 1.0 humanoid bones and expressions (gltf_fixtures). Being the same
model, each avatar must come out as the PMX does: the same vertices where Blender puts them, the
same roles and head band, the same renders for the same pose.
"""

import json

import bpy
import numpy as np
import pytest
from PIL import Image

import gltf_fixtures
from shared_assets import shared_path

GENE = ("assets", "mmd", "gene_light", "Gene_light.pmx")
HIDDEN_AT_REST = ("青ざめ", "イライラ")  # Gene's overlays of alpha 0 (pale face, irritation mark)
MMD_SCALE = 0.08  # metres per MMD unit, THA Studio's import scale


@pytest.fixture(scope="module")
def avatars(ext_module, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gene_avatars")
    import_model = ext_module("render.blender.model_import").import_model
    glb = gltf_fixtures.export_gene_glb(import_model, shared_path(*GENE), folder / "gene.glb")
    return {
        "glb": glb,
        "vrm0": gltf_fixtures.make_gene_vrm0(glb, folder / "gene0.vrm", HIDDEN_AT_REST),
        "vrm1": gltf_fixtures.make_gene_vrm1(glb, folder / "gene1.vrm", HIDDEN_AT_REST),
    }


def scene_vertices(imported):
    """Every vertex of an import where Blender shows it (modifiers applied, in the scene's axes),
    in MMD's axis order (x, up, depth)."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    found = []
    for obj in imported.meshes:
        evaluated = obj.evaluated_get(depsgraph)
        mesh = evaluated.to_mesh()
        co = np.empty(len(mesh.vertices) * 3, np.float32)
        mesh.vertices.foreach_get("co", co)
        world = np.array(obj.matrix_world)
        found.append(co.reshape(-1, 3) @ world[:3, :3].T + world[:3, 3])
        evaluated.to_mesh_clear()
    return np.concatenate(found)[:, [0, 2, 1]]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["glb", "vrm0", "vrm1"])
def test_an_avatar_is_read_where_blender_places_it(avatars, ext_module, kind):
    model = ext_module("render.formats.avatar_model").read_avatar_model(avatars[kind])
    imported = ext_module("render.blender.model_import").import_model(avatars[kind])
    # Only the avatar's own mesh: the glTF importer's bone-shape sphere once came along.
    assert [obj.type for obj in imported.meshes] == ["MESH"] and len(imported.meshes[0].data.vertices) == len(model.positions)
    # Vertex for vertex (the importer keeps the file's order: primitives one after another).
    np.testing.assert_allclose(model.positions, scene_vertices(imported), atol=2e-5)
    head = next(bone for bone in model.bones if bone.name == "頭")
    armature = imported.armature
    blender_head = np.array(armature.matrix_world @ armature.data.bones["頭"].head_local)[[0, 2, 1]]
    np.testing.assert_allclose(head.position, blender_head, atol=1e-5)
    assert head.name_en == ("" if kind == "glb" else "head")
    # The expressions as the import records them, their vertices moved as the morph's are.
    names = {record["name"] for record in imported.morphs}
    assert {morph.name for morph in model.morphs} == names
    if kind != "glb":
        blink = next(m for m in model.morphs if m.name_en in ("blink_l", "blinkLeft"))
        assert len(blink.vertex_indices) > 100 and float(np.abs(blink.vertex_offsets[:, 1]).max()) > 0.005


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["glb", "vrm0", "vrm1"])
def test_an_avatar_is_annotated_as_its_mmd_original(avatars, ext_module, kind):
    annotations = ext_module("render.dataset.annotation")
    original = annotations.annotate_model_file(shared_path(*GENE))
    avatar = annotations.annotate_model_file(avatars[kind])
    assert avatar.missing_roles(ext_module("pose.schema").get_schema("tha3")) == []
    for role in ("neck", "head", "upper_body", "eye_left", "eye_right", "shoulder_left", "shoulder_right"):
        assert avatar.bone_for(role) == original.bone_for(role), role
    morph = {role: [name for name, _, _ in avatar.morphs_for(role)] for role in ("eye_wink_left", "eye_wink_right", "mouth_aaa")}
    if kind == "glb":  # Gene's own morph names
        assert morph == {role: [name for name, _, _ in original.morphs_for(role)] for role in morph}
    else:  # the VRM expressions that bind them
        expected = {"vrm0": ["Blink_l", "Blink_r", "A"], "vrm1": ["blinkLeft", "blinkRight", "aa"]}[kind]
        assert [names[0] for names in morph.values()] == expected
    # The head band in metres, as the PMX's (the ahoge is left out of both: its first joints lie
    # 0.05 mm apart, a step in no direction, in MMD units and in metres alike).
    head, mmd = avatar.head_extent, original.head_extent.scaled(MMD_SCALE)
    assert head.bottom == pytest.approx(mmd.bottom, abs=1e-4) and head.front_z == pytest.approx(mmd.front_z, abs=1e-4)
    assert head.center_x == pytest.approx(mmd.center_x, abs=1e-4) and head.top == pytest.approx(mmd.top, abs=1e-4)


def render(ext_module, path, annotation, poses, folder):
    """Render `path` at each pose (by name: value) with `annotation`; RGBA arrays."""
    schema = ext_module("pose.schema").get_schema("tha3")
    bpy.ops.wm.read_homefile(use_empty=True)
    imported = ext_module("render.blender.model_import").import_model(path)
    renderer = ext_module("render.blender.triplets").TripletRenderer(imported, annotation, schema)
    pictures = []
    for number, named in enumerate(poses):
        pose = schema.neutral()
        for name, value in named.items():
            pose[schema.index(name)] = value
        target = folder / f"{path.stem}_{number}.png"
        renderer.render(pose, target)
        pictures.append(np.asarray(Image.open(target).convert("RGBA"), np.float64) / 255)
    return pictures


def overlap(a, b):
    """Intersection over union of two pictures' opaque pixels."""
    a, b = a[..., 3] > 0.5, b[..., 3] > 0.5
    return (a & b).sum() / (a | b).sum()


def magenta(picture):
    """The share of a picture's pixels that are Blender's missing-texture magenta."""
    red, green, blue, alpha = np.moveaxis(picture, -1, 0)
    return float(((red > 0.8) & (green < 0.25) & (blue > 0.8) & (alpha > 0.5)).mean())


@pytest.mark.slow
def test_a_pose_moves_an_avatar_as_it_moves_its_mmd_original(avatars, ext_module, tmp_path):
    # The same head band for both, so the framing is the same: then a turned head, a tilted neck,
    # a turned body, a wink and an open mouth must give the same pictures, in either VRM version
    # (a VRM 0.x avatar is turned half round in the scene: its bones' axes with it).
    annotations = ext_module("render.dataset.annotation")
    original = annotations.annotate_model_file(shared_path(*GENE))
    poses = [{}, {"head_y": 1.0, "neck_z": 0.6, "body_y": -0.8}, {"head_x": -1.0, "eye_wink_left": 1.0, "mouth_aaa": 1.0}]
    mmd = render(ext_module, shared_path(*GENE), original, poses, tmp_path)
    band = original.head_extent.scaled(MMD_SCALE)
    for kind in ("vrm0", "vrm1"):
        avatar = annotations.annotate_model_file(avatars[kind])
        avatar.set_head(band.top, band.bottom)
        pictures = render(ext_module, avatars[kind], avatar, poses, tmp_path)
        for number, (picture, reference) in enumerate(zip(pictures, mmd)):
            assert overlap(picture, reference) > 0.995, (kind, poses[number])  # (measured: 1.0)
        assert overlap(pictures[1], mmd[0]) < 0.95  # the turn shows (0.92): a turn the wrong way would not match
        # The face as the PMX's: no overlay hidden at rest drawn over it (a black band once).
        face = (slice(64, 192), slice(192, 320))
        both = (pictures[0][face][..., 3] > 0.5) & (mmd[0][face][..., 3] > 0.5)
        # (Measured 2e-5; with an overlay drawn, a black band over the eyes, 0.08.)
        assert np.abs(pictures[0][face][..., :3] - mmd[0][face][..., :3])[both].mean() < 0.01, kind
        wink = np.abs(pictures[2][face][..., :3] - pictures[0][face][..., :3]).mean()
        assert wink > 0.01


@pytest.mark.slow
def test_avatars_render_into_a_dataset_beside_mmd_models(avatars, ext_module, tmp_path):
    models = tmp_path / "models"
    (models / "mmd").mkdir(parents=True)
    for file in shared_path(*GENE).parent.iterdir():
        (models / "mmd" / file.name).symlink_to(file, target_is_directory=file.is_dir())
    for kind in ("vrm0", "vrm1"):
        (models / avatars[kind].name).symlink_to(avatars[kind])
    config = ext_module("render.dataset.plan").DatasetConfig(schema="tha3", poses_per_model=1)
    out = tmp_path / "dataset"
    run = ext_module("render.blender.dataset_run").DatasetRun(models, out, config, show_progress=False)
    summary = run.run()
    assert not (out / "failures.jsonl").read_text(encoding="utf-8").strip()
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(row["type"] for row in rows) == ["example"] * 3 + ["model"] * 3, summary
    assert {row["model"] for row in rows} == {"mmd/Gene_light.pmx", "gene0.vrm", "gene1.vrm"}
    rests = sorted(out.glob("images/train/*/rest.png"))
    pictures = {path.parent.name.split("-")[0]: np.asarray(Image.open(path).convert("RGBA"), np.float64) / 255
                for path in rests}
    assert set(pictures) == {"Gene_light", "gene0", "gene1"}
    for kind in ("gene0", "gene1"):
        assert overlap(pictures[kind], pictures["Gene_light"]) > 0.93, kind
    assert max(magenta(picture) for picture in pictures.values()) == 0.0  # every texture found
    for folder in {path.parent for path in rests}:
        expression = np.asarray(Image.open(folder / "000000_expression.png").convert("RGBA"), np.float64) / 255
        rest = pictures[folder.name.split("-")[0]]
        assert np.abs(expression - rest).max() > 0.2, folder.name  # the sampled expression shows


@pytest.mark.slow
def test_a_vrm0_avatar_is_annotated_by_hand_in_blender(avatars, ext_module, tmp_path):
    # Its root is turned half round: the handles still sit on the head band in the scene, and a
    # drag of the top handle is read back as such.
    session = ext_module("render.blender.annotation_session")
    imported = ext_module("render.blender.model_import").import_model(avatars["vrm0"])
    sidecar = tmp_path / "gene0.vrm.tha.json"
    annotation = session.start(imported.root, sidecar)
    head = annotation.head_extent
    top, bottom = (session.handle(imported.root, which) for which in ("top", "bottom"))
    np.testing.assert_allclose(top.matrix_world.translation, (head.center_x, head.front_z, head.top), atol=1e-6)
    np.testing.assert_allclose(bottom.matrix_world.translation, (head.center_x, head.front_z, head.bottom), atol=1e-6)
    name, side, _ = session.preview(imported.root, "eye_wink_left", 0)
    assert (name, side) == ("Blink_l", None)
    assert imported.meshes[0].data.shape_keys.key_blocks["ウィンク２"].value == 1.0
    top.location.z += 0.02  # the person drags the top handle up
    assert session.save(imported.root) == sidecar
    saved = ext_module("render.dataset.annotation").load_sidecar(sidecar)
    assert saved.head_top == pytest.approx(head.top + 0.02, abs=1e-5) and saved.head_bottom == pytest.approx(head.bottom)
    assert imported.meshes[0].data.shape_keys.key_blocks["ウィンク２"].value == 0.0  # the preview reset


@pytest.fixture(scope="module")
def blends(avatars, ext_module, tmp_path_factory):
    """Gene saved as .blend files: after THA Studio's import (its records on the root), and after
    Blender's own glTF import of the glb (a character THA Studio knows nothing of; its overlays
    hidden at rest by their base colour factor, which the importer wires into the shader's
    alpha: only the nodes hide them)."""
    folder = tmp_path_factory.mktemp("blends")
    bpy.ops.wm.read_homefile(use_empty=True)
    ext_module("render.blender.model_import").import_model(shared_path(*GENE))
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / "gene_tha.blend"))
    document, binary = gltf_fixtures.read_glb(avatars["glb"])
    gltf_fixtures.hide_materials(document, HIDDEN_AT_REST)
    gltf_fixtures.write_glb(folder / "gene_hidden.glb", document, binary)
    bpy.ops.wm.read_homefile(use_empty=True)
    assert bpy.ops.import_scene.gltf(filepath=str(folder / "gene_hidden.glb")) == {"FINISHED"}
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / "gene_gltf.blend"))
    bpy.ops.wm.read_homefile(use_empty=True)
    return {"tha": folder / "gene_tha.blend", "gltf": folder / "gene_gltf.blend"}


@pytest.mark.slow
def test_a_character_saved_as_a_blend_is_annotated_as_its_original(blends, ext_module):
    blend_model = ext_module("render.blender.blend_model")
    annotations = ext_module("render.dataset.annotation")
    original = annotations.annotate_model_file(shared_path(*GENE))
    existing = len(bpy.data.objects)
    for kind, scale in (("tha", 1.0), ("gltf", MMD_SCALE)):
        annotation = annotations.annotate_model_file(blends[kind], read_model=blend_model.read_blend_model)
        assert len(bpy.data.objects) == existing  # read, and the scene left as it was
        for role in ("eye_wink_left", "eye_wink_right", "mouth_aaa", "mouth_iii", "eyebrow_troubled_left"):
            assert annotation.morphs_for(role) == original.morphs_for(role), (kind, role)
        for role in ("neck", "head", "upper_body", "eye_left", "shoulder_right"):
            assert annotation.bone_for(role) == original.bone_for(role), (kind, role)
        head, mmd = annotation.head_extent, original.head_extent.scaled(scale)
        assert head.bottom == pytest.approx(mmd.bottom, rel=1e-4) and head.front_z == pytest.approx(mmd.front_z, rel=1e-4)
        assert head.top == pytest.approx(mmd.top, rel=1e-4)
    # Appended beside a model of the same names (a dataset worker's last one), it keeps its own.
    blend_model.append_blend(blends["gltf"])
    imported = blend_model.append_blend(blends["tha"])
    assert imported.root.name == "Gene_light.001" and [obj.name for obj in imported.meshes] == ["Gene_light_mesh.001"]
    assert imported.morph("あ")["shape_keys"] == {"Gene_light_mesh.001": "あ"}
    assert "Icosphere" not in bpy.data.objects  # the glTF importer's bone shape, hidden in the file, stays out


@pytest.mark.slow
def test_blend_characters_render_into_a_dataset(blends, ext_module, tmp_path):
    """Both .blend files render as the PMX does: textured (the THA one's textures are found from
    its relative paths though the models folder links to it), and without the overlays the
    glTF one hides through its material nodes alone. A .blend copied away from its textures
    renders untextured, its missing textures named in the manifest. Each is annotated on its
    own, in its own units, and finds the same head band."""
    import shutil

    models = tmp_path / "models"
    models.mkdir()
    for kind in ("tha", "gltf"):
        (models / blends[kind].name).symlink_to(blends[kind])
    shutil.copyfile(blends["tha"], models / "gene_moved.blend")  # its textures' relative paths now lead nowhere
    (models / "broken.blend").write_text("not a blend file")
    config = ext_module("render.dataset.plan").DatasetConfig(schema="tha3", poses_per_model=1)
    out = tmp_path / "dataset"
    ext_module("render.blender.dataset_run").DatasetRun(models, out, config, show_progress=False).run()
    [failure] = [json.loads(line) for line in (out / "failures.jsonl").read_text(encoding="utf-8").splitlines()]
    assert failure["model"] == "broken.blend" and "not a readable .blend file" in failure["reason"]
    rests = {path.parent.name.split("-")[0]: np.asarray(Image.open(path).convert("RGBA"), np.float64) / 255
             for path in out.glob("images/train/*/rest.png")}
    assert set(rests) == {"gene_tha", "gene_gltf", "gene_moved"}
    assert overlap(rests["gene_tha"], rests["gene_gltf"]) > 0.995
    face = (slice(64, 192), slice(192, 320))
    tha, gltf = rests["gene_tha"][face], rests["gene_gltf"][face]
    both = (tha[..., 3] > 0.5) & (gltf[..., 3] > 0.5)
    # (Measured 3e-5; with the overlays drawn, a black band over the eyes, 0.08.)
    assert np.abs(tha[..., :3] - gltf[..., :3])[both].mean() < 0.01
    assert max(magenta(picture) for picture in rests.values()) == 0.0
    records = {row["model"]: row for row in map(json.loads, (out / "manifest.jsonl").read_text().splitlines())
               if row["type"] == "model"}
    assert records["gene_tha.blend"]["texture_warnings"] == records["gene_gltf.blend"]["texture_warnings"] == []
    missing = records["gene_moved.blend"]["texture_warnings"]
    assert len(missing) == 13 and all(warning.endswith("not found") for warning in missing)
    assert "face.png of material '顔' not found" in " ".join(missing)


@pytest.mark.slow
def test_a_character_of_an_opened_blend_is_annotated_by_hand_for_the_dataset(blends, ext_module, tmp_path):
    """A dataset builder opens a .blend model (a character THA Studio did not import) to fix its
    annotation: the panel's session finds its armature from a mesh, annotates it as the dataset
    run reads the file, and writes the .blend's own sidecar, which the dataset run then reads."""
    import shutil

    session = ext_module("render.blender.annotation_session")
    annotations = ext_module("render.dataset.annotation")
    blend_model = ext_module("render.blender.blend_model")
    blend = tmp_path / "gene.blend"
    shutil.copyfile(blends["gltf"], blend)
    automatic = annotations.annotate_model_file(blend, read_model=blend_model.read_blend_model)
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.data.objects.new("not saved", bpy.data.armatures.new("rig"))
    with pytest.raises(session.SessionError, match="save this Blender file first"):
        session.start(session.model_root(bpy.data.objects["not saved"]))
    assert bpy.ops.wm.open_mainfile(filepath=str(blend)) == {"FINISHED"}
    face = next(obj for obj in bpy.data.objects if obj.type == "MESH" and obj.data.shape_keys is not None)
    root = session.model_root(face)
    assert root.type == "ARMATURE" and session.model_root(root) == root
    annotation = session.start(root)
    for role in ("eye_wink_left", "eye_wink_right", "mouth_aaa", "mouth_iii"):
        assert annotation.morphs_for(role) == automatic.morphs_for(role), role
    assert annotation.head_extent == automatic.head_extent
    top = session.handle(root, "top")
    assert session.model_root(top) == root and session.model_root(face) == root
    name, side, _ = session.preview(root, "mouth_aaa", 0)
    assert face.data.shape_keys.key_blocks[name].value == 1.0
    top.location.z += 0.01  # the person drags the top handle up
    assert session.save(root) == blend.with_name("gene.blend" + annotations.SIDECAR_SUFFIX)
    assert face.data.shape_keys.key_blocks[name].value == 0.0
    bpy.ops.wm.save_mainfile()  # (the description and the handles saved in the file)
    bpy.ops.wm.read_homefile(use_empty=True)
    read, sidecar = annotations.load_or_annotate(blend, [annotations.sidecar_path(blend)],
                                                 blend_model.read_blend_model)
    assert sidecar is not None and read.head["source"] == annotations.PERSON
    assert read.head_top == pytest.approx(automatic.head_top + 0.01, abs=1e-5)
    # Read again after the panel saved its records in it, the file gives the same model.
    again = annotations.annotate_model_file(blend, read_model=blend_model.read_blend_model)
    assert again.head_extent == automatic.head_extent and again.morph_roles == automatic.morph_roles


@pytest.mark.slow
def test_a_blend_model_is_one_character(avatars, ext_module, tmp_path):
    """A .blend with a second character saved beside the first (another armature's meshes) gives
    the first alone, keeping a rigged accessory parented to it; one with two THA Studio imports
    is refused naming both (which of them is the model cannot be told)."""
    blend_model = ext_module("render.blender.blend_model")
    import_model = ext_module("render.blender.model_import").import_model
    bpy.ops.wm.read_homefile(use_empty=True)
    assert bpy.ops.import_scene.gltf(filepath=str(avatars["glb"])) == {"FINISHED"}
    first = set(bpy.data.objects)
    [rig] = [obj for obj in first if obj.type == "ARMATURE"]
    hat_rig = bpy.data.objects.new("hat rig", bpy.data.armatures.new("hat rig"))
    hat = bpy.data.objects.new("hat", bpy.data.meshes.new("hat"))
    hat.data.from_pydata([(0, 0, 1.7), (0.1, 0, 1.7), (0, 0.1, 1.7)], [], [(0, 1, 2)])
    hat.modifiers.new("rig", "ARMATURE").object = hat_rig
    hat_rig.parent = rig
    for obj in (hat_rig, hat):
        bpy.context.scene.collection.objects.link(obj)
    assert bpy.ops.import_scene.gltf(filepath=str(avatars["glb"])) == {"FINISHED"}
    second = set(bpy.data.objects) - first - {hat, hat_rig}
    for obj in second:
        if obj.parent is None:
            obj.location.x += 1.0  # stood beside the first
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "two.blend"))
    first_names = {obj.name for obj in first if obj.hide_render is False and obj.type in blend_model.KEPT_TYPES}
    rig_name = rig.name
    bpy.ops.wm.read_homefile(use_empty=True)
    imported = blend_model.append_blend(tmp_path / "two.blend")
    kept = {obj.name for obj in imported.collection.objects}
    assert kept == (first_names | {"hat", "hat rig"}) - {"Icosphere"}
    assert set(bpy.data.objects) == set(imported.collection.objects)  # the second character is gone
    assert imported.armature.name == rig_name and [mesh.name for mesh in imported.meshes] == ["Gene_light_mesh"]

    bpy.ops.wm.read_homefile(use_empty=True)
    import_model(shared_path(*GENE))
    import_model(shared_path(*GENE), name="Gene twin")
    bpy.ops.wm.save_as_mainfile(filepath=str(tmp_path / "twins.blend"))
    bpy.ops.wm.read_homefile(use_empty=True)
    with pytest.raises(ValueError, match=r"twins\.blend: holds 2 models imported by THA Studio \(Gene twin, "
                                         r"Gene_light\): a dataset model is one character"):
        blend_model.append_blend(tmp_path / "twins.blend")
    assert len(bpy.data.objects) == 0


@pytest.mark.slow
def test_a_blend_model_runs_none_of_its_python(blends, ext_module, tmp_path):
    """A .blend in a models folder is data, not a program: a driver with a Python expression (one
    that would write a file) is not run when it is annotated and rendered, even where Blender's
    preferences trust files' scripts (a rigger's setting); the model still renders."""
    marker = tmp_path / "ran.txt"
    bpy.ops.wm.open_mainfile(filepath=str(blends["tha"]))
    mesh = next(obj for obj in bpy.data.objects if obj.type == "MESH" and obj.data.shape_keys is not None)
    driver = mesh.data.shape_keys.key_blocks["あ"].driver_add("value").driver
    driver.type = "SCRIPTED"
    driver.expression = f"__import__('pathlib').Path({str(marker)!r}).write_text('ran') and 0"
    models = tmp_path / "models"
    models.mkdir()
    bpy.ops.wm.save_as_mainfile(filepath=str(models / "hostile.blend"))
    bpy.ops.wm.read_homefile(use_empty=True)
    config = ext_module("render.dataset.plan").DatasetConfig(schema="tha3", poses_per_model=1)
    out = tmp_path / "dataset"
    preferences = bpy.context.preferences.filepaths
    try:
        preferences.use_scripts_auto_execute = True
        ext_module("render.blender.dataset_run").DatasetRun(models, out, config, show_progress=False).run()
    finally:
        preferences.use_scripts_auto_execute = False
    assert not (out / "failures.jsonl").read_text(encoding="utf-8").strip()
    assert len(list(out.glob("images/train/*/*.png"))) == 3
    assert not marker.exists()


@pytest.mark.slow
def test_a_blend_character_with_a_vertex_or_bone_out_of_reach_is_refused_by_name(blends, ext_module, tmp_path):
    """As a model file is (render/formats/coordinates.py): a .blend whose character had a vertex
    at NaN was annotated with a head band of NaN, and one with a vertex at 1e30 rendered stray
    triangles across every picture; a bone or a shape key at NaN likewise."""
    blend_model = ext_module("render.blender.blend_model")
    model_import_error = ext_module("render.blender.model_import").ModelImportError
    paths = {}
    for name in ("nan vertex", "far vertex", "nan bone", "nan shape key"):
        bpy.ops.wm.open_mainfile(filepath=str(blends["tha"]))
        if name == "nan bone":
            armature = next(obj for obj in bpy.data.objects if obj.type == "ARMATURE")
            bpy.context.view_layer.objects.active = armature
            bpy.ops.object.mode_set(mode="EDIT")
            armature.data.edit_bones["首"].head = (float("nan"), 0.0, 0.0)
            bpy.ops.object.mode_set(mode="OBJECT")
        else:
            mesh = next(obj for obj in bpy.data.objects if obj.type == "MESH")
            points = mesh.data.shape_keys.key_blocks["あ"].data if name == "nan shape key" else mesh.data.vertices
            points[10].co = (float("nan") if name.startswith("nan") else 1e30, 0.0, 1.0)
        paths[name] = tmp_path / f"{name.replace(' ', '_')}.blend"
        bpy.ops.wm.save_as_mainfile(filepath=str(paths[name]))
    bpy.ops.wm.read_homefile(use_empty=True)
    for name, problem in (("nan vertex", "mesh 'Gene_light': vertex 10 (nan, 0, 1) is not a finite number"),
                          ("far vertex", "mesh 'Gene_light': vertex 10 (1e+30, 0, 1) lies past 8,000 metres"),
                          ("nan bone", "bone '首': its head (nan, nan, nan) is not a finite number"),
                          ("nan shape key", "mesh 'Gene_light': shape key 'あ' vertex 10 (nan, 0, 1) is not a "
                                            "finite number")):
        with pytest.raises(model_import_error) as raised:
            blend_model.read_blend_model(paths[name])
        assert str(raised.value).startswith(f"{paths[name]}: {problem}"), str(raised.value)
        assert not bpy.data.objects  # nothing appended is left behind
