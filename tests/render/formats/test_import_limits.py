"""Sizes no real model has are refused before Blender builds anything, with the count and the
limit in the message: 40,000 materials or bones took Blender about 2 minutes, 20,000 one-vertex
morphs 4.6 GB (a full shape key each). Files crafted from the procedural character."""

import json
import os

import numpy as np
import pytest

from tha_studio.render.formats.avatar_expressions import AvatarFormatError, read_gltf_json
from tha_studio.render.formats.avatar_model import read_avatar_model
from tha_studio.render.formats.limits import MAX_FILE_BYTES
from tha_studio.render.formats.mmd import MMDFormatError, pmd, vmd
from tha_studio.render.formats.mmd import import_plan as P
from tha_studio.render.formats.mmd import make_character, pmx, read_model
from tha_studio.render.formats.mmd.model import Bone, Material, Morph


def with_materials(model, count):
    model.materials += [Material(name=f"extra {i}") for i in range(count)]  # drawing no faces
    return model


def with_bones(model, count):
    model.bones += [Bone(name=f"extra {i}", position=(0.0, float(i), 0.0)) for i in range(count)]
    return model


def with_one_vertex_morphs(model, count):
    model.morphs += [Morph(name=f"extra {i}", vertex_indices=np.array([i % len(model.positions)]),
                           vertex_offsets=np.ones((1, 3), np.float32)) for i in range(count)]
    return model


@pytest.mark.parametrize("grow, count, words", [
    (with_materials, 40_000, "40,011 materials, more than the 2,000"),
    (with_bones, 40_000, "bones, more than the 8,000"),
    (with_one_vertex_morphs, 20_000, "morphs, more than the 5,000"),
])
def test_counts_no_real_model_has_are_refused_from_the_file_naming_count_and_limit(tmp_path, grow, count, words):
    path = pmx.write(grow(make_character(), count), tmp_path / "crafted.pmx")
    model = read_model(path)
    with pytest.raises(P.ModelTooLargeError, match=words):
        P.plan_import(model, folder=tmp_path)


def test_shape_keys_are_limited_by_morphs_times_vertices():
    model = make_character()
    morphs_allowed = P.MAX_SHAPE_KEY_VERTICES // len(model.positions)
    assert morphs_allowed > P.MAX_MORPHS  # on a small mesh the count limit comes first
    big = make_character()
    big.positions = np.zeros((200_000, 3), np.float32)  # checked before the mesh is read further
    with_one_vertex_morphs(big, 1_000)
    with pytest.raises(P.ModelTooLargeError, match=r"1,00\d vertex and group morphs on 200,000 vertices would need "
                                                    r"2\.4 GB of shape keys"):
        P.check_sizes(big)


def test_real_models_are_well_inside_the_limits(shared):
    gene = read_model(shared / "assets" / "mmd" / "gene_light" / "Gene_light.pmx")
    P.check_sizes(gene)
    shape_keys = sum(m.kind in ("vertex", "group") for m in gene.morphs)
    assert shape_keys * len(gene.positions) * 20 < P.MAX_SHAPE_KEY_VERTICES
    assert len(gene.materials) * 100 < P.MAX_MATERIALS and len(gene.bones) * 20 < P.MAX_BONES


def test_shape_keys_can_be_asked_for_the_morphs_used_only_and_every_morph_is_still_recorded():
    # A dataset render moves only the morphs its annotation names: Blender's memory then grows
    # with those (each shape key is a full copy of the mesh), not with the morphs in the file.
    model = with_one_vertex_morphs(make_character(), 4_000)
    plan = P.plan_import(model, shape_keys_for={"まばたき", "ｳｨﾝｸ", "あ"})  # compared normalised: ｳｨﾝｸ is ウィンク
    assert [key.name for key in plan.shape_keys] == ["まばたき", "ウィンク", "あ"]
    assert len(plan.morphs) == len(model.morphs) == 4_008
    assert len(P.plan_import(model).shape_keys) == 4_008


def test_the_shape_key_memory_limit_counts_the_shape_keys_asked_for():
    big = make_character()
    big.positions = np.zeros((200_000, 3), np.float32)
    with_one_vertex_morphs(big, 1_000)
    with pytest.raises(P.ModelTooLargeError):
        P.check_sizes(big)
    P.check_sizes(big, {"まばたき"})  # one shape key of 200,000 vertices is fine


def sparse_file(path, head, size=MAX_FILE_BYTES + 2**30):
    """A file of `size` bytes that starts with `head` and takes no disk (a hole past it)."""
    with open(path, "wb") as file:
        file.write(head)
        file.truncate(size)
    return path


@pytest.mark.parametrize("read, name, head", [
    (read_model, "huge.pmx", b"PMX " + bytes(60)),
    (pmx.read, "huge.pmx", b"PMX " + bytes(60)),
    (pmd.read, "huge.pmd", b"Pmd" + bytes(60)),
    (vmd.read, "huge.vmd", b"Vocaloid Motion Data 0002" + bytes(60)),
])
def test_an_mmd_file_of_gigabytes_is_refused_before_it_is_read(tmp_path, read, name, head):
    # Read whole, a sparse 3 GB .pmx held 3.2 GB for 10 s before its reader failed on something else;
    # one of tens of GB ends the process (and a resumed dataset batch meets it again).
    path = sparse_file(tmp_path / name, head)
    with pytest.raises(MMDFormatError, match=rf"{name}: file at byte 0: is 3\.0 GiB, more than the 2 GiB"):
        read(path)


def test_an_avatar_or_its_buffer_of_gigabytes_is_refused_before_it_is_read(tmp_path):
    huge = sparse_file(tmp_path / "huge.vrm", b"glTF" + bytes(60))
    for read in (read_avatar_model, read_gltf_json):
        with pytest.raises(AvatarFormatError, match=r"huge\.vrm: is 3\.0 GiB, more than the 2 GiB"):
            read(huge)
    sparse_file(tmp_path / "big.bin", b"")
    document = {"asset": {"version": "2.0"}, "buffers": [{"uri": "big.bin", "byteLength": 12}],
                "meshes": [], "nodes": [], "scenes": [{"nodes": []}]}
    gltf = tmp_path / "avatar.gltf"
    gltf.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(AvatarFormatError,
                       match=r"avatar\.gltf: buffer 0's file 'big\.bin' is 3\.0 GiB, more than the 2 GiB"):
        read_avatar_model(gltf)
    (tmp_path / "big.bin").unlink()
    os.mkfifo(tmp_path / "big.bin")  # (read whole by Blender's importer: its read would not end)
    with pytest.raises(AvatarFormatError, match=r"avatar\.gltf: buffer 0's file 'big\.bin' is a named pipe, not a "
                                                r"buffer file"):
        read_avatar_model(gltf)
