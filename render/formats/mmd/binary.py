"""Bounds-checked little-endian reading shared by the PMX and PMD readers.

Every read checks that the bytes exist first, so a cut or corrupt file ends in an
`MMDFormatError` naming the file, the section and the byte offset, never in an IndexError,
a struct.error, a huge allocation or a hang.
"""

from __future__ import annotations

import struct

import numpy as np

from ..coordinates import MAX_MMD_COORDINATE, first_unreal_row
from .model import MMDFormatError

U8 = struct.Struct("<B")
U16 = struct.Struct("<H")
I32 = struct.Struct("<i")
U32 = struct.Struct("<I")
F32 = struct.Struct("<f")
VEC2 = struct.Struct("<2f")
VEC3 = struct.Struct("<3f")
VEC4 = struct.Struct("<4f")


class BinaryReader:
    """A cursor over the file's bytes that knows which section it is in, for error messages."""

    __slots__ = ("data", "pos", "path", "section", "section_starts")

    def __init__(self, data, path):
        self.data = data
        self.pos = 0
        self.path = str(path)
        self.section = "header"
        self.section_starts = {"header": 0}

    def enter(self, section):
        self.section = section
        self.section_starts[section] = self.pos

    @property
    def remaining(self):
        return len(self.data) - self.pos

    def fail(self, problem, offset=None):
        raise MMDFormatError(self.path, self.section, self.pos if offset is None else offset, problem)

    def check_numbers(self, values, what, offsets, limit=MAX_MMD_COORDINATE):
        """Fail at the first row of `values` that is not a real coordinate (coordinates.py;
        `limit` None: numbers only). `what` names the rows ("vertex {} position"); `offsets` is
        each row's byte offset, or one offset for all."""
        found = first_unreal_row(values, limit, "MMD units")
        if found:
            i, problem = found
            self.fail(f"{what.format(i)} {problem}", int(offsets[i]) if np.ndim(offsets) else offsets)

    def need(self, size, what):
        if size > self.remaining:
            self.fail(f"the file ends inside {what}: it needs {size} bytes, {self.remaining} remain")

    def unpack(self, layout, what):
        self.need(layout.size, what)
        values = layout.unpack_from(self.data, self.pos)
        self.pos += layout.size
        return values

    def u8(self, what):
        return self.unpack(U8, what)[0]

    def u16(self, what):
        return self.unpack(U16, what)[0]

    def i32(self, what):
        return self.unpack(I32, what)[0]

    def u32(self, what):
        return self.unpack(U32, what)[0]

    def f32(self, what):
        return self.unpack(F32, what)[0]

    def vec3(self, what):
        return self.unpack(VEC3, what)

    def vec4(self, what):
        return self.unpack(VEC4, what)

    def raw(self, size, what):
        self.need(size, what)
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return bytes(chunk)

    def check_count(self, count, item_size, what):
        """Reject negative counts and counts the rest of the file cannot hold (no huge allocations)."""
        if count < 0:
            self.fail(f"negative {what} count {count}", self.pos - 4)
        if count * item_size > self.remaining:
            self.fail(
                f"{what} count {count} needs at least {count * item_size} bytes, "
                f"but only {self.remaining} remain",
                self.pos - 4,
            )
        return count

    def array(self, dtype, count, what):
        """`count` records of a numpy dtype, copied out of the file."""
        dtype = np.dtype(dtype)
        self.need(dtype.itemsize * count, what)
        values = np.frombuffer(self.data, dtype, count, self.pos).copy()
        self.pos += dtype.itemsize * count
        return values
