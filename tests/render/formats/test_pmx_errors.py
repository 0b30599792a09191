"""Bad PMX input: every cut, wrong header, absurd counts and broken references end in an
MMDFormatError that names the file, the section and the byte offset (no crash, no hang)."""

import struct
import warnings

import numpy as np
import pytest

from test_pmx import full_model
from tha_studio.render.formats.mmd import MMDFormatError, pmx, read_model
from tha_studio.render.formats.mmd.import_plan import plan_import

SECTIONS_20 = ["header", "vertices", "faces", "textures", "materials", "bones", "morphs", "display frames",
               "rigid bodies", "joints"]


@pytest.fixture(scope="module")
def data():
    return pmx.to_bytes(full_model(2.0))


def parse_error(data, path="bad.pmx"):
    with pytest.raises(MMDFormatError) as error:
        pmx.parse(data, path)
    message = str(error.value)
    assert message.startswith(f"{path}: {error.value.section} at byte {error.value.offset}: ")
    assert 0 <= error.value.offset <= len(data)
    return error.value


def test_cut_at_every_section_boundary_names_the_missing_section(data):
    offsets = pmx.section_offsets(data)
    assert list(offsets) == SECTIONS_20
    for section, start in offsets.items():
        if section == "header":
            continue
        error = parse_error(data[:start])
        assert error.section == section, (section, str(error))
        assert "ends" in error.problem


def test_cut_at_every_byte_is_an_error(data):
    for end in range(len(data)):
        parse_error(data[:end])
    assert pmx.parse(data).vertex_count == 6


def test_pmx_2_1_may_end_before_its_soft_bodies():
    data = pmx.to_bytes(full_model(2.1))
    start = pmx.section_offsets(data)["soft bodies"]
    assert pmx.parse(data[:start]).soft_bodies == []
    assert parse_error(data[: start + 3]).section == "soft bodies"


def test_zero_byte_and_tiny_files(tmp_path):
    empty = tmp_path / "empty.pmx"
    empty.write_bytes(b"")
    with pytest.raises(MMDFormatError, match="empty.pmx: header at byte 0: the file is empty"):
        read_model(empty)
    assert "too short" in parse_error(b"").problem
    assert "too short" in parse_error(b"PM").problem


def test_wrong_magic_version_and_globals(data):
    assert "not a PMX file" in parse_error(b"XMP " + data[4:]).problem
    for version in (1.0, 2.2, 3.0):
        error = parse_error(data[:4] + struct.pack("<f", version) + data[8:])
        assert f"unsupported PMX version {version}" in error.problem and error.offset == 4
    assert "globals" in parse_error(data[:8] + b"\x07" + data[9:]).problem
    assert "encoding 2" in parse_error(data[:9] + b"\x02" + data[10:]).problem
    assert "additional UV" in parse_error(data[:10] + b"\x05" + data[11:]).problem
    error = parse_error(data[:14] + b"\x03" + data[15:])  # sizes: vertex 11, texture 12, material 13, bone 14
    assert "bone index size is 3" in error.problem and error.offset == 14


def test_absurd_and_negative_counts(data):
    start = pmx.section_offsets(data)["vertices"]
    for count in (2**31 - 1, 10**8):
        error = parse_error(data[:start] + struct.pack("<i", count) + data[start + 4 :])
        assert error.section == "vertices" and f"count {count} needs at least" in error.problem
    error = parse_error(data[:start] + struct.pack("<i", -5) + data[start + 4 :])
    assert "negative vertex count -5" in error.problem
    # A text length far past the end of the file.
    error = parse_error(data[:17] + struct.pack("<i", 2**30) + data[21:])
    assert error.section == "header" and "length 1073741824" in error.problem
    error = parse_error(data[:17] + struct.pack("<i", 3) + data[21:])
    assert "odd UTF-16" in error.problem


def test_broken_references_name_the_item():
    model = full_model(2.0)
    model.faces[1, 2] = 6  # 6 vertices: indices 0..5
    assert "face index 5 refers to vertex 6" in parse_error(pmx.to_bytes(model)).problem
    model = full_model(2.0)
    model.bone_indices[0, 0] = 9
    error = parse_error(pmx.to_bytes(model))
    assert error.section == "vertices" and "weighted to bone 9" in error.problem
    model = full_model(2.0)
    model.bones[2].parent = 7
    error = parse_error(pmx.to_bytes(model))
    assert error.section == "bones" and "bone 2 (首) parent is 7" in error.problem
    model = full_model(2.0)
    model.morphs[0].vertex_indices[1] = 40
    assert "morph 0 (あ) offset 1 refers to vertex 40" in parse_error(pmx.to_bytes(model)).problem
    model = full_model(2.0)
    model.materials[0].texture = 5
    assert "material 0 texture index is 5, but there are 3 textures" in parse_error(pmx.to_bytes(model)).problem
    model = full_model(2.1)
    model.morphs[-1].impulse_offsets[0].rigid_body = 2
    error = parse_error(pmx.to_bytes(model))
    assert error.section == "morphs" and "refers to rigid body 2, but there are 2" in error.problem
    model = full_model(2.0)
    model.materials[1].index_count = 9
    assert "draw 12 face indices, the file has 6" in parse_error(pmx.to_bytes(model)).problem


def test_unknown_weight_and_morph_types(data):
    model = full_model(2.0)
    raw = bytearray(pmx.to_bytes(model))
    start = pmx.section_offsets(bytes(raw))["vertices"] + 4
    raw[start + 32 + 32] = 9  # the first vertex's weight type (2 additional UVs)
    assert "vertex 0 has unknown weight type 9" in parse_error(bytes(raw)).problem
    model.morphs.append(model.morphs[0])
    raw = bytearray(pmx.to_bytes(model))
    text = "あ".encode("utf-16-le")
    last = raw.rindex(struct.pack("<i", len(text)) + text + struct.pack("<i", 2) + "a".encode("utf-16-le"))
    raw[last + 4 + 2 + 4 + 2 + 1] = 9  # its type byte: flip is PMX 2.1 only
    assert "unknown type 9 for PMX 2.0" in parse_error(bytes(raw)).problem


def test_coordinates_that_are_not_numbers_or_out_of_reach_name_the_item():
    """A damaged file can hold NaN, infinities or 1e38 where a coordinate belongs; imported, such a
    model draws stray triangles across every render (found by mutating Gene_light's vertices)."""
    model = full_model(2.0)
    model.positions[3, 1] = float("nan")
    error = parse_error(pmx.to_bytes(model))
    assert error.section == "vertices" and "vertex 3 position (" in error.problem
    assert error.problem.endswith("is not a finite number")
    model = full_model(2.0)
    model.positions[2, 0] = 3e38
    error = parse_error(pmx.to_bytes(model))
    assert "vertex 2 position (3e+38" in error.problem and "past 100,000 MMD units" in error.problem
    model = full_model(2.0)
    model.bones[2].position = (0.0, float("inf"), 0.0)
    error = parse_error(pmx.to_bytes(model))
    assert error.section == "bones" and "bone 2 (首) position (0, inf, 0) is not a finite number" in error.problem
    model = full_model(2.0)
    model.morphs[0].vertex_offsets[1] = (0.0, 1e6, 0.0)
    error = parse_error(pmx.to_bytes(model))
    assert error.section == "morphs" and "morph 0 (あ) offset 1 (0, 1e+06, 0) lies past" in error.problem
    # Normals and UVs that are not numbers are a sloppy exporter's, and harmless: the import plan
    # takes Blender's own normal and UV (0, 0) there rather than refusing a model MMD shows.
    model = full_model(2.0)
    model.normals[1] = (float("inf"), 0.0, float("nan"))
    model.uvs[2] = (float("nan"), 1e6)
    plan = plan_import(pmx.parse(pmx.to_bytes(model)))
    assert np.isfinite(plan.normals).all() and not plan.normals[1].any()
    assert np.isfinite(plan.uvs).all() and 1.0 - 1e6 in plan.uvs  # (V flipped)


SIGNALLING_NAN = bytes.fromhex("0100807f")  # float32, little-endian


def test_a_signalling_nan_is_named_by_the_reader_alone():
    """Merely converting a signalling NaN to float64 made numpy print a RuntimeWarning before the
    reader's own error (found by writing one over every 4 bytes of a model): a user saw numpy's
    words about a cast first. In a bone weight, where a NaN is harmless (the weight is left out),
    the warning was all there was."""
    model = full_model(2.0)
    model.positions[0] = (0.25, 1.5, -0.75)
    blended = int(np.flatnonzero(model.weight_types == pmx.BDEF2)[0])
    model.bone_weights[blended, :2] = (0.3125, 0.6875)
    data = pmx.to_bytes(model)
    for value, problem in ((struct.pack("<3f", 0.25, 1.5, -0.75), "vertex 0 position (nan"),
                           (struct.pack("<f", 0.3125), None)):
        at = data.index(value)
        raw = bytearray(data)
        raw[at : at + 4] = SIGNALLING_NAN
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            if problem is None:
                assert len(pmx.parse(bytes(raw), "signalling.pmx").positions) == len(model.positions)
                continue
            error = parse_error(bytes(raw))
        assert problem in error.problem and error.problem.endswith("is not a finite number")
