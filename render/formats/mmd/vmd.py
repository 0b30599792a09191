"""MMD motion files (.vmd): bone and morph keyframes, read and written (pure: numpy).

Layout (little-endian), as MikuMikuDance writes it:

    header      30 bytes  "Vocaloid Motion Data 0002" (or "Vocaloid Motion Data file", an old one)
    model name  20 bytes  cp932, NUL-padded (10 bytes in an old file)
    bones       u32 count, then 111 bytes each: name (15 bytes cp932), frame u32, position 3 f32,
                rotation quaternion 4 f32 (x, y, z, w), interpolation 64 bytes
    morphs      u32 count, then 23 bytes each: name (15 bytes cp932), frame u32, weight f32
    (camera, light, shadow and IK sections follow; a motion of a model's face and bones ends
    after any of them, and they are not read)

Frames count at 30 a second. Names longer than 15 bytes are cut there by MMD, sometimes inside a
character: what is left of it is dropped. Coordinates are MMD's (left-handed, y up, the model
facing -z). The interpolation block holds, for each of x, y, z and rotation, the Bezier curve of
the segment that ends at the key: control points (x1, y1) and (x2, y2) in 0..127, the rotation's
at bytes 3, 7, 11 and 15.

A cut or damaged file ends in an MMDFormatError naming the file, the section and the byte.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..coordinates import quiet_file_numbers
from .binary import BinaryReader
from .model import read_file_bytes

MAGIC = b"Vocaloid Motion Data 0002"
OLD_MAGIC = b"Vocaloid Motion Data file"
HEADER_BYTES = 30
NAME_BYTES = 15
FPS = 30.0
MAX_FRAME = 10_000_000  # past five days at 30 a second: no motion is that long
LINEAR = (20, 20, 107, 107)  # the curve MMD writes for a straight segment
BONE_RECORD = np.dtype([("name", "S15"), ("frame", "<u4"), ("position", "<f4", 3), ("rotation", "<f4", 4),
                        ("interpolation", "u1", 64)])
MORPH_RECORD = np.dtype([("name", "S15"), ("frame", "<u4"), ("weight", "<f4")])


@dataclass
class BoneKey:
    frame: int
    position: tuple = (0.0, 0.0, 0.0)
    rotation: tuple = (0.0, 0.0, 0.0, 1.0)  # x, y, z, w
    curve: tuple = LINEAR  # the rotation's Bezier control points x1, y1, x2, y2 (0..127)


@dataclass
class MorphKey:
    frame: int
    weight: float


@dataclass
class Motion:
    model_name: str = ""
    bones: dict = field(default_factory=dict)  # name -> [BoneKey] in frame order
    morphs: dict = field(default_factory=dict)  # name -> [MorphKey] in frame order

    @property
    def last_frame(self):
        frames = [keys[-1].frame for keys in (*self.bones.values(), *self.morphs.values()) if keys]
        return max(frames, default=0)


def decode_name(raw):
    """A name field: cp932 up to the first NUL, a character cut off at the field's end dropped."""
    return raw.split(b"\0", 1)[0].decode("cp932", errors="ignore")


def encode_name(name, size=NAME_BYTES):
    raw = name.encode("cp932")
    if len(raw) > size:
        raise ValueError(f"{name!r} takes {len(raw)} bytes in cp932; a VMD name field holds {size}")
    return raw


def read(path):
    """The Motion in a .vmd file."""
    path = Path(path)
    return parse(read_file_bytes(path, "motion"), path)


@quiet_file_numbers
def parse(data, path="<motion>"):
    reader = BinaryReader(data, path)
    header = reader.raw(HEADER_BYTES, "the header") if len(data) >= HEADER_BYTES else None
    if header is None or not (header.startswith(MAGIC) or header.startswith(OLD_MAGIC)):
        found = bytes(data[:HEADER_BYTES]).split(b"\0", 1)[0][:25]
        reader.fail(f"not an MMD motion: it starts with {found!r}, not {MAGIC!r}", 0)
    reader.enter("model name")
    model_name = decode_name(reader.raw(20 if header.startswith(MAGIC) else 10, "the model name"))
    motion = Motion(model_name)

    bones, check = _records(reader, BONE_RECORD, "bone keyframe")
    rotations = bones["rotation"].astype(np.float64)
    lengths = np.linalg.norm(rotations, axis=1)
    bad = ~np.isfinite(bones["position"]).all(axis=1) | ~np.isfinite(lengths) | (lengths < 1e-6)
    check(bad, "bone keyframe {} is no place and turn: {}", lambda i: f"position {tuple(map(float, bones['position'][i]))}, "
                                                              f"rotation {tuple(map(float, rotations[i]))}")
    for record, rotation, length in zip(bones, rotations, lengths):
        curve = record["interpolation"]
        motion.bones.setdefault(decode_name(record["name"]), []).append(BoneKey(
            int(record["frame"]), tuple(float(v) for v in record["position"]), tuple(rotation / length),
            (int(curve[3]), int(curve[7]), int(curve[11]), int(curve[15]))))

    if reader.remaining >= 4:  # (a motion of bones alone may end here)
        morphs, check = _records(reader, MORPH_RECORD, "morph keyframe")
        check(~np.isfinite(morphs["weight"]), "morph keyframe {} has the weight {}", lambda i: morphs["weight"][i])
        for record in morphs:
            motion.morphs.setdefault(decode_name(record["name"]), []).append(
                MorphKey(int(record["frame"]), float(record["weight"])))

    for keys in (*motion.bones.values(), *motion.morphs.values()):
        keys.sort(key=lambda key: key.frame)  # MMD writes them in any order; of one frame, the last wins
        keys[:] = [key for index, key in enumerate(keys) if index + 1 == len(keys) or keys[index + 1].frame != key.frame]
    return motion


def _records(reader, record, what):
    """(the section's records, check(bad, problem, value_of)): its count, its records, and their
    frames checked; `check` fails at the first record `bad` marks, naming its byte and
    `value_of(index)`."""
    reader.enter(f"{what}s")
    count = reader.check_count(reader.u32(f"the {what} count"), record.itemsize, what)
    start = reader.pos
    records = reader.array(record, count, f"the {what}s")

    def check(bad, problem, value_of):
        if np.any(bad):
            index = int(np.flatnonzero(bad)[0])
            reader.fail(problem.format(index, value_of(index)), start + index * record.itemsize)

    check(records["frame"] > MAX_FRAME, what + " {} is at frame {}", lambda i: records["frame"][i])
    return records, check


def write(motion, path):
    """Write a Motion as a .vmd (MMD's 0002 layout, no camera or light); returns the path."""
    bones = [(name, key) for name, keys in motion.bones.items() for key in keys]
    morphs = [(name, key) for name, keys in motion.morphs.items() for key in keys]
    chunks = [MAGIC.ljust(HEADER_BYTES, b"\0"), encode_name(motion.model_name, 20).ljust(20, b"\0"),
              struct.pack("<I", len(bones))]
    for name, key in bones:
        x1, y1, x2, y2 = key.curve
        curve = bytearray(64)
        for offset, (ax, ay, bx, by) in ((0, LINEAR), (3, (x1, y1, x2, y2))):
            curve[offset], curve[offset + 4], curve[offset + 8], curve[offset + 12] = ax, ay, bx, by
        for axis in (1, 2):  # y and z like x
            curve[axis], curve[axis + 4], curve[axis + 8], curve[axis + 12] = LINEAR
        chunks.append(struct.pack("<15sI3f4f", encode_name(name), key.frame, *key.position, *key.rotation)
                      + bytes(curve))
    chunks.append(struct.pack("<I", len(morphs)))
    for name, key in morphs:
        chunks.append(struct.pack("<15sIf", encode_name(name), key.frame, key.weight))
    chunks.append(struct.pack("<III", 0, 0, 0))  # no camera, light or shadow keys
    Path(path).write_bytes(b"".join(chunks))
    return Path(path)

