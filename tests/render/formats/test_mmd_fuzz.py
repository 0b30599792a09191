"""Fuzzing the readers with mutated real files: any input ends in a Model or an MMDFormatError
(never another exception, a hang or a huge allocation). Runs in CI, derandomized."""

from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmd_helpers import build_pmd
from test_pmx import full_model
from tha_studio.render.formats.mmd import MMDFormatError, pmd, pmx, procedural

FUZZ = settings(max_examples=300, deadline=timedelta(seconds=2), derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SAMPLES = {
    "full 2.0": pmx.to_bytes(full_model(2.0)),
    "full 2.1 utf-8": pmx.to_bytes(full_model(2.1, "utf-8")),
    "pmd": build_pmd()[0],
}


def mutate(data, edits, cut):
    raw = bytearray(data)
    for kind, where, value in edits:
        at = where % (len(raw) + 1)
        if kind == "set" and at < len(raw):
            raw[at] = value
        elif kind == "insert":
            raw[at:at] = bytes([value]) * (1 + value % 4)
        elif kind == "delete":
            del raw[at : at + 1 + value % 8]
        elif kind == "int32" and at + 4 <= len(raw):  # counts and lengths are int32: try extreme ones
            raw[at : at + 4] = int(np.int64(value) * 0x01010101 - 2**31).to_bytes(4, "little", signed=True)
    return bytes(raw[: cut % (len(raw) + 1)]) if cut is not None else bytes(raw)


EDITS = st.lists(
    st.tuples(st.sampled_from(["set", "insert", "delete", "int32"]), st.integers(0, 10**6), st.integers(0, 255)),
    min_size=1, max_size=6,
)


def check_reader(parse, data):
    try:
        model = parse(data, "fuzz.bin")
    except MMDFormatError as error:
        assert str(error).startswith("fuzz.bin: ") and error.section and error.problem
        return
    # Whatever is accepted is safe to build from: references are in range.
    assert model.faces.size == 0 or (0 <= model.faces.min() and model.faces.max() < model.vertex_count)
    assert model.bone_indices.size == 0 or model.bone_indices.max() < max(len(model.bones), 1)
    for morph in model.morphs:
        if morph.kind == "vertex":
            assert morph.vertex_indices.size == 0 or morph.vertex_indices.max() < model.vertex_count


@FUZZ
@given(sample=st.sampled_from(["full 2.0", "full 2.1 utf-8"]), edits=EDITS, cut=st.none() | st.integers(0, 10**6))
def test_pmx_reader_survives_mutations(sample, edits, cut):
    check_reader(pmx.parse, mutate(SAMPLES[sample], edits, cut))


@FUZZ
@given(edits=EDITS, cut=st.none() | st.integers(0, 10**6))
def test_pmd_reader_survives_mutations(edits, cut):
    check_reader(pmd.parse, mutate(SAMPLES["pmd"], edits, cut))


@settings(max_examples=150, deadline=timedelta(seconds=2), derandomize=True, database=None)
@given(data=st.binary(max_size=400))
def test_random_bytes_after_a_valid_magic(data):
    check_reader(pmx.parse, b"PMX " + data)
    check_reader(pmd.parse, b"Pmd" + data)


@pytest.fixture(scope="module")
def character_bytes():
    return pmx.to_bytes(procedural.make_character())


@settings(max_examples=60, deadline=timedelta(seconds=3), derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(section=st.integers(0, 9), shift=st.integers(-40, 40), edits=st.lists(st.integers(0, 255), min_size=1, max_size=4))
def test_mutations_near_section_starts_of_the_character(character_bytes, section, shift, edits):
    """Bytes near where sections start (counts, index sizes, first names) are the fragile ones."""
    starts = list(pmx.section_offsets(character_bytes).values())
    at = max(0, starts[section] + shift)
    raw = bytearray(character_bytes)
    raw[at : at + len(edits)] = bytes(edits)
    check_reader(pmx.parse, bytes(raw))


def _motion_bytes():
    import math

    from tha_studio.render.formats.mmd import vmd

    turn = (0.0, math.sin(0.1), 0.0, math.cos(0.1))
    motion = vmd.Motion("ミク", bones={"頭": [vmd.BoneKey(0), vmd.BoneKey(30, (0, 1, 0), turn, (64, 0, 64, 127))],
                                      "首": [vmd.BoneKey(5)]},
                        morphs={"あ": [vmd.MorphKey(0, 0.0), vmd.MorphKey(15, 1.0)], "まばたき": [vmd.MorphKey(3, 0.5)]})
    return vmd, motion


@FUZZ
@given(edits=EDITS, cut=st.none() | st.integers(0, 10**6))
def test_vmd_reader_survives_mutations(tmp_path_factory, edits, cut):
    vmd, motion = _motion_bytes()
    path = vmd.write(motion, tmp_path_factory.mktemp("vmd") / "m.vmd")
    try:
        read = vmd.parse(mutate(path.read_bytes(), edits, cut), "fuzz.bin")
    except MMDFormatError as error:
        assert str(error).startswith("fuzz.bin: ") and error.section and error.problem
        return
    # Whatever is accepted is safe to key: finite, unit turns, frames in order.
    for keys in read.bones.values():
        assert [k.frame for k in keys] == sorted(k.frame for k in keys)
        assert all(abs(sum(v * v for v in k.rotation) - 1) < 1e-6 and np.isfinite(k.position).all() for k in keys)
    assert all(np.isfinite(k.weight) for keys in read.morphs.values() for k in keys)
