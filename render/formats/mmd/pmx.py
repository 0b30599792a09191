"""PMX 2.0/2.1 reader and writer (pure Python + numpy).

Layout: shared/reference/mmd.md §3. The reader keeps everything the file holds, so
`write(read(path))` gives the same bytes for a file written with the smallest index sizes
(as PmxEditor writes them). The vertex section, the faces and the large morph offset lists
are read and written with numpy: one cheap pass finds where each vertex record starts (the
record size depends on its weight type), then every field is gathered at once.

Bytes after the last section (the joints in 2.0, the soft bodies in 2.1, which a 2.1 file may
also leave out) are ignored, as MMD does. Every reference is checked against its count, so a
Model that reads without error is safe to build from.

Index signedness: vertex indices of size 1 and 2 are unsigned, size 4 signed; every other
index (texture, material, bone, morph, rigid body) is signed with -1 meaning "none".
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ....atomic_files import write_bytes_atomic
from ..coordinates import MAX_MMD_COORDINATE, quiet_file_numbers
from .binary import F32, I32, U8, VEC3, BinaryReader
from .model import (
    BDEF1,
    BDEF2,
    BDEF4,
    BONE_EXTERNAL_PARENT,
    BONE_FIXED_AXIS,
    BONE_IK,
    BONE_INHERIT_ROTATION,
    BONE_INHERIT_TRANSLATION,
    BONE_LOCAL_AXIS,
    BONE_TAIL_IS_BONE,
    MORPH_KINDS,
    QDEF,
    SDEF,
    IK,
    Bone,
    DisplayFrame,
    IKLink,
    ImpulseOffset,
    Joint,
    Material,
    MaterialOffset,
    MMDFormatError,
    Model,
    Morph,
    RigidBody,
    SoftBody,
    read_file_bytes,
)

MAGIC = b"PMX "
VERSIONS = (2.0, 2.1)
ENCODINGS = ("utf-16-le", "utf-8")
# Lone surrogates (UTF-16) and stray bytes (UTF-8) survive a read-write round trip.
ERROR_HANDLERS = {"utf-16-le": "surrogatepass", "utf-8": "surrogateescape"}
INDEX_KINDS = ("vertex", "texture", "material", "bone", "morph", "rigid body")
WEIGHT_TYPE_NAMES = ("BDEF1", "BDEF2", "BDEF4", "SDEF", "QDEF")
# Bone references per weight type, and whether weights follow (BDEF1 has none; SDEF has one).
WEIGHT_BONES = {BDEF1: 1, BDEF2: 2, BDEF4: 4, SDEF: 2, QDEF: 4}

SOFT_BODY_FLOATS = (
    "VCF", "DP", "DG", "LF", "PR", "VC", "DF", "MT", "CHR", "KHR", "SHR", "AHR",
    "SRHR_CL", "SKHR_CL", "SSHR_CL", "SR_SPLT_CL", "SK_SPLT_CL", "SS_SPLT_CL",
)
SOFT_BODY_ITERATIONS = ("V_IT", "P_IT", "D_IT", "C_IT")
SOFT_BODY_MATERIAL = ("LST", "AST", "VST")

# Fixed-size record layouts, shared by the reader and the writer (the variable parts, such as names and
# indices whose size the header sets, are read and written around them).
MATERIAL = struct.Struct("<4f3ff3fB4ff")  # diffuse, specular, strength, ambient, flags, edge colour, edge size
MATERIAL_OFFSET = struct.Struct("<4f3ff3f4ff4f4f4f")
MORPH_HEAD = struct.Struct("<BB")  # panel, type
IK_HEAD = struct.Struct("<if")  # loop count, limit angle
RIGID_BODY = struct.Struct("<BHB3f3f3f5fB")
JOINT = struct.Struct("<24f")
SOFT_BODY = struct.Struct("<BHBiiffi18f4i3f")

# Morph types that share another type's offset records.
MORPH_FAMILIES = {"uv1": "uv", "uv2": "uv", "uv3": "uv", "uv4": "uv", "flip": "group"}
# Per family whose offsets are plain records: the index kind "i" refers to, and the Morph attribute each
# record field fills.
MORPH_OFFSET_FIELDS = {
    "vertex": ("vertex", {"i": "vertex_indices", "v": "vertex_offsets"}),
    "uv": ("vertex", {"i": "vertex_indices", "v": "uv_offsets"}),
    "group": ("morph", {"i": "morph_indices", "w": "weights"}),
    "bone": ("bone", {"i": "bone_indices", "t": "translations", "q": "rotations"}),
}


class Section(NamedTuple):
    name: str
    since: float = 2.0  # the first PMX version that has it
    optional: bool = False  # a file may end before it
    model_field: str = ""  # what a version without the section cannot hold


# The sections in file order. The parser and the writer both walk this table, calling their method
# named after the section (`_display_frames` for "display frames").
SECTIONS = (
    Section("header"),
    Section("vertices"),
    Section("faces"),
    Section("textures"),
    Section("materials"),
    Section("bones"),
    Section("morphs"),
    Section("display frames"),
    Section("rigid bodies"),
    Section("joints"),
    Section("soft bodies", since=2.1, optional=True, model_field="soft_bodies"),
)


def section_method(section):
    return "_" + section.name.replace(" ", "_")


def index_dtype(kind, size):
    """The numpy dtype of an index of this kind and byte size."""
    unsigned = kind == "vertex" and size in (1, 2)
    return np.dtype({1: "u1", 2: "<u2", 4: "<i4"}[size] if unsigned else {1: "i1", 2: "<i2", 4: "<i4"}[size])


def index_size_for(kind, count):
    """The smallest index size that holds indices 0..count-1 (and -1 for signed kinds)."""
    limits = (255, 65535) if kind == "vertex" else (127, 32767)
    if count - 1 <= limits[0]:
        return 1
    if count - 1 <= limits[1]:
        return 2
    return 4


def _index_struct(kind, size):
    return struct.Struct("<" + index_dtype(kind, size).char)


def bone_head(bone_index):
    """Position, parent bone index (of the header's size), layer, flags."""
    return struct.Struct("<3f" + bone_index.format[1:] + "iH")


def morph_offset_dtype(family, index_sizes):
    """The numpy record of one offset of a vertex, uv, group or bone morph."""
    target = MORPH_OFFSET_FIELDS[family][0]
    index = index_dtype(target, index_sizes[target])
    values = {
        "vertex": [("v", "<f4", 3)],
        "uv": [("v", "<f4", 4)],
        "group": [("w", "<f4")],
        "bone": [("t", "<f4", 3), ("q", "<f4", 4)],
    }[family]
    return np.dtype([("i", index), *values])


# --------------------------------------------------------------------------------------------
# Reading


def read(path) -> Model:
    """Read a .pmx file into a Model; MMDFormatError (file, section, byte offset) if it is invalid."""
    path = Path(path)
    return parse(read_file_bytes(path), path)


@quiet_file_numbers
def parse(data: bytes, path="<bytes>") -> Model:
    """Parse PMX bytes; `path` only names the file in error messages."""
    return _PMXParser(data, path).parse()


def section_offsets(data: bytes, path="<bytes>") -> dict:
    """Byte offset where each section starts (header, vertices, ... joints[, soft bodies])."""
    parser = _PMXParser(data, path)
    parser.parse()
    return dict(parser.r.section_starts)


class _PMXParser:
    def __init__(self, data, path):
        self.r = BinaryReader(memoryview(data).cast("B") if not isinstance(data, bytes) else data, path)
        self.model = Model(format="pmx")

    def parse(self):
        for section in SECTIONS:
            # The header comes first, so the version is known before it matters.
            if self.model.version < section.since or (section.optional and not self.r.remaining):
                continue
            self.r.enter(section.name)
            getattr(self, section_method(section))()
        return self.model

    # -- small helpers -------------------------------------------------------------------

    def _text(self, what):
        r = self.r
        start = r.pos
        size = r.i32(f"the length of {what}")
        if size < 0 or size > r.remaining:
            r.fail(f"{what} has length {size}, but {r.remaining} bytes remain", start)
        if self.model.encoding == "utf-16-le" and size % 2:
            r.fail(f"{what} has an odd UTF-16 byte length {size}", start)
        raw = r.data[r.pos : r.pos + size]
        r.pos += size
        return bytes(raw).decode(self.model.encoding, ERROR_HANDLERS[self.model.encoding])

    def _names(self, what):
        return self._text(f"{what} name"), self._text(f"{what} English name")

    def _index(self, kind, what):
        return self.r.unpack(self.index_structs[kind], what)[0]

    def _ref(self, kind, count, what, allow_none=True):
        """Read an index and check that it refers to an existing item (or -1)."""
        start = self.r.pos
        value = self._index(kind, what)
        low = -1 if allow_none else 0
        if not low <= value < count:
            self.r.fail(f"{what} is {value}, but there are {count} {kind}s", start)
        return value

    def _check_indices(self, values, count, kind, what, start, allow_none=True):
        if len(values) == 0:
            return
        low = -1 if allow_none else 0
        bad = (values < low) | (values >= count)
        if bad.any():
            first = int(np.argmax(bad))
            self.r.fail(f"{what} {first} refers to {kind} {int(values[first])}, but there are {count}", start)

    # -- sections ------------------------------------------------------------------------

    def _header(self):
        r, m = self.r, self.model
        if r.remaining < 4:
            r.fail(f"the file is {len(r.data)} bytes long, too short for a PMX header")
        magic = r.raw(4, "the magic number")
        if magic != MAGIC:
            r.fail(f"not a PMX file: it starts with {magic!r}, not {MAGIC!r}", 0)
        version = round(r.f32("the version"), 4)
        if version not in VERSIONS:
            r.fail(f"unsupported PMX version {version} (this reader knows 2.0 and 2.1)", 4)
        m.version = version
        globals_count = r.u8("the globals count")
        if globals_count < 8:
            r.fail(f"the header has {globals_count} globals, PMX needs 8", 8)
        settings = r.raw(globals_count, "the globals")
        encoding, m_additional_uvs = settings[0], settings[1]
        if encoding > 1:
            r.fail(f"unknown text encoding {encoding} (0 is UTF-16LE, 1 is UTF-8)", 9)
        if m_additional_uvs > 4:
            r.fail(f"{m_additional_uvs} additional UV channels (PMX allows 0 to 4)", 10)
        m.encoding = ENCODINGS[encoding]
        self.additional_uvs = m_additional_uvs
        self.index_sizes = {}
        for i, kind in enumerate(INDEX_KINDS):
            size = settings[2 + i]
            if size not in (1, 2, 4):
                r.fail(f"the {kind} index size is {size} (PMX allows 1, 2 or 4)", 11 + i)
            self.index_sizes[kind] = size
        self.index_structs = {kind: _index_struct(kind, size) for kind, size in self.index_sizes.items()}
        m.name, m.name_en = self._names("the model")
        m.comment = self._text("the comment")
        m.comment_en = self._text("the English comment")

    def _vertices(self):
        r, m = self.r, self.model
        bone_size = self.index_sizes["bone"]
        common = 32 + 16 * self.additional_uvs  # position, normal, uv, additional uvs
        payload = {
            BDEF1: bone_size,
            BDEF2: 2 * bone_size + 4,
            BDEF4: 4 * bone_size + 16,
            SDEF: 2 * bone_size + 4 + 36,
            QDEF: 4 * bone_size + 16,
        }
        record = [common + 1 + payload[t] + 4 for t in range(5)]
        count = r.check_count(r.i32("the vertex count"), record[BDEF1], "vertex")

        # One pass over the weight-type bytes finds where each record starts.
        data, pos, end = r.data, r.pos, len(r.data)
        starts = [0] * count
        types = bytearray(count)
        for i in range(count):
            if pos + common >= end:
                r.fail(f"the file ends inside vertex {i} of {count}", pos)
            kind = data[pos + common]
            if kind > QDEF:
                r.fail(f"vertex {i} has unknown weight type {kind}", pos + common)
            starts[i] = pos
            types[i] = kind
            pos += record[kind]
        if pos > end:
            r.fail(f"the file ends inside vertex {count - 1} of {count}", starts[-1])
        r.pos = pos

        starts = np.asarray(starts, np.int64)
        types = np.frombuffer(bytes(types), np.uint8)
        raw = np.frombuffer(data, np.uint8)
        floats = _gather(raw, starts, common).view("<f4")
        m.positions = np.ascontiguousarray(floats[:, 0:3])
        m.normals = np.ascontiguousarray(floats[:, 3:6])
        m.uvs = np.ascontiguousarray(floats[:, 6:8])
        m.additional_uvs = np.ascontiguousarray(floats[:, 8:].reshape(count, self.additional_uvs, 4))
        # (Normals and UVs that are not numbers are harmless: the import plan drops them.)
        r.check_numbers(m.positions, "vertex {} position", starts)
        m.weight_types = types.copy()
        m.bone_indices = np.full((count, 4), -1, np.int32)
        m.bone_weights = np.zeros((count, 4), np.float32)
        m.sdef_c = np.zeros((count, 3), np.float32)
        m.sdef_r0 = np.zeros((count, 3), np.float32)
        m.sdef_r1 = np.zeros((count, 3), np.float32)
        bone = index_dtype("bone", bone_size)
        for kind in np.unique(types):
            rows = np.nonzero(types == kind)[0]
            fields = _gather(raw, starts[rows] + common + 1, payload[kind]).view(_weight_dtype(kind, bone))[:, 0]
            _store_weights(m, kind, rows, fields)
        edge_starts = starts + np.asarray(record, np.int64)[types] - 4
        m.edge_scales = _gather(raw, edge_starts, 4).view("<f4")[:, 0].copy()
        # Bone references are checked once the bone count is known (in _bones).
        self.vertex_bone_check = (m.bone_indices, r.section_starts["vertices"])

    def _faces(self):
        r, m = self.r, self.model
        vertex = index_dtype("vertex", self.index_sizes["vertex"])
        count = r.check_count(r.i32("the face index count"), vertex.itemsize, "face index")
        if count % 3:
            r.fail(f"the face index count {count} is not a multiple of 3", r.pos - 4)
        indices = r.array(vertex, count, "the face indices")
        self._check_indices(indices, m.vertex_count, "vertex", "face index", r.section_starts["faces"], False)
        m.faces = indices.astype(np.int64).reshape(-1, 3)

    def _textures(self):
        r, m = self.r, self.model
        count = r.check_count(r.i32("the texture count"), 4, "texture")
        m.textures = [self._text(f"texture {i} path") for i in range(count)]

    def _materials(self):
        r, m = self.r, self.model
        count = r.check_count(r.i32("the material count"), 8, "material")
        textures = len(m.textures)
        total = 0
        for i in range(count):
            what = f"material {i}"
            name, name_en = self._names(what)
            values = r.unpack(MATERIAL, what)
            material = Material(
                name=name,
                name_en=name_en,
                diffuse=values[0:4],
                specular=values[4:7],
                specular_strength=values[7],
                ambient=values[8:11],
                flags=values[11],
                edge_color=values[12:16],
                edge_size=values[16],
            )
            material.texture = self._ref("texture", textures, f"{what} texture index")
            material.sphere_texture = self._ref("texture", textures, f"{what} sphere texture index")
            material.sphere_mode = r.u8(f"{what} sphere mode")
            start = r.pos
            toon_shared = r.u8(f"{what} toon flag")
            if toon_shared > 1:
                r.fail(f"{what} has toon flag {toon_shared} (0 or 1)", start)
            material.toon_shared = bool(toon_shared)
            if material.toon_shared:
                material.toon = r.u8(f"{what} shared toon number")
            else:
                material.toon = self._ref("texture", textures, f"{what} toon texture index")
            material.comment = self._text(f"{what} memo")
            start = r.pos
            material.index_count = r.i32(f"{what} face index count")
            if material.index_count < 0 or material.index_count % 3:
                r.fail(f"{what} draws {material.index_count} face indices, not a multiple of 3", start)
            total += material.index_count
            if total > 3 * len(m.faces):
                r.fail(f"materials up to {what} draw {total} face indices, the file has {3 * len(m.faces)}", start)
            m.materials.append(material)

    def _bones(self):
        r, m = self.r, self.model
        count = r.check_count(r.i32("the bone count"), 8 + 12 + 1 + 4 + 2 + 1, "bone")
        head = bone_head(self.index_structs["bone"])
        starts = []
        for i in range(count):
            what = f"bone {i}"
            starts.append(r.pos)
            name, name_en = self._names(what)
            x, y, z, parent, layer, flags = r.unpack(head, what)
            r.check_numbers([(x, y, z)], f"{what} ({name}) position", starts[-1])
            bone = Bone(name=name, name_en=name_en, position=(x, y, z), parent=parent, layer=layer, flags=flags)
            if flags & BONE_TAIL_IS_BONE:
                bone.tail_bone = self._index("bone", f"{what} tail bone")
            else:
                bone.tail_offset = r.vec3(f"{what} tail offset")
            if flags & (BONE_INHERIT_ROTATION | BONE_INHERIT_TRANSLATION):
                bone.inherit_parent = self._index("bone", f"{what} inherit parent")
                bone.inherit_ratio = r.f32(f"{what} inherit ratio")
            if flags & BONE_FIXED_AXIS:
                bone.fixed_axis = r.vec3(f"{what} fixed axis")
            if flags & BONE_LOCAL_AXIS:
                bone.local_x = r.vec3(f"{what} local X axis")
                bone.local_z = r.vec3(f"{what} local Z axis")
            if flags & BONE_EXTERNAL_PARENT:
                bone.external_key = r.i32(f"{what} external parent key")
            if flags & BONE_IK:
                bone.ik = self._ik(what)
            m.bones.append(bone)
        for i, bone in enumerate(m.bones):
            self._check_bone_refs(i, bone, count, starts[i])
        bone_indices, start = self.vertex_bone_check
        bad = (bone_indices < -1) | (bone_indices >= count)
        if bad.any():
            vertex = int(np.argmax(bad.any(axis=1)))
            raise MMDFormatError(
                r.path, "vertices", start,
                f"vertex {vertex} is weighted to bone {int(bone_indices[bad][0])}, but there are {count} bones",
            )

    def _ik(self, what):
        r = self.r
        target = self._index("bone", f"{what} IK target")
        loop_count, limit_angle = r.unpack(IK_HEAD, f"{what} IK loop count and limit angle")
        links = r.check_count(r.i32(f"{what} IK link count"), self.index_sizes["bone"] + 1, "IK link")
        ik = IK(target=target, loop_count=loop_count, limit_angle=limit_angle)
        for j in range(links):
            bone = self._index("bone", f"{what} IK link {j}")
            start = r.pos
            has_limits = r.u8(f"{what} IK link {j} limit flag")
            if has_limits > 1:
                r.fail(f"{what} IK link {j} has limit flag {has_limits} (0 or 1)", start)
            limits = (r.vec3(f"{what} IK link {j} minimum"), r.vec3(f"{what} IK link {j} maximum")) if has_limits else None
            ik.links.append(IKLink(bone=bone, limits=limits))
        return ik

    def _check_bone_refs(self, i, bone, count, start):
        refs = [("parent", bone.parent)]
        if bone.flags & BONE_TAIL_IS_BONE:
            refs.append(("tail bone", bone.tail_bone))
        if bone.flags & (BONE_INHERIT_ROTATION | BONE_INHERIT_TRANSLATION):
            refs.append(("inherit parent", bone.inherit_parent))
        if bone.ik is not None:
            refs.append(("IK target", bone.ik.target))
            refs.extend((f"IK link {j}", link.bone) for j, link in enumerate(bone.ik.links))
        for what, value in refs:
            if not -1 <= value < count:
                self.r.fail(f"bone {i} ({bone.name}) {what} is {value}, but there are {count} bones", start)

    def _morphs(self):
        r, m = self.r, self.model
        count = r.check_count(r.i32("the morph count"), 8 + 2 + 4, "morph")
        sizes = self.index_sizes
        layouts = {family: morph_offset_dtype(family, sizes) for family in MORPH_OFFSET_FIELDS}
        limits = {"vertex": m.vertex_count, "morph": count, "bone": len(m.bones)}
        for i in range(count):
            what = f"morph {i}"
            start = r.pos
            name, name_en = self._names(what)
            panel, kind_number = r.unpack(MORPH_HEAD, f"{what} panel and type")
            if kind_number >= len(MORPH_KINDS) or (kind_number >= 9 and m.version < 2.1):
                r.fail(f"{what} ({name}) has unknown type {kind_number} for PMX {m.version}", r.pos - 1)
            kind = MORPH_KINDS[kind_number]
            item = Morph(name=name, name_en=name_en, panel=panel, kind=kind)
            family = MORPH_FAMILIES.get(kind, kind)
            if family in MORPH_OFFSET_FIELDS:
                layout = layouts[family]
                n = r.check_count(r.i32(f"{what} offset count"), layout.itemsize, f"{what} offset")
                offsets = r.array(layout, n, f"{what} offsets")
                target, attributes = MORPH_OFFSET_FIELDS[family]
                indices = offsets["i"].astype(np.int64)
                self._check_indices(indices, limits[target], target, f"{what} ({name}) offset", start, False)
                for field in attributes:
                    if field == "i" or family == "uv":  # moves, turns and weights; UV shifts are harmless
                        continue
                    limit = MAX_MMD_COORDINATE if (family, field) in (("vertex", "v"), ("bone", "t")) else None
                    r.check_numbers(offsets[field], f"{what} ({name}) offset {{}}", start, limit)
                for field, attribute in attributes.items():
                    setattr(item, attribute, indices if field == "i" else offsets[field].copy())
            elif kind == "material":
                n = r.check_count(r.i32(f"{what} offset count"), sizes["material"] + 113, f"{what} offset")
                item.material_offsets = [self._material_offset(f"{what} offset {j}") for j in range(n)]
            else:  # impulse
                n = r.check_count(r.i32(f"{what} offset count"), sizes["rigid body"] + 25, f"{what} offset")
                item.impulse_offsets = [self._impulse_offset(f"{what} offset {j}") for j in range(n)]
            m.morphs.append(item)

    def _material_offset(self, what):
        material = self._ref("material", len(self.model.materials), f"{what} material")
        operation = self.r.u8(f"{what} operation")
        v = self.r.unpack(MATERIAL_OFFSET, what)
        return MaterialOffset(
            material=material, operation=operation, diffuse=v[0:4], specular=v[4:7], specular_strength=v[7],
            ambient=v[8:11], edge_color=v[11:15], edge_size=v[15], texture_tint=v[16:20],
            sphere_tint=v[20:24], toon_tint=v[24:28],
        )

    def _impulse_offset(self, what):
        rigid = self._index("rigid body", f"{what} rigid body")
        local = self.r.u8(f"{what} local flag")
        velocity = self.r.vec3(f"{what} velocity")
        torque = self.r.vec3(f"{what} torque")
        return ImpulseOffset(rigid_body=rigid, local=bool(local), velocity=velocity, torque=torque)

    def _display_frames(self):
        r, m = self.r, self.model
        count = r.check_count(r.i32("the display frame count"), 8 + 1 + 4, "display frame")
        for i in range(count):
            what = f"display frame {i}"
            name, name_en = self._names(what)
            special = r.u8(f"{what} special flag")
            items = r.check_count(r.i32(f"{what} item count"), 2, f"{what} item")
            frame = DisplayFrame(name=name, name_en=name_en, special=bool(special))
            for j in range(items):
                start = r.pos
                target = r.u8(f"{what} item {j} type")
                if target == 0:
                    frame.items.append((0, self._ref("bone", len(m.bones), f"{what} item {j} bone", False)))
                elif target == 1:
                    frame.items.append((1, self._ref("morph", len(m.morphs), f"{what} item {j} morph", False)))
                else:
                    r.fail(f"{what} item {j} has type {target} (0 bone or 1 morph)", start)
            m.display_frames.append(frame)

    def _rigid_bodies(self):
        r, m = self.r, self.model
        count = r.check_count(r.i32("the rigid body count"), 8 + 1 + 61, "rigid body")
        for i in range(count):
            what = f"rigid body {i}"
            name, name_en = self._names(what)
            bone = self._ref("bone", len(m.bones), f"{what} bone")
            v = r.unpack(RIGID_BODY, what)
            m.rigid_bodies.append(RigidBody(
                name=name, name_en=name_en, bone=bone, group=v[0], no_collision_mask=v[1], shape=v[2],
                size=v[3:6], position=v[6:9], rotation=v[9:12], mass=v[12], linear_damping=v[13],
                angular_damping=v[14], restitution=v[15], friction=v[16], mode=v[17],
            ))
        # Impulse morphs (read earlier) refer forward to rigid bodies.
        for i, morph in enumerate(m.morphs):
            for j, offset in enumerate(morph.impulse_offsets):
                if not -1 <= offset.rigid_body < count:
                    raise MMDFormatError(r.path, "morphs", r.section_starts["morphs"],
                                         f"morph {i} ({morph.name}) offset {j} refers to rigid body "
                                         f"{offset.rigid_body}, but there are {count}")

    def _joints(self):
        r, m = self.r, self.model
        count = r.check_count(r.i32("the joint count"), 8 + 1 + 96, "joint")
        for i in range(count):
            what = f"joint {i}"
            name, name_en = self._names(what)
            kind = r.u8(f"{what} type")
            rigid_a = self._ref("rigid body", len(m.rigid_bodies), f"{what} rigid body A")
            rigid_b = self._ref("rigid body", len(m.rigid_bodies), f"{what} rigid body B")
            v = r.unpack(JOINT, what)
            m.joints.append(Joint(
                name=name, name_en=name_en, kind=kind, rigid_a=rigid_a, rigid_b=rigid_b,
                position=v[0:3], rotation=v[3:6], position_min=v[6:9], position_max=v[9:12],
                rotation_min=v[12:15], rotation_max=v[15:18], spring_position=v[18:21], spring_rotation=v[21:24],
            ))

    def _soft_bodies(self):
        r, m = self.r, self.model
        count = r.check_count(r.i32("the soft body count"), 8 + 1 + 1 + 1 + 2 + 1 + 120 + 8, "soft body")
        for i in range(count):
            what = f"soft body {i}"
            name, name_en = self._names(what)
            shape = r.u8(f"{what} shape")
            material = self._ref("material", len(m.materials), f"{what} material")
            v = r.unpack(SOFT_BODY, what)
            fields = {
                "shape": shape, "material": material, "group": v[0], "no_collision_mask": v[1],
                "flags": v[2], "b_link_distance": v[3], "cluster_count": v[4], "mass": v[5],
                "collision_margin": v[6], "aero_model": v[7],
            }
            fields.update(zip(SOFT_BODY_FLOATS, v[8:26]))
            fields.update(zip(SOFT_BODY_ITERATIONS, v[26:30]))
            fields.update(zip(SOFT_BODY_MATERIAL, v[30:33]))
            anchors = r.check_count(r.i32(f"{what} anchor count"), 3, f"{what} anchor")
            fields["anchors"] = [
                (
                    self._ref("rigid body", len(m.rigid_bodies), f"{what} anchor {j} rigid body"),
                    self._ref("vertex", m.vertex_count, f"{what} anchor {j} vertex", False),
                    r.u8(f"{what} anchor {j} near mode"),
                )
                for j in range(anchors)
            ]
            pins = r.check_count(r.i32(f"{what} pin count"), 1, f"{what} pin")
            fields["pins"] = [self._ref("vertex", m.vertex_count, f"{what} pin {j}", False) for j in range(pins)]
            m.soft_bodies.append(SoftBody(name=name, name_en=name_en, fields=fields))



def _gather(raw, starts, size):
    """Rows of `size` bytes starting at each offset, as one contiguous (n, size) uint8 array."""
    return raw[starts[:, None] + np.arange(size, dtype=np.int64)]


def _weight_dtype(kind, bone):
    if kind == BDEF1:
        return np.dtype([("b", bone, (1,))])
    if kind == BDEF2:
        return np.dtype([("b", bone, 2), ("w", "<f4")])
    if kind == SDEF:
        return np.dtype([("b", bone, 2), ("w", "<f4"), ("c", "<f4", 3), ("r0", "<f4", 3), ("r1", "<f4", 3)])
    return np.dtype([("b", bone, 4), ("w", "<f4", 4)])  # BDEF4, QDEF


def _store_weights(m, kind, rows, fields):
    bones = WEIGHT_BONES[kind]
    m.bone_indices[rows, :bones] = fields["b"].reshape(len(rows), bones)
    if kind == BDEF1:
        m.bone_weights[rows, 0] = 1.0
    elif kind in (BDEF2, SDEF):
        w = fields["w"]
        m.bone_weights[rows, 0] = w
        m.bone_weights[rows, 1] = 1.0 - w
        if kind == SDEF:
            m.sdef_c[rows] = fields["c"]
            m.sdef_r0[rows] = fields["r0"]
            m.sdef_r1[rows] = fields["r1"]
    else:
        m.bone_weights[rows] = fields["w"]


# --------------------------------------------------------------------------------------------
# Writing


def write(model: Model, path) -> Path:
    """Write a Model as PMX, atomically (a temp file in the same folder, then os.replace)."""
    path = Path(path)
    write_bytes_atomic(path, to_bytes(model))
    return path


def to_bytes(model: Model) -> bytes:
    """The PMX file for a Model, with the smallest index sizes that hold its counts."""
    return _PMXWriter(model).build()


class _PMXWriter:
    def __init__(self, model):
        self.m = model
        # A model read from PMD (version 1.0, cp932) is written as PMX 2.0 in UTF-16LE.
        self.version = model.version if model.format == "pmx" else 2.0
        self.encoding = model.encoding if model.format == "pmx" else "utf-16-le"
        if self.version not in VERSIONS:
            raise ValueError(f"cannot write PMX version {model.version} (2.0 or 2.1)")
        if self.encoding not in ENCODINGS:
            raise ValueError(f"cannot write PMX text encoding {model.encoding!r} (utf-16-le or utf-8)")
        counts = {
            "vertex": model.vertex_count, "texture": len(model.textures), "material": len(model.materials),
            "bone": len(model.bones), "morph": len(model.morphs), "rigid body": len(model.rigid_bodies),
        }
        self.sizes = {kind: index_size_for(kind, n) for kind, n in counts.items()}
        self.idx = {kind: _index_struct(kind, size) for kind, size in self.sizes.items()}
        self.parts = []

    # -- small helpers -------------------------------------------------------------------

    def put(self, layout, *values):
        self.parts.append(layout.pack(*values))

    def text(self, value):
        raw = value.encode(self.encoding, ERROR_HANDLERS[self.encoding])
        self.parts.append(I32.pack(len(raw)) + raw)

    def index(self, kind, value):
        self.parts.append(self.idx[kind].pack(value))

    def count(self, n):
        self.parts.append(I32.pack(n))

    def build(self):
        for section in SECTIONS:
            if self.version >= section.since:
                getattr(self, section_method(section))()
            elif getattr(self.m, section.model_field):
                raise ValueError(f"PMX {self.version} cannot hold {section.name}; set version {section.since}")
        return b"".join(self.parts)

    # -- sections ------------------------------------------------------------------------

    def _header(self):
        m = self.m
        additional = m.additional_uvs.shape[1] if m.additional_uvs.ndim == 3 else 0
        if additional and m.additional_uvs.shape[0] != m.vertex_count:
            raise ValueError(f"additional_uvs has {m.additional_uvs.shape[0]} rows for {m.vertex_count} vertices")
        self.additional = additional
        settings = bytes([ENCODINGS.index(self.encoding), additional] + [self.sizes[k] for k in INDEX_KINDS])
        self.parts.append(MAGIC + F32.pack(self.version) + U8.pack(len(settings)) + settings)
        for value in (m.name, m.name_en, m.comment, m.comment_en):
            self.text(value)

    def _vertices(self):
        m = self.m
        n = m.vertex_count
        types = np.asarray(m.weight_types, np.uint8) if len(m.weight_types) else np.full(n, BDEF1, np.uint8)
        if len(types) != n:
            raise ValueError(f"weight_types has {len(types)} entries for {n} vertices")
        if (types > QDEF).any():
            raise ValueError(f"unknown weight type {int(types.max())}")
        if self.version < 2.1 and (types == QDEF).any():
            raise ValueError("PMX 2.0 cannot hold QDEF weights; set version 2.1")
        bone = index_dtype("bone", self.sizes["bone"])
        common = 32 + 16 * self.additional
        payload = {t: _weight_dtype(t, bone).itemsize for t in range(5)}
        sizes = np.asarray([common + 1 + payload[t] + 4 for t in range(5)], np.int64)[types]
        starts = np.zeros(n, np.int64)
        np.cumsum(sizes[:-1], out=starts[1:])
        out = np.zeros(int(sizes.sum()), np.uint8)

        floats = np.empty((n, common // 4), "<f4")
        floats[:, 0:3] = m.positions
        floats[:, 3:6] = m.normals
        floats[:, 6:8] = m.uvs
        if self.additional:
            floats[:, 8:] = m.additional_uvs.reshape(n, -1)
        _scatter(out, starts, floats.view(np.uint8))
        out[starts + common] = types
        for kind in np.unique(types):
            rows = np.nonzero(types == kind)[0]
            fields = np.zeros(len(rows), _weight_dtype(kind, bone))
            bones = WEIGHT_BONES[kind]
            fields["b"] = m.bone_indices[rows, :bones].reshape(fields["b"].shape)
            if kind in (BDEF2, SDEF):
                fields["w"] = m.bone_weights[rows, 0]
            elif kind in (BDEF4, QDEF):
                fields["w"] = m.bone_weights[rows]
            if kind == SDEF:
                fields["c"], fields["r0"], fields["r1"] = m.sdef_c[rows], m.sdef_r0[rows], m.sdef_r1[rows]
            _scatter(out, starts[rows] + common + 1, fields.view(np.uint8).reshape(len(rows), -1))
        edges = np.asarray(m.edge_scales if len(m.edge_scales) else np.ones(n), "<f4")
        _scatter(out, starts + sizes - 4, edges.reshape(n, 1).view(np.uint8))
        self.count(n)
        self.parts.append(out.tobytes())

    def _faces(self):
        faces = np.asarray(self.m.faces).reshape(-1)
        self.count(len(faces))
        self.parts.append(faces.astype(index_dtype("vertex", self.sizes["vertex"])).tobytes())

    def _textures(self):
        self.count(len(self.m.textures))
        for path in self.m.textures:
            self.text(path)

    def _materials(self):
        self.count(len(self.m.materials))
        for mat in self.m.materials:
            self.text(mat.name)
            self.text(mat.name_en)
            self.put(MATERIAL, *mat.diffuse, *mat.specular, mat.specular_strength, *mat.ambient, mat.flags,
                     *mat.edge_color, mat.edge_size)
            self.index("texture", mat.texture)
            self.index("texture", mat.sphere_texture)
            self.put(U8, mat.sphere_mode)
            self.put(U8, 1 if mat.toon_shared else 0)
            if mat.toon_shared:
                self.put(U8, mat.toon)
            else:
                self.index("texture", mat.toon)
            self.text(mat.comment)
            self.put(I32, mat.index_count)

    def _bones(self):
        head = bone_head(self.idx["bone"])
        self.count(len(self.m.bones))
        for bone in self.m.bones:
            self.text(bone.name)
            self.text(bone.name_en)
            self.put(head, *bone.position, bone.parent, bone.layer, bone.flags)
            if bone.flags & BONE_TAIL_IS_BONE:
                self.index("bone", bone.tail_bone)
            else:
                self.put(VEC3, *bone.tail_offset)
            if bone.flags & (BONE_INHERIT_ROTATION | BONE_INHERIT_TRANSLATION):
                self.index("bone", bone.inherit_parent)
                self.put(F32, bone.inherit_ratio)
            if bone.flags & BONE_FIXED_AXIS:
                self.put(VEC3, *bone.fixed_axis)
            if bone.flags & BONE_LOCAL_AXIS:
                self.put(VEC3, *bone.local_x)
                self.put(VEC3, *bone.local_z)
            if bone.flags & BONE_EXTERNAL_PARENT:
                self.put(I32, bone.external_key)
            if bone.flags & BONE_IK:
                if bone.ik is None:
                    raise ValueError(f"bone {bone.name!r} has the IK flag but no IK")
                ik = bone.ik
                self.index("bone", ik.target)
                self.put(IK_HEAD, ik.loop_count, ik.limit_angle)
                self.count(len(ik.links))
                for link in ik.links:
                    self.index("bone", link.bone)
                    self.put(U8, 1 if link.limits is not None else 0)
                    if link.limits is not None:
                        self.put(VEC3, *link.limits[0])
                        self.put(VEC3, *link.limits[1])

    def _morphs(self):
        self.count(len(self.m.morphs))
        for item in self.m.morphs:
            if item.kind not in MORPH_KINDS:
                raise ValueError(f"morph {item.name!r} has unknown kind {item.kind!r}")
            number = MORPH_KINDS.index(item.kind)
            if number >= 9 and self.version < 2.1:
                raise ValueError(f"PMX 2.0 cannot hold {item.kind} morph {item.name!r}; set version 2.1")
            self.text(item.name)
            self.text(item.name_en)
            self.put(MORPH_HEAD, item.panel, number)
            family = MORPH_FAMILIES.get(item.kind, item.kind)
            if family in MORPH_OFFSET_FIELDS:
                _target, attributes = MORPH_OFFSET_FIELDS[family]
                columns = {field: getattr(item, attribute) for field, attribute in attributes.items()}
                records = _records(morph_offset_dtype(family, self.sizes), **columns)
            elif item.kind == "material":
                self.count(len(item.material_offsets))
                for o in item.material_offsets:
                    self.index("material", o.material)
                    self.put(U8, o.operation)
                    self.put(MATERIAL_OFFSET, *o.diffuse, *o.specular, o.specular_strength, *o.ambient,
                             *o.edge_color, o.edge_size, *o.texture_tint, *o.sphere_tint, *o.toon_tint)
                continue
            else:  # impulse
                self.count(len(item.impulse_offsets))
                for o in item.impulse_offsets:
                    self.index("rigid body", o.rigid_body)
                    self.put(U8, 1 if o.local else 0)
                    self.put(VEC3, *o.velocity)
                    self.put(VEC3, *o.torque)
                continue
            self.count(len(records))
            self.parts.append(records.tobytes())

    def _display_frames(self):
        self.count(len(self.m.display_frames))
        for frame in self.m.display_frames:
            self.text(frame.name)
            self.text(frame.name_en)
            self.put(U8, 1 if frame.special else 0)
            self.count(len(frame.items))
            for target, index in frame.items:
                self.put(U8, target)
                self.index("bone" if target == 0 else "morph", index)

    def _rigid_bodies(self):
        self.count(len(self.m.rigid_bodies))
        for rb in self.m.rigid_bodies:
            self.text(rb.name)
            self.text(rb.name_en)
            self.index("bone", rb.bone)
            self.put(RIGID_BODY, rb.group, rb.no_collision_mask, rb.shape, *rb.size, *rb.position, *rb.rotation,
                     rb.mass, rb.linear_damping, rb.angular_damping, rb.restitution, rb.friction, rb.mode)

    def _joints(self):
        self.count(len(self.m.joints))
        for joint in self.m.joints:
            if joint.kind and self.version < 2.1:
                raise ValueError(f"PMX 2.0 joints are spring 6DOF only; joint {joint.name!r} has type {joint.kind}")
            self.text(joint.name)
            self.text(joint.name_en)
            self.put(U8, joint.kind)
            self.index("rigid body", joint.rigid_a)
            self.index("rigid body", joint.rigid_b)
            self.put(JOINT, *joint.position, *joint.rotation, *joint.position_min, *joint.position_max,
                     *joint.rotation_min, *joint.rotation_max, *joint.spring_position, *joint.spring_rotation)

    def _soft_bodies(self):
        self.count(len(self.m.soft_bodies))
        for soft in self.m.soft_bodies:
            f = soft.fields
            self.text(soft.name)
            self.text(soft.name_en)
            self.put(U8, f["shape"])
            self.index("material", f["material"])
            self.put(SOFT_BODY, f["group"], f["no_collision_mask"], f["flags"], f["b_link_distance"],
                     f["cluster_count"], f["mass"], f["collision_margin"], f["aero_model"],
                     *(f[k] for k in SOFT_BODY_FLOATS), *(f[k] for k in SOFT_BODY_ITERATIONS),
                     *(f[k] for k in SOFT_BODY_MATERIAL))
            self.count(len(f["anchors"]))
            for rigid, vertex, near in f["anchors"]:
                self.index("rigid body", rigid)
                self.index("vertex", vertex)
                self.put(U8, near)
            self.count(len(f["pins"]))
            for vertex in f["pins"]:
                self.index("vertex", vertex)


def _scatter(out, starts, rows):
    """Write each row of bytes at its offset in `out` (the inverse of _gather)."""
    out[starts[:, None] + np.arange(rows.shape[1], dtype=np.int64)] = rows


def _records(layout, **columns):
    n = len(next(iter(columns.values())))
    records = np.zeros(n, layout)
    for name, values in columns.items():
        records[name] = np.asarray(values).reshape(records[name].shape)
    return records
