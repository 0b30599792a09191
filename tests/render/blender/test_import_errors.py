"""Bad input to the importer: a clear error naming the file, no crash, nothing left in the scene."""

import json
import struct
import sys

import bpy
import numpy as np
import pytest

import gltf_fixtures
from shared_assets import ROOT  # the repository root

KINDS = ("objects", "meshes", "armatures", "materials", "images", "collections", "shape_keys", "actions")


def data_counts():
    return {kind: len(getattr(bpy.data, kind)) for kind in KINDS}


@pytest.fixture
def model_import(ext_module):
    return ext_module("render.blender.model_import")


@pytest.fixture
def pmx_bytes(shared):
    return shared.joinpath("assets", "mmd", "gene_light", "Gene_light.pmx").read_bytes()


def bad_files(folder, pmx_bytes):
    """name -> (path, words the error must contain)."""
    (folder / "empty.pmx").write_bytes(b"")
    (folder / "folder.pmx").mkdir()
    (folder / "text.pmx").write_text("just some text, not a model\n")
    (folder / "truncated.pmx").write_bytes(pmx_bytes[: len(pmx_bytes) // 3])
    (folder / "header_only.pmx").write_bytes(pmx_bytes[:20])
    (folder / "model.obj").write_text("v 0 0 0\n")
    (folder / "garbage.glb").write_bytes(b"\x00\x01garbage" * 10)
    (folder / "pmx_named.vrm").write_bytes(pmx_bytes[:4096])
    for name, head in (("huge.pmx", pmx_bytes[:4096]), ("huge.vrm", b"glTF" + bytes(60)), ("huge.bin", b"")):
        with open(folder / name, "wb") as sparse:  # 3 GiB, taking no disk: refused unread
            sparse.write(head)
            sparse.truncate(3 * 2**30)
    # A .gltf of a few hundred bytes whose buffer file is the 3 GiB one: Blender's importer would read it whole.
    # Then buffers and images no file system or reader takes (tracebacks: os.stat's ValueError, a
    # TypeError, an AttributeError).
    for name, entries in (("huge_buffer", {}), ("nul_uri", {"buffers": [{"uri": "a\x00b.bin", "byteLength": 36}]}),
                          ("buffers_number", {"buffers": 5}), ("images_text", {"images": ["x"], "buffers": [
                              {"uri": "data:application/octet-stream;base64," + "A" * 48, "byteLength": 36}]})):
        (folder / f"{name}.gltf").write_text(json.dumps({
            "asset": {"version": "2.0"}, "buffers": [{"uri": "huge.bin", "byteLength": 36}],
            "bufferViews": [{"buffer": 0, "byteLength": 36}],
            "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3",
                           "min": [0, 0, 0], "max": [1, 1, 0]}],
            "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
            "nodes": [{"mesh": 0}], "scenes": [{"nodes": [0]}], **entries}), encoding="utf-8")
    return {
        "missing": (folder / "missing.pmx", "no such file"),
        "empty": (folder / "empty.pmx", "empty"),
        "folder": (folder / "folder.pmx", "a folder, not a model file"),
        "text": (folder / "text.pmx", "not an MMD model"),
        "truncated": (folder / "truncated.pmx", ""),
        "header_only": (folder / "header_only.pmx", ""),
        "suffix": (folder / "model.obj", "not a model file"),
        "garbage_glb": (folder / "garbage.glb", "glTF"),
        "pmx_named_vrm": (folder / "pmx_named.vrm", "glTF"),
        "huge_pmx": (folder / "huge.pmx", "is 3.0 GiB, more than the 2 GiB this importer reads"),
        "huge_vrm": (folder / "huge.vrm", "is 3.0 GiB, more than the 2 GiB this importer reads"),
        "huge_gltf_buffer": (folder / "huge_buffer.gltf",
                             "buffer 0's file 'huge.bin' is 3.0 GiB, more than the 2 GiB this importer reads"),
        "nul_buffer_uri": (folder / "nul_uri.gltf", "buffer 0's uri 'a\\x00b.bin' is not a file name"),
        "buffers_not_a_list": (folder / "buffers_number.gltf", "'buffers' is not a list of objects"),
        "images_not_objects": (folder / "images_text.gltf", "'images' is not a list of objects"),
    }


@pytest.mark.parametrize("case", ["missing", "empty", "folder", "text", "truncated", "header_only", "suffix",
                                  "garbage_glb", "pmx_named_vrm", "huge_pmx", "huge_vrm", "huge_gltf_buffer",
                                  "nul_buffer_uri", "buffers_not_a_list", "images_not_objects"])
def test_bad_file_is_a_clear_error_and_leaves_nothing(case, tmp_path, pmx_bytes, model_import):
    path, words = bad_files(tmp_path, pmx_bytes)[case]
    before = data_counts()
    with pytest.raises(ValueError) as error:
        model_import.import_model(path)
    message = str(error.value)
    assert str(path) in message and words in message and "\n" not in message
    assert data_counts() == before


def test_glb_whose_binary_data_is_cut_short_leaves_nothing(tmp_path, model_import):
    glb = gltf_fixtures.export_face_glb(tmp_path / "face.glb")
    document, rest = gltf_fixtures.read_glb(glb)
    cut = gltf_fixtures.write_glb(tmp_path / "cut.glb", document, rest[: len(rest) // 4])
    before = data_counts()
    with pytest.raises(ValueError) as error:
        model_import.import_model(cut)
    assert str(cut) in str(error.value) and "glTF importer" in str(error.value)
    assert data_counts() == before



def test_glb_whose_nodes_form_a_cycle_is_refused_before_blenders_importer(tmp_path, model_import):
    # Blender's glTF importer never returned on this file (a skinned avatar whose root joint hangs
    # under two nodes that are each other's parent): an import, or a dataset run, hung for ever.
    sys.path.insert(0, str(ROOT / "tests" / "render" / "formats"))
    from test_avatar_model import avatar_document, write_gltf

    document, data = avatar_document()
    document["nodes"] += [{"name": "A", "children": [0, 5]}, {"name": "B", "children": [4]}]
    looped = write_gltf(tmp_path / "looped.glb", document, data)
    before = data_counts()
    with pytest.raises(ValueError, match="looped.glb: node 4 is its own ancestor$"):
        model_import.import_model(looped)
    assert data_counts() == before


@pytest.mark.parametrize("value, words", [(float("nan"), "is not a finite number"), (3e38, "lies past 8,000 metres")])
def test_glb_whose_vertices_are_not_real_coordinates_is_refused_and_leaves_nothing(value, words, tmp_path,
                                                                                  model_import):
    """Blender's glTF importer takes NaN and 1e38 positions as they come; such an avatar would draw
    stray triangles across every render."""
    glb = gltf_fixtures.export_face_glb(tmp_path / "face.glb")
    document, rest = gltf_fixtures.read_glb(glb)
    accessor = document["accessors"][document["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    view = document["bufferViews"][accessor["bufferView"]]
    first_x = 8 + view.get("byteOffset", 0) + accessor.get("byteOffset", 0)  # 8: the BIN chunk's header
    broken = bytearray(rest)
    broken[first_x : first_x + 4] = struct.pack("<f", value)
    bad = gltf_fixtures.write_glb(tmp_path / "bad.glb", document, bytes(broken))
    before = data_counts()
    with pytest.raises(ValueError) as error:
        model_import.import_model(bad)
    message = str(error.value)
    assert str(bad) in message and "mesh 'Face'" in message and words in message
    assert data_counts() == before

def test_model_that_fails_halfway_through_building_leaves_nothing(shared, model_import):
    from tha_studio.render.formats.mmd import read_model

    model = read_model(shared / "assets" / "mmd" / "gene_light" / "Gene_light.pmx")
    # A broken morph (offsets for fewer vertices than it names) fails in the shape-key step,
    # after the armature, mesh, materials and images exist.
    broken = next(m for m in model.morphs if m.kind == "vertex" and len(m.vertex_indices) > 2)
    broken.vertex_offsets = broken.vertex_offsets[:2]  # numpy cannot broadcast 2 rows to more
    before = data_counts()
    with pytest.raises(ValueError) as error:
        model_import.build_model(model, "broken", shared / "assets" / "mmd" / "gene_light", source="broken.pmx")
    assert "broken.pmx: cannot be built in Blender" in str(error.value)
    assert data_counts() == before
    assert bpy.context.object is None or bpy.context.object.mode == "OBJECT"


def test_inconsistent_model_is_refused_before_building(model_import):
    from tha_studio.render.formats.mmd.model import Material, Model

    model = Model(positions=np.zeros((3, 3), np.float32), faces=np.array([[0, 1, 3]]),
                  materials=[Material(name="m", index_count=3)])
    with pytest.raises(ValueError, match="hand.pmx: a face uses a vertex index outside 0..2"):
        model_import.build_model(model, "hand", ".", source="hand.pmx")
    model.faces = np.array([[0, 1, 2]])
    model.materials[0].index_count = 6
    with pytest.raises(ValueError, match="the materials draw 6 face indices but the model has 3"):
        model_import.build_model(model, "hand", ".", source="hand.pmx")
    assert len(bpy.data.objects) == 0


def textured_triangle(folder, texture):
    """A one-triangle .pmx in `folder` whose one material shows the texture path `texture`."""
    from tha_studio.render.formats.mmd import pmx
    from tha_studio.render.formats.mmd.model import Material, Model

    model = Model(
        positions=np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32),
        normals=np.array([[0, 0, -1]] * 3, np.float32),
        uvs=np.zeros((3, 2), np.float32),
        weight_types=np.zeros(3, np.uint8),
        bone_indices=np.array([[-1, -1, -1, -1]] * 3, np.int32),
        bone_weights=np.zeros((3, 4), np.float32),
        edge_scales=np.ones(3, np.float32),
        faces=np.array([[0, 1, 2]]),
        textures=[texture],
        materials=[Material(name="skin", texture=0, index_count=3)],
    )
    return pmx.write(model, folder / "tri.pmx")


def test_missing_texture_is_a_warning_not_a_failure(tmp_path, model_import):
    imported = model_import.import_model(textured_triangle(tmp_path, "tex\\gone.png"))
    assert len(imported.warnings) == 1 and "tex\\\\gone.png" in imported.warnings[0]
    assert len(imported.meshes[0].data.polygons) == 1


def test_a_texture_declaring_a_billion_pixels_is_left_out_with_a_warning_not_decoded(tmp_path, model_import):
    """A small PNG declaring 30000x30000 pixels, 3.6 GB decoded (as Gene_light's face texture, a
    dataset run spent its whole memory budget on it and skipped the model; an interactive import
    would take the gigabytes when the texture is first shown)."""
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    (tmp_path / "tex").mkdir()
    (tmp_path / "tex" / "huge.png").write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 6, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
    images = len(bpy.data.images)
    imported = model_import.import_model(textured_triangle(tmp_path, "tex\\huge.png"))
    (warning,) = imported.warnings
    assert "huge.png of material 'skin' left out: Image size (900000000 pixels) exceeds limit" in warning
    assert len(bpy.data.images) == images and len(imported.meshes[0].data.polygons) == 1


def test_operator_reports_bad_files_and_imports_good_ones(tmp_path, shared):
    bad = tmp_path / "bad.pmx"
    bad.write_text("not a model")
    before = data_counts()
    with pytest.raises(RuntimeError, match="not an MMD model"):  # bpy turns an ERROR report into this
        bpy.ops.tha_studio.import_model(filepath=str(bad))
    assert data_counts() == before
    gene = shared / "assets" / "mmd" / "gene_light" / "Gene_light.pmx"
    assert bpy.ops.tha_studio.import_model(filepath=str(gene), scale=0.1) == {"FINISHED"}
    assert bpy.context.view_layer.objects.active.type == "ARMATURE"
    assert len(bpy.context.selected_objects) == 2
    assert bpy.data.armatures[0].bones["頭"].head_local.z > 1.6  # 0.1 m per unit: taller than at 0.08


def test_glb_holding_an_image_of_a_billion_pixels_is_refused_before_blenders_importer(tmp_path, model_import):
    # Blender's importer takes every image as it is and decodes it whole when first shown: this
    # 3.5 MB file's PNG took 3.9 GB and 11 s the first time its size was asked for.
    import zlib

    sys.path.insert(0, str(ROOT / "tests" / "render" / "formats"))
    from test_avatar_model import avatar_document, write_gltf

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # 30,000 rows of transparent black, each its filter byte and 4 x 30,000 zeros: deflated once for
    # 250 rows and that block repeated (a full flush makes each block stand alone; compressing all
    # 3.6 GB took 30 s), in a zlib stream whose checksum is that of zeros.
    side, rows_a_block = 30_000, 250
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = deflate.compress(bytes((1 + side * 4) * rows_a_block)) + deflate.flush(zlib.Z_FULL_FLUSH)
    adler32_of_zeros = (((1 + side * 4) * side % 65521) << 16) | 1
    rows = (b"\x78\xda" + block * (side // rows_a_block) + deflate.flush(zlib.Z_FINISH)
            + struct.pack(">I", adler32_of_zeros))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0))
           + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    document, data = avatar_document()
    data += bytes(-len(data) % 4)
    document["bufferViews"].append({"buffer": 0, "byteOffset": len(data), "byteLength": len(png)})
    data += png
    document["buffers"][0]["byteLength"] = len(data)
    document["images"] = [{"name": "Face", "bufferView": len(document["bufferViews"]) - 1, "mimeType": "image/png"}]
    document["textures"] = [{"source": 0}]
    document["materials"] = [{"name": "Skin", "pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}]
    bomb = write_gltf(tmp_path / "bomb.glb", document, data)
    before = data_counts()
    with pytest.raises(ValueError, match=r"bomb.glb: its image 'Face' is too large to load \(Image size \(900000000 "
                                         r"pixels\) exceeds limit"):
        model_import.import_model(bomb)
    assert data_counts() == before
