"""Helpers for the MMD tests: deep Model comparison and a PMD file builder.

The builder writes PMD bytes straight from the layout in shared/reference/mmd.md §3, independently
of the reader, so the reader's tests check it against the format and not against itself.
"""

import dataclasses
import struct

import numpy as np


def assert_models_equal(a, b, path="model"):
    """Every field equal (numpy arrays by value and shape); names the first difference."""
    if dataclasses.is_dataclass(a):
        assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
        for f in dataclasses.fields(a):
            assert_models_equal(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape, f"{path}: shape {a.shape} != {b.shape}"
        assert np.array_equal(a, b), f"{path}: values differ"
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        assert len(a) == len(b), f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_models_equal(x, y, f"{path}[{i}]")
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), f"{path}: keys differ"
        for key in a:
            assert_models_equal(a[key], b[key], f"{path}[{key!r}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def name(text, size):
    raw = text.encode("cp932")
    assert len(raw) <= size
    return raw + b"\x00" + b"\xfd" * (size - len(raw) - 1) if len(raw) < size else raw


# A small PMD: 4 vertices (a quad), 2 materials, 4 bones (センター, 上半身, 首 type 1/0, a type-9 follower),
# one IK, base + 2 skins (あ, まばたき), display lists; the optional sections follow when asked.
PMD_BONES = [  # name, parent, tail, type, ik_parent, position
    ("センター", 0xFFFF, 1, 1, 0, (0.0, 8.0, 0.0)),
    ("上半身", 0, 2, 0, 0, (0.0, 11.0, 0.0)),
    ("左ひざ", 1, 0, 0, 0, (1.0, 4.0, 0.0)),
    ("左足ＩＫ", 0, 0, 2, 0, (1.0, 1.0, 0.0)),
    ("目追従", 1, 50, 9, 1, (0.0, 12.0, 0.0)),
]


def build_pmd(english=True, toons=True, rigid=True, joints=True, custom_toon=False):
    """PMD bytes with known content, and the byte offset where each section starts."""
    out = bytearray()
    starts = {}

    def mark(section):
        starts[section] = len(out)

    out += b"Pmd" + struct.pack("<f", 1.0) + name("テスト", 20) + name("コメント", 256)
    mark("vertices")
    vertices = [((0, 10, 0), (0, 0, -1), (0, 0), (0, 1), 100, 0),
                ((1, 10, 0), (0, 0, -1), (1, 0), (0, 1), 60, 0),
                ((1, 11, 0), (0, 0, -1), (1, 1), (1, 1), 0, 1),
                ((0, 11, 0), (0, 0, -1), (0, 1), (1, 0), 0, 0)]
    out += struct.pack("<I", len(vertices))
    for p, n, uv, b, w, e in vertices:
        out += struct.pack("<3f3f2f2HBB", *p, *n, *uv, *b, w, e)
    mark("faces")
    out += struct.pack("<I", 6) + struct.pack("<6H", 0, 1, 2, 0, 2, 3)
    mark("materials")
    out += struct.pack("<I", 2)
    out += struct.pack("<4ff3f3fBBI20s", 1, 0.5, 0.25, 1, 5, 0.1, 0.1, 0.1, 0.5, 0.25, 0.125, 2, 1, 3,
                       name("face.png*shine.spa", 20))
    out += struct.pack("<4ff3f3fBBI20s", 1, 1, 1, 0.5, 1, 0, 0, 0, 0.5, 0.5, 0.5, 255, 0, 3, name("", 20))
    mark("bones")
    out += struct.pack("<H", len(PMD_BONES))
    for bone_name, parent, tail, kind, ik_parent, pos in PMD_BONES:
        out += struct.pack("<20sHHBH3f", name(bone_name, 20), parent, tail, kind, ik_parent, *pos)
    mark("IK")
    out += struct.pack("<H", 1) + struct.pack("<HHBHf", 3, 2, 1, 40, 0.5) + struct.pack("<H", 2)
    mark("skins")
    out += struct.pack("<H", 3)
    out += struct.pack("<20sIB", name("base", 20), 2, 0) + struct.pack("<I3f", 2, 1, 11, 0) + struct.pack("<I3f", 3, 0, 11, 0)
    out += struct.pack("<20sIB", name("あ", 20), 1, 3) + struct.pack("<I3f", 0, 0, -0.5, 0)
    out += struct.pack("<20sIB", name("まばたき", 20), 2, 2) + struct.pack("<I3f", 0, 0.1, 0, 0) + struct.pack("<I3f", 1, 0.2, 0, 0)
    mark("display lists")
    out += struct.pack("<B2H", 2, 2, 1)
    out += struct.pack("<B", 1) + name("体\n", 50)
    out += struct.pack("<I", 2) + struct.pack("<HB", 1, 1) + struct.pack("<HB", 4, 1)
    if not english:
        return bytes(out), starts
    mark("english names")
    out += struct.pack("<B", 1) + name("Test", 20) + name("Comment", 256)
    for english_name in ("center", "upper body", "knee_L", "leg IK_L", "eye follow"):
        out += name(english_name, 20)
    out += name("a", 20) + name("blink", 20) + name("Body\n", 50)
    if not toons:
        return bytes(out), starts
    mark("toon textures")
    for i in range(10):
        toon = "mytoon.bmp" if custom_toon and i == 2 else f"toon{i + 1:02d}.bmp"
        out += name(toon, 100)
    if not rigid:
        return bytes(out), starts
    mark("rigid bodies")
    out += struct.pack("<I", 2)
    out += struct.pack("<20sHBHB3f3f3f5fB", name("頭", 20), 1, 3, 0xFFFE, 0, 1, 1, 1, 0.0, 1.0, 0.0, 0, 0, 0,
                       1, 0.5, 0.5, 0, 0.5, 0)
    out += struct.pack("<20sHBHB3f3f3f5fB", name("髪", 20), 0xFFFF, 4, 0xFFFF, 2, 0.5, 2, 0, 0.0, 0.0, 1.0, 0, 0, 0,
                       1, 0.5, 0.5, 0, 0.5, 1)
    if not joints:
        return bytes(out), starts
    mark("joints")
    out += struct.pack("<I", 1) + struct.pack("<20sII24f", name("髪J", 20), 0, 1, *range(24))
    return bytes(out), starts
