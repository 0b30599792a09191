"""MMD motion files (.vmd): read as MikuMikuDance writes them, and refused with the byte where damaged."""

import struct

import numpy as np
import pytest

from tha_studio.render.formats.mmd import MMDFormatError, vmd


def sample_motion():
    turn = (0.0, np.sin(np.radians(10)), 0.0, np.cos(np.radians(10)))  # 20° about y
    return vmd.Motion("初音ミク", bones={
        "頭": [vmd.BoneKey(0), vmd.BoneKey(30, (0.0, 0.25, 0.0), turn, (64, 0, 64, 127))],
        "首": [vmd.BoneKey(10)],
    }, morphs={"あ": [vmd.MorphKey(0, 0.0), vmd.MorphKey(15, 1.0)], "まばたき": [vmd.MorphKey(40, 0.5)]})


def test_a_written_motion_reads_back_the_same(tmp_path):
    path = vmd.write(sample_motion(), tmp_path / "talk.vmd")
    motion = vmd.read(path)
    assert motion.model_name == "初音ミク" and motion.last_frame == 40
    assert set(motion.bones) == {"首", "頭"} and set(motion.morphs) == {"あ", "まばたき"}
    head = motion.bones["頭"][1]
    assert head.frame == 30 and head.curve == (64, 0, 64, 127)
    assert head.position == pytest.approx((0.0, 0.25, 0.0))
    assert head.rotation == pytest.approx((0.0, np.sin(np.radians(10)), 0.0, np.cos(np.radians(10))), abs=1e-7)
    assert [(k.frame, k.weight) for k in motion.morphs["あ"]] == [(0, 0.0), (15, 1.0)]


def test_keys_are_put_in_frame_order_the_last_of_a_frame_winning_and_quaternions_made_unit(tmp_path):
    data = bytearray(vmd.write(vmd.Motion(), tmp_path / "empty.vmd").read_bytes())
    bones = [struct.pack("<15sI3f4f", "頭".encode("cp932"), frame, 0, 0, 0, 0, 0, 0, scale) + bytes(64)
             for frame, scale in ((20, 2.0), (5, 1.0))]
    morphs = [struct.pack("<15sIf", "あ".encode("cp932"), frame, weight) for frame, weight in ((9, 0.2), (3, 1.0), (9, 0.7))]
    start = 50  # after the header and the model name
    body = struct.pack("<I", 2) + b"".join(bones) + struct.pack("<I", 3) + b"".join(morphs)
    data[start : start + 8] = body
    motion = vmd.parse(bytes(data))
    assert [k.frame for k in motion.bones["頭"]] == [5, 20] and motion.bones["頭"][1].rotation == (0, 0, 0, 1.0)
    assert [(k.frame, k.weight) for k in motion.morphs["あ"]] == [(3, 1.0), (9, pytest.approx(0.7))]


def test_a_name_cut_inside_a_character_and_an_old_header_and_bones_alone_read():
    raw = "右目じと目かくし".encode("cp932")[:15]  # 16 bytes: MMD cuts the last character in half
    old = (vmd.OLD_MAGIC.ljust(30, b"\0") + "ミク".encode("cp932").ljust(10, b"\0") + struct.pack("<I", 1)
           + struct.pack("<15sI3f4f", raw, 0, 0, 0, 0, 0, 0, 0, 1) + bytes(64))
    motion = vmd.parse(old)
    assert motion.model_name == "ミク" and list(motion.bones) == ["右目じと目かく"] and motion.morphs == {}


@pytest.mark.parametrize("damage, problem", [
    (lambda data: data[:-20], r"morph keyframes at byte \d+: morph keyframe count 3 needs at least 69 bytes, but only "
                              r"61 remain"),
    (lambda data: data[:70], r"bone keyframes at byte 50: bone keyframe count 3 needs at least 333 bytes"),
    (lambda data: b"Vocaloid Motion Data 0001" + data[25:], r"header at byte 0: not an MMD motion"),
    (lambda data: b"", r"header at byte 0: not an MMD motion: it starts with b''"),
    (lambda data: data.replace(struct.pack("<f", 0.5), struct.pack("<f", float("nan"))),
     r"morph keyframes at byte \d+: morph keyframe 2 has the weight nan"),
    # A signalling NaN: numpy printed a RuntimeWarning about a cast before this error (the test
    # turns warnings into errors).
    (lambda data: data.replace(struct.pack("<f", np.sin(np.radians(10))), bytes.fromhex("0100807f")),
     r"bone keyframes at byte \d+: bone keyframe \d is no place and turn: position \(0.0, 0.25, 0.0\), "
     r"rotation \(0.0, nan, 0.0, "),
])
@pytest.mark.filterwarnings("error")
def test_a_damaged_motion_is_named_with_the_section_and_byte(tmp_path, damage, problem):
    data = vmd.write(sample_motion(), tmp_path / "talk.vmd").read_bytes()
    (tmp_path / "bad.vmd").write_bytes(damage(data))
    with pytest.raises(MMDFormatError, match=r"bad.vmd: " + problem):
        vmd.read(tmp_path / "bad.vmd")


def test_a_rotation_that_is_no_rotation_is_named(tmp_path):
    motion = vmd.Motion(bones={"頭": [vmd.BoneKey(0, rotation=(0.0, 0.0, 0.0, 0.0))]})
    with pytest.raises(MMDFormatError, match=r"bone keyframes at byte 54: bone keyframe 0 is no place and turn: "
                                             r"position \(0.0, 0.0, 0.0\), rotation \(0.0, 0.0, 0.0, 0.0\)"):
        vmd.read(vmd.write(motion, tmp_path / "zero.vmd"))
