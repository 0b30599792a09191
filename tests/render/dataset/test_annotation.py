"""Annotation: head extent from the head bone's vertices, morph and bone roles, the sidecar file."""

import json
import os

import numpy as np
import pytest

from tha_studio.pose.schema import get_schema
from tha_studio.render.dataset import annotation as A
from tha_studio.render.formats.mmd import read_model
from tha_studio.render.formats.mmd.model import Bone, Model, Morph


@pytest.fixture(scope="module")
def gene(shared):
    return read_model(shared / "assets/mmd/gene_light/Gene_light.pmx")


@pytest.fixture(scope="module")
def gene_annotation(gene):
    return A.annotate_model(gene, "Gene_light.pmx")


def bone_position(model, name):
    return np.asarray(model.bones[model.bone_index(name)].position)


def moved_vertices(model, morph_name):
    indices, offsets = A.morph_offsets(model, model.morph_index(morph_name))
    return model.positions[indices[np.linalg.norm(offsets, axis=1) > 1e-6]]


# --- Gene_light, the real model


def test_gene_head_band_runs_from_chin_to_skull_without_the_ahoge(gene, gene_annotation):
    head = gene_annotation.head
    top, bottom = head["top"], head["bottom"]
    mouth = moved_vertices(gene, "あ")
    eyes = bone_position(gene, "左目")
    ahoge = [i for i, b in enumerate(gene.bones) if b.name.startswith("アホ毛")]
    ahoge_vertices = np.isin(A.dominant_bones(gene), ahoge)
    # The chin is below the mouth and above the neck joint; the top is well above the eyes.
    assert bone_position(gene, "首")[1] < bottom < mouth[:, 1].min()
    assert mouth[:, 1].min() - bottom < 0.25 * (top - bottom)
    assert top > eyes[1] + 0.4 * (top - bottom)
    # The upward hair (アホ毛) rises above the band: it was left out.
    assert gene.positions[ahoge_vertices, 1].max() > top + 0.05
    # A head is about as tall as it is wide: the band is not the whole hair or a sliver.
    assert 2.5 < top - bottom < 4.0
    assert head["source"] == "auto" and head["units"] == "model"


def test_gene_eye_and_mouth_roles_follow_the_geometry(gene, gene_annotation):
    left = gene_annotation.morphs_for("eye_wink_left")
    right = gene_annotation.morphs_for("eye_wink_right")
    assert left == [("ウィンク２", 1.0, None)]
    assert right == [("ｳｨﾝｸ２右", 1.0, None)]  # half-width spelling found through normalize_name
    assert gene_annotation.morphs_for("mouth_aaa") == [("あ", 1.0, None)]
    # The character's left is +X in MMD: the left wink moves only vertices there.
    assert moved_vertices(gene, left[0][0])[:, 0].min() > 0
    assert moved_vertices(gene, right[0][0])[:, 0].max() < 0
    # Smile winks are their own role; the both-eyes blink is a lower candidate for each side.
    assert gene_annotation.morphs_for("eye_happy_wink_left") == [("ウィンク", 1.0, None)]
    candidates = gene_annotation.morph_roles["eye_wink_left"]["candidates"]
    assert {"name": "まばたき", "side": "left"}.items() <= next(c for c in candidates if c["name"] == "まばたき").items()
    assert all(a["confidence"] >= b["confidence"] for a, b in zip(candidates, candidates[1:]))
    assert gene_annotation.review["flagged"] is False


def test_gene_bone_roles(gene_annotation):
    expected = {"neck": "首", "head": "頭", "upper_body": "上半身", "upper_body_2": "上半身2", "eyes": "両目",
                "eye_left": "左目", "eye_right": "右目"}
    assert {role: gene_annotation.bone_for(role) for role in expected} == expected


def test_gene_can_show_every_tha_parameter(gene_annotation):
    for name in ("tha1", "tha2", "tha3"):
        schema = get_schema(name)
        assert gene_annotation.missing_roles(schema) == []
        # Gene has no なごみ (relaxed eyes); everything else has a morph or a bone.
        expected = [n for n in schema.names if not n.startswith("eye_relaxed")]
        assert gene_annotation.available_parameters(schema) == expected


# --- Small models made here, one fact each


def head_model(with_ahoge=True, with_long_hair=True):
    """A ball-shaped head on a neck: head bone 頭 at y=10, chin at y=9, skull top at y=12."""
    bones = [Bone("首", position=(0, 9, 0), parent=-1), Bone("頭", position=(0, 10, 0), parent=0, tail_offset=(0, 1, 0))]
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(400, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    ball = directions * 1.0 + (0, 11, 0)  # y from 10 to 12
    jaw = np.array([[0, 9.0, -0.8], [0.2, 9.1, -0.7], [-0.2, 9.1, -0.7]])  # chin tip in front
    points, owners = [ball, jaw], [np.full(len(ball), 1), np.full(len(jaw), 1)]
    if with_ahoge:
        bones.append(Bone("アホ毛", position=(0, 12, 0), parent=1, tail_offset=(0, 1, 0)))
        spike = np.stack([np.zeros(20), np.linspace(12, 13.5, 20), np.zeros(20)], axis=1)
        points.append(spike), owners.append(np.full(20, len(bones) - 1))
    if with_long_hair:
        bones.append(Bone("後髪", position=(0, 11, 1), parent=1, tail_offset=(0, -3, 0)))
        hair = np.stack([np.linspace(-0.8, 0.8, 30), np.linspace(11, 6, 30), np.full(30, 1.0)], axis=1)
        points.append(hair), owners.append(np.full(30, len(bones) - 1))
    positions = np.concatenate(points).astype(np.float32)
    bone_indices = np.full((len(positions), 4), -1, np.int32)
    bone_indices[:, 0] = np.concatenate(owners)
    weights = np.zeros((len(positions), 4), np.float32)
    weights[:, 0] = 1
    return Model(name="ball", positions=positions, bone_indices=bone_indices, bone_weights=weights, bones=bones)


def test_head_extent_leaves_out_upward_hair_and_hanging_hair():
    model = head_model()
    extent = A.estimate_head(model, 1)
    assert extent.bottom == pytest.approx(9.0)
    assert 11.9 < extent.top <= 12.0
    plain = A.estimate_head(head_model(with_ahoge=False, with_long_hair=False), 1)
    assert (plain.top, plain.bottom) == pytest.approx((extent.top, extent.bottom))


def curled_ahoge_model(scale):
    """The ball head with an ahoge that rises from the crown and curls over it, wide at its top,
    its first two joints a hair apart (0.0007 units, pointing down), as Gene's are; every length
    times `scale` (1: model units, 0.08: metres)."""
    model = head_model(with_ahoge=False, with_long_hair=False)
    joints = [(0.3, 11.95, 0.0), (0.3004, 11.9495, 0.0004), (0.5, 12.25, 0.0), (0.0, 12.4, 0.0), (-0.5, 12.3, 0.0),
              (-0.9, 11.8, 0.0)]
    first = len(model.bones)
    for i, joint in enumerate(joints):
        tail = first + i + 1 if i + 1 < len(joints) else -1
        model.bones.append(Bone(f"アホ毛{i}", position=joint, parent=1 if i == 0 else first + i - 1, tail_bone=tail))
    curl = np.concatenate([np.linspace(a, b, 15) for a, b in zip(joints[1:], joints[2:])])
    owners = np.concatenate([np.full(15, first + 1 + i) for i in range(len(joints) - 2)])
    model.positions = np.concatenate([model.positions, curl]).astype(np.float32) * scale
    bone_indices = np.full((len(owners), 4), -1, np.int32)
    bone_indices[:, 0] = owners
    weights = np.zeros((len(owners), 4), np.float32)
    weights[:, 0] = 1
    model.bone_indices = np.concatenate([model.bone_indices, bone_indices])
    model.bone_weights = np.concatenate([model.bone_weights, weights])
    for bone in model.bones:
        bone.position = tuple(scale * v for v in bone.position)
        bone.tail_offset = tuple(scale * v for v in bone.tail_offset)
    return model


@pytest.mark.parametrize("scale, stray", [(1.0, False), (0.08, False), (1.0, True)])
def test_an_ahoge_is_told_by_its_chain_not_by_joints_a_hair_apart(scale, stray):
    # Gene's ahoge starts with two joints 0.05 mm apart: that step points anywhere (here down), and
    # the curl, as wide as the skull at its top, was taken for the top in MMD units (not in metres).
    # A stray vertex far off (an effect's anchor) does not make the model's height, nor the step.
    model = curled_ahoge_model(scale)
    if stray:
        model.positions = np.concatenate([model.positions, [[0.0, 5000.0, 0.0]]]).astype(np.float32)
        model.bone_indices = np.concatenate([model.bone_indices, [[0, -1, -1, -1]]]).astype(np.int32)
        model.bone_weights = np.concatenate([model.bone_weights, [[1, 0, 0, 0]]]).astype(np.float32)
    assert {model.bones[b].name for b in A.upward_chains(model, 1)} == {f"アホ毛{i}" for i in range(6)}
    assert 11.9 * scale < A.estimate_head(model, 1).top <= 12.0 * scale


def test_a_spike_weighted_to_the_head_itself_is_cut_by_its_width():
    model = head_model(with_long_hair=False)
    model.bone_indices[model.bone_indices == 2] = 1  # the ahoge has no bone of its own
    assert A.estimate_head(model, 1).top < 12.05


def test_head_bone_that_moves_nothing_is_an_error():
    model = head_model()
    model.bone_indices[:, 0] = 0
    with pytest.raises(A.AnnotationError, match="moves almost no vertices"):
        A.estimate_head(model, 1)


def face_model(morphs):
    """Two vertices per side; morphs given as (name, {vertex: offset})."""
    positions = np.array([[1, 0, 0], [1.2, 0, 0], [-1, 0, 0], [-1.2, 0, 0]], np.float32)
    built = []
    for name, moves in morphs:
        indices = np.array(sorted(moves), np.int64)
        offsets = np.array([moves[i] for i in sorted(moves)], np.float32)
        built.append(Morph(name, kind="vertex", vertex_indices=indices, vertex_offsets=offsets))
    return Model(name="face", positions=positions, morphs=built)


LEFT_DOWN = {0: (0, -0.1, 0), 1: (0, -0.1, 0)}
RIGHT_DOWN = {2: (0, -0.1, 0), 3: (0, -0.1, 0)}


def test_spelling_variants_and_vrm_arkit_names_are_recognised():
    assert A.split_side("ウインク右") == ("ウインク", "right")
    assert A.split_side("ｳｨﾝｸ２右") == ("ｳｨﾝｸ２", "right")
    assert A.split_side("eyeBlinkLeft") == ("eyeBlink", "left")
    assert A.split_side("Blink_R") == ("Blink", "right")
    assert A.split_side("aa") == ("aa", None)
    model = face_model([("ｳｨﾝｸ２", LEFT_DOWN), ("Blink_R", RIGHT_DOWN), ("A", {**LEFT_DOWN, **RIGHT_DOWN})])
    roles = A.morph_candidates(model)
    assert roles["eye_wink_left"][0].name == "ｳｨﾝｸ２"
    assert roles["eye_wink_right"][0].name == "Blink_R"
    assert roles["mouth_aaa"][0].name == "A"


def test_vroid_names_are_recognised():
    # VRoid Studio's own morph and bone names, as a glb exported from it (without VRM presets) has them.
    both = {**LEFT_DOWN, **RIGHT_DOWN}
    model = face_model([("Fcl_EYE_Close_L", LEFT_DOWN), ("Fcl_EYE_Close_R", RIGHT_DOWN), ("Fcl_MTH_A", both),
                        ("Fcl_EYE_Joy_L", LEFT_DOWN), ("Fcl_BRW_Angry", both), ("Fcl_MTH_O", both)])
    roles = A.morph_candidates(model)
    assert [roles[role][0].name for role in ("eye_wink_left", "eye_wink_right", "mouth_aaa", "mouth_ooo")] == [
        "Fcl_EYE_Close_L", "Fcl_EYE_Close_R", "Fcl_MTH_A", "Fcl_MTH_O"]
    assert roles["eye_happy_wink_left"][0].name == "Fcl_EYE_Joy_L"
    assert (roles["eyebrow_angry_right"][0].name, roles["eyebrow_angry_right"][0].side) == ("Fcl_BRW_Angry", "right")
    model.bones = [Bone("J_Bip_C_Neck"), Bone("J_Bip_C_Head", parent=0), Bone("J_Adj_L_FaceEye", position=(0.03, 1.5, 0), parent=1),
                   Bone("J_Adj_R_FaceEye", position=(-0.03, 1.5, 0), parent=1), Bone("J_Bip_L_Shoulder", position=(0.1, 1.3, 0))]
    bones = A.bone_candidates(model)
    assert {role: bones[role][0].name for role in ("neck", "head", "eye_left", "eye_right", "shoulder_left")} == {
        "neck": "J_Bip_C_Neck", "head": "J_Bip_C_Head", "eye_left": "J_Adj_L_FaceEye", "eye_right": "J_Adj_R_FaceEye",
        "shoulder_left": "J_Bip_L_Shoulder"}


def test_geometry_overrules_a_name_that_names_the_wrong_side():
    model = face_model([("ウインク右", LEFT_DOWN)])  # says right, closes the left eye
    roles = A.morph_candidates(model)
    assert "eye_happy_wink_right" not in roles
    candidate = roles["eye_happy_wink_left"][0]
    assert candidate.confidence < 0.9 and "moves the left side" in candidate.why


def test_a_both_eyes_blink_serves_each_wink_on_its_half():
    annotation = A.annotate_model(face_model([("まばたき", {**LEFT_DOWN, **RIGHT_DOWN})]), "face.pmx")
    assert annotation.morphs_for("eye_wink_left") == [("まばたき", 1.0, "left")]
    assert annotation.morphs_for("eye_wink_right") == [("まばたき", 1.0, "right")]


def test_a_model_without_roles_is_flagged_with_reasons():
    annotation = A.annotate_model(face_model([("empty", {})]), "face.pmx")
    assert annotation.review["flagged"]
    assert "no morph found for eye_wink_left" in annotation.review["reasons"]
    assert "no head bone found" in annotation.review["reasons"]
    assert set(annotation.missing_roles(get_schema("tha1"))) >= {"eye_wink_left", "mouth_aaa", "neck", "head", "head extent"}


def test_tha1_parameters_map_onto_roles():
    assert A.morph_roles_for_schema(get_schema("tha1")) == {
        "left_eye": "eye_wink_left", "right_eye": "eye_wink_right", "mouth": "mouth_aaa"}
    tha3 = A.morph_roles_for_schema(get_schema("tha3"))
    assert len(tha3) == 37 and "iris_rotation_x" not in tha3 and tha3["mouth_aaa"] == "mouth_aaa"


# --- The sidecar


def test_sidecar_round_trip_and_person_edits_survive_reannotation(tmp_path, shared):
    model_path = tmp_path / "Gene_light.pmx"
    model_path.symlink_to(shared / "assets/mmd/gene_light/Gene_light.pmx")
    annotation, path = A.annotate_file(model_path)
    assert path == tmp_path / "Gene_light.pmx.tha.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == A.SIDECAR_FORMAT and data["version"] == A.SIDECAR_VERSION
    assert len(data["model"]["sha256"]) == 64
    loaded = A.load_sidecar(path)
    assert loaded.to_json() == annotation.to_json()

    loaded.set_morph_role("eye_wink_left", "まば左")
    loaded.set_head(19.5, 16.7)
    loaded.flag("hair covers the eyes")
    A.save_sidecar(loaded, path)
    again, _ = A.annotate_file(model_path)
    assert again.morphs_for("eye_wink_left") == [("まば左", 1.0, None)]
    assert again.morph_roles["eye_wink_left"]["source"] == "person"
    assert (again.head_top, again.head_bottom) == (19.5, 16.7)
    assert again.review == {"flagged": True, "reasons": ["hair covers the eyes"], "source": "person"}
    assert again.morphs_for("eye_wink_right") == [("ｳｨﾝｸ２右", 1.0, None)]  # auto entries refreshed
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_hand_written_person_entry_without_a_confidence_survives_reannotation(tmp_path, shared):
    """A person who writes a role into the sidecar by hand gives its morph, not a confidence: the
    re-annotation stopped on it (KeyError: 'confidence')."""
    model_path = tmp_path / "Gene_light.pmx"
    model_path.symlink_to(shared / "assets/mmd/gene_light/Gene_light.pmx")
    _, path = A.annotate_file(model_path)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["morph_roles"]["mouth_aaa"] = {"morphs": [{"name": "あ２"}], "source": "person"}
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    again, _ = A.annotate_file(model_path)
    assert again.morphs_for("mouth_aaa") == [("あ２", 1.0, None)]
    assert not any("mouth_aaa" in reason for reason in again.review.get("reasons", []))
    # Saved by Notepad: UTF-8 with a byte-order mark (before 2019) or "Unicode" (UTF-16), each with
    # Windows line ends. The first was refused as "not valid JSON", the second as not UTF-8.
    text = json.dumps(data, ensure_ascii=False, indent=2).replace("\n", "\r\n")
    for encoded in (b"\xef\xbb\xbf" + text.encode("utf-8"), text.encode("utf-16")):
        path.write_bytes(encoded)
        assert A.load_sidecar(path).morphs_for("mouth_aaa") == [("あ２", 1.0, None)]
        assert A.annotate_file(model_path)[0].morphs_for("mouth_aaa") == [("あ２", 1.0, None)]


def test_sidecar_in_an_annotation_folder(tmp_path):
    assert A.sidecar_path("/models/a/b.pmx", tmp_path, "a/b.pmx") == tmp_path / "a/b.pmx.tha.json"


@pytest.mark.parametrize(
    "text, message",
    [
        ("{", "not valid JSON"),
        ('{"format": "other"}', "not a THA Studio annotation"),
        ('{"format": "tha_studio.annotation", "version": 99, "model": {"file": "m"}}', "version 99 is not supported"),
        ('{"format": "tha_studio.annotation", "version": 1, "model": {"file": "m"}, "head": {"top": 1, "bottom": 2}}',
         "not above head bottom"),
        ('{"format": "tha_studio.annotation", "version": 1, "model": {"file": "m"}, "morph_roles": {"mouth_aaa": {"morphs": "あ"}}}',
         "needs a list of morphs"),
        # Hand-edited or damaged sidecars: each would otherwise end in a traceback or frame nothing.
        ('{"format": "tha_studio.annotation", "version": 1, "model": {"file": "m"}, "head": "top"}',
         "malformed annotation: 'head' must be an object"),
        ('{"format": "tha_studio.annotation", "version": 1, "model": 3}',
         "malformed annotation: 'model' must be an object naming the model's 'file'"),
        # Fields the panel, the review sheet and a re-annotation read: a person's entry with a
        # confidence that is no number stopped a re-annotation with a TypeError.
        ('{"format": "tha_studio.annotation", "version": 1, "model": {"file": "m"}, "morph_roles": {"mouth_aaa": '
         '{"morphs": [{"name": "あ"}], "source": "person", "confidence": {"a": 1}}}}',
         r"morph role 'mouth_aaa': confidence must be a number, got \{'a': 1\}"),
        ('{"format": "tha_studio.annotation", "version": 1, "model": {"file": "m"}, "bone_roles": {"head": '
         '{"bone": "頭", "candidates": [7]}}}', "bone role 'head': candidates must be a list of named"),
        ('{"format": "tha_studio.annotation", "version": 1, "model": {"file": "m"}, "review": {"reasons": [1]}}',
         "review reasons must be a list of text"),
        ('{"format": "tha_studio.annotation", "version": 1, "model": {"file": "m"}, "head": {"top": 1e300, "bottom": 2}}',
         r"head \(top, bottom, center_x, front_z\) \(1e\+300, 2, 0, 0\) lies past 100,000 units"),
        ('{"format": "tha_studio.annotation", "version": 1, "model": {"file": "m"}, '
         '"head": {"top": 3, "bottom": 2, "front_z": NaN}}', "is not a finite number"),
        ('{"format": "tha_studio.annotation", "version": 1, "model": {"file": "m"}, '
         '"morph_roles": {"mouth_aaa": {"morphs": [{"name": "あ", "weight": "1"}]}}}', "weight must be a number, got '1'"),
    ],
)
def test_bad_sidecars_name_the_file_and_the_problem(tmp_path, text, message):
    path = tmp_path / "m.pmx.tha.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(A.AnnotationError, match=message) as error:
        A.load_sidecar(path)
    assert str(path) in str(error.value)


def test_a_sidecar_keeps_a_model_file_name_that_is_not_utf8(tmp_path, shared):
    name = os.fsdecode("初音ミク".encode("cp932") + b".pmx")  # as a Japanese zip unpacks on Linux
    model_path = tmp_path / name
    model_path.symlink_to(shared / "assets/mmd/gene_light/Gene_light.pmx")
    annotation, path = A.annotate_file(model_path)
    assert os.fsencode(path.name) == "初音ミク".encode("cp932") + b".pmx.tha.json"
    path.read_bytes().decode("utf-8")  # the sidecar itself is UTF-8
    assert A.load_sidecar(path).to_json() == annotation.to_json()


# --- Long names and temporary files


def ended_process_id():
    """The id of a process that has ended (a writer killed mid-write leaves its temporary file)."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_legal_244_byte_model_file_name_is_annotated_beside_and_in_a_dataset(tmp_path):
    from tha_studio.render.dataset import plan
    from tha_studio.render.formats.mmd import write_character

    name = "初音ミク" * 20 + ".pmx"  # 240 + 4 bytes: legal (255 at most), its sidecar 253
    assert len(name.encode()) == 244
    written = write_character(tmp_path / "models" / "character")
    model = written.rename(written.with_name(name))
    annotation, sidecar = A.annotate_file(model)
    assert sidecar.name == name + ".tha.json" and A.load_sidecar(sidecar).model_file == name
    entry = plan.discover_models(tmp_path / "models")[0]
    plan.load_or_make_annotation(entry, tmp_path / "out", annotations_dir=tmp_path / "elsewhere")
    copied = tmp_path / "out" / plan.ANNOTATIONS_FOLDER / "character" / (name + ".tha.json")
    assert copied.is_file()
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]

    too_long = tmp_path / ("あ" * 82 + ".pmx")  # 250 bytes: legal, but its sidecar's name would not be
    with pytest.raises(A.AnnotationError, match="259 bytes, more than the 255"):
        A.save_sidecar(annotation, A.sidecar_path(too_long))


@pytest.mark.parametrize("name", ["Gene_light.pmx", "初音ミク" * 20 + ".pmx"])
def test_temporary_sidecars_a_killed_writer_left_are_removed_by_the_next_write(tmp_path, shared, name):
    from tha_studio.atomic_files import temp_path_for

    model = tmp_path / name
    model.symlink_to(shared / "assets/mmd/gene_light/Gene_light.pmx")
    sidecar = A.sidecar_path(model)
    dead = temp_path_for(sidecar, A.temp_tag(ended_process_id()))
    alive = temp_path_for(sidecar, A.temp_tag(os.getppid()))  # a writer still at work
    other_machine = temp_path_for(sidecar, "ann-00000000-" + str(ended_process_id()))
    shard_run = temp_path_for(sidecar, "s1of2-123")  # a dataset run's: its own start cleans those
    for temp in (dead, alive, other_machine, shard_run):
        assert len(os.fsencode(temp.name)) <= 255
        temp.write_text("{half a sidecar")
    A.annotate_file(model)
    assert not dead.exists()
    assert alive.exists() and other_machine.exists() and shard_run.exists()
    assert A.load_sidecar(sidecar).model_file == name
