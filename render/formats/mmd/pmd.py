"""PMD 1.0 reader (pure Python + numpy), producing the same Model as the PMX reader.

Layout: shared/reference/mmd.md §3. Strings are cp932, NUL-terminated in fixed-size fields.
The English names, toon texture names, rigid bodies and joints are optional trailing
sections: a file may stop before any of them (but not inside one).

How PMD concepts become PMX ones (so one Blender builder serves both):
- weights 0..100 on two bones become BDEF2 (BDEF1 where one bone takes it all); the edge-off
  byte becomes edge scale 0;
- a material's `"tex.bmp*sphere.sph"` becomes a texture and a sphere texture (.spa adds,
  .sph multiplies); toon index n is shared toon n unless the file names a custom toon file;
- bone types become flags (1 movable, 2 IK, 5 inherits rotation from its IK-parent field,
  6/7 hidden, 8 twist: a fixed axis towards the tail, 9 inherits rotation with the tail field
  as a percentage); IK limit angles are the file's control weight × 4 radians, as MMD applies
  them, and links on knee bones (名前 containing ひざ) get MMD's implicit X-axis limit;
- skins other than `base` become vertex morphs with absolute vertex indices;
- rigid body positions, relative to their bone in PMD, become absolute.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np

from ..coordinates import quiet_file_numbers
from .binary import BinaryReader
from .model import (
    BDEF1,
    BDEF2,
    BONE_FIXED_AXIS,
    BONE_IK,
    BONE_INHERIT_ROTATION,
    BONE_MOVABLE,
    BONE_ROTATABLE,
    BONE_TAIL_IS_BONE,
    BONE_ENABLED,
    BONE_VISIBLE,
    MATERIAL_DRAW_SHADOW,
    MATERIAL_EDGE,
    MATERIAL_GROUND_SHADOW,
    MATERIAL_NO_CULL,
    MATERIAL_RECEIVE_SHADOW,
    IK,
    Bone,
    DisplayFrame,
    IKLink,
    Joint,
    MMDFormatError,
    Material,
    Model,
    Morph,
    RigidBody,
    read_file_bytes,
)

MAGIC = b"Pmd"
NONE16 = 0xFFFF
KNEE_LIMITS = ((-math.pi, 0.0, 0.0), (math.radians(-0.5), 0.0, 0.0))

VERTEX = np.dtype([("p", "<f4", 3), ("n", "<f4", 3), ("uv", "<f4", 2), ("b", "<u2", 2), ("w", "u1"), ("edge_off", "u1")])
SKIN_OFFSET = np.dtype([("i", "<u4"), ("v", "<f4", 3)])
MATERIAL = struct.Struct("<4ff3f3fBBI20s")
BONE = struct.Struct("<20sHHBH3f")
RIGID_BODY = struct.Struct("<20sHBHB3f3f3f5fB")
JOINT = struct.Struct("<20sII24f")


def read(path) -> Model:
    """Read a .pmd file into a Model; MMDFormatError (file, section, byte offset) if it is invalid."""
    path = Path(path)
    return parse(read_file_bytes(path), path)


@quiet_file_numbers
def parse(data: bytes, path="<bytes>") -> Model:
    return _PMDParser(data, path).parse()


def section_offsets(data: bytes, path="<bytes>") -> dict:
    """Byte offset where each section present in the file starts."""
    parser = _PMDParser(data, path)
    parser.parse()
    return dict(parser.r.section_starts)


def decode_name(raw: bytes) -> str:
    """A fixed-size cp932 field: up to the first NUL; a lead byte cut off by the field end is dropped."""
    raw = raw.split(b"\x00", 1)[0]
    for candidate in (raw, raw[:-1]):
        try:
            return candidate.decode("cp932")
        except UnicodeDecodeError:
            continue
    return raw.decode("cp932", "replace")


class _PMDParser:
    def __init__(self, data, path):
        self.r = BinaryReader(data, path)
        self.model = Model(format="pmd", version=1.0, encoding="cp932")

    def parse(self):
        self._header()
        self._vertices()
        self._faces()
        toon_indices = self._materials()
        self._bones()
        self._iks()
        self._skins()
        self._display()
        if self._optional("english names"):
            self._english()
        toon_names = [f"toon{i + 1:02d}.bmp" for i in range(10)]
        if self._optional("toon textures"):
            toon_names = [decode_name(self.r.raw(100, f"toon texture name {i}")) for i in range(10)]
        self._assign_toons(toon_indices, toon_names)
        if self._optional("rigid bodies"):
            self._rigid_bodies()
        if self._optional("joints"):
            self._joints()
        return self.model

    def _optional(self, section):
        """Enter a trailing section if the file goes on; False where it ended before it."""
        if not self.r.remaining:
            return False
        self.r.enter(section)
        return True

    def _name(self, size, what):
        return decode_name(self.r.raw(size, what))

    def _header(self):
        r, m = self.r, self.model
        if r.remaining < 3:
            r.fail(f"the file is {len(r.data)} bytes long, too short for a PMD header")
        magic = r.raw(3, "the magic number")
        if magic != MAGIC:
            r.fail(f"not a PMD file: it starts with {magic!r}, not {MAGIC!r}", 0)
        version = r.f32("the version")
        if version != 1.0:
            r.fail(f"unsupported PMD version {version} (this reader knows 1.0)", 3)
        m.name = self._name(20, "the model name")
        m.comment = self._name(256, "the comment")

    def _vertices(self):
        r, m = self.r, self.model
        r.enter("vertices")
        count = r.check_count(r.u32("the vertex count"), VERTEX.itemsize, "vertex")
        v = r.array(VERTEX, count, "the vertices")
        m.positions = v["p"].copy()
        record_starts = r.section_starts["vertices"] + 4 + np.arange(count) * VERTEX.itemsize
        r.check_numbers(m.positions, "vertex {} position", record_starts)  # (normals, UVs: see pmx.py)
        m.normals = v["n"].copy()
        m.uvs = v["uv"].copy()
        m.additional_uvs = np.zeros((count, 0, 4), np.float32)
        bones = v["b"].astype(np.int32)
        weight = v["w"].astype(np.float32) / 100.0
        if (v["w"] > 100).any():
            first = int(np.argmax(v["w"] > 100))
            r.fail(f"vertex {first} has weight {int(v['w'][first])} (PMD weights are 0 to 100)", r.section_starts["vertices"])
        single = (v["w"] == 100) | (v["w"] == 0) | (bones[:, 0] == bones[:, 1])
        m.weight_types = np.where(single, BDEF1, BDEF2).astype(np.uint8)
        m.bone_indices = np.full((count, 4), -1, np.int32)
        m.bone_weights = np.zeros((count, 4), np.float32)
        # A weight of 0 gives the whole vertex to the second bone.
        m.bone_indices[:, 0] = np.where(v["w"] == 0, bones[:, 1], bones[:, 0])
        m.bone_indices[~single, 1] = bones[~single, 1]
        m.bone_weights[:, 0] = np.where(single, 1.0, weight)
        m.bone_weights[~single, 1] = 1.0 - weight[~single]
        m.sdef_c = np.zeros((count, 3), np.float32)
        m.sdef_r0 = np.zeros((count, 3), np.float32)
        m.sdef_r1 = np.zeros((count, 3), np.float32)
        m.edge_scales = np.where(v["edge_off"] != 0, 0.0, 1.0).astype(np.float32)

    def _faces(self):
        r, m = self.r, self.model
        r.enter("faces")
        count = r.check_count(r.u32("the face index count"), 2, "face index")
        if count % 3:
            r.fail(f"the face index count {count} is not a multiple of 3", r.pos - 4)
        indices = r.array("<u2", count, "the face indices").astype(np.int64)
        if len(indices) and indices.max() >= m.vertex_count:
            first = int(np.argmax(indices >= m.vertex_count))
            r.fail(f"face index {first} is {int(indices[first])}, but there are {m.vertex_count} vertices",
                   r.section_starts["faces"])
        m.faces = indices.reshape(-1, 3)

    def _materials(self):
        r, m = self.r, self.model
        r.enter("materials")
        count = r.check_count(r.u32("the material count"), MATERIAL.size, "material")
        toon_indices, total = [], 0
        for i in range(count):
            start = r.pos
            v = r.unpack(MATERIAL, f"material {i}")
            diffuse, power, specular, ambient = v[0:4], v[4], v[5:8], v[8:11]
            toon, edge, index_count, texture_field = v[11], v[12], v[13], v[14]
            if index_count % 3:
                r.fail(f"material {i} draws {index_count} face indices, not a multiple of 3", start)
            total += index_count
            if total > 3 * len(m.faces):
                r.fail(f"materials up to material {i} draw {total} face indices, the file has {3 * len(m.faces)}", start)
            flags = MATERIAL_GROUND_SHADOW | MATERIAL_DRAW_SHADOW | MATERIAL_RECEIVE_SHADOW
            if edge:
                flags |= MATERIAL_EDGE
            if diffuse[3] < 1.0:  # MMD draws both sides of translucent PMD materials
                flags |= MATERIAL_NO_CULL
            material = Material(
                name=f"material{i:02d}", diffuse=diffuse, specular=specular, specular_strength=power,
                ambient=ambient, flags=flags, edge_color=(0.0, 0.0, 0.0, 1.0), edge_size=1.0,
                index_count=index_count,
            )
            self._assign_textures(material, decode_name(texture_field))
            toon_indices.append(toon)
            m.materials.append(material)
        return toon_indices

    def _texture(self, path):
        textures = self.model.textures
        if path not in textures:
            textures.append(path)
        return textures.index(path)

    def _assign_textures(self, material, field):
        for part in filter(None, (p.strip() for p in field.split("*"))):
            suffix = part.rsplit(".", 1)[-1].lower()
            if suffix in ("sph", "spa"):
                material.sphere_texture = self._texture(part)
                material.sphere_mode = 2 if suffix == "spa" else 1
            else:
                material.texture = self._texture(part)

    def _assign_toons(self, toon_indices, toon_names):
        for material, toon in zip(self.model.materials, toon_indices):
            if toon > 9:  # 255: no toon
                continue
            if toon_names[toon].lower() == f"toon{toon + 1:02d}.bmp":
                material.toon_shared, material.toon = True, toon
            elif toon_names[toon]:
                material.toon = self._texture(toon_names[toon])

    def _bones(self):
        r, m = self.r, self.model
        r.enter("bones")
        count = r.check_count(r.u16("the bone count"), BONE.size, "bone")
        records = [r.unpack(BONE, f"bone {i}") for i in range(count)]
        for i, (name, parent, tail, kind, ik_parent, x, y, z) in enumerate(records):
            r.check_numbers([(x, y, z)], f"bone {i} position", r.section_starts["bones"] + 2 + i * BONE.size)
            refs = [("parent", parent)]
            if kind != 9:  # type 9 keeps a percentage in the tail field
                refs.append(("tail", tail))
            if kind in (5, 9):  # these use the IK-parent field as the bone they follow
                refs.append(("IK-parent field", ik_parent))
            for what, value in refs:
                if value != NONE16 and value >= count:
                    r.fail(f"bone {i} {what} is {value}, but there are {count} bones",
                           r.section_starts["bones"] + 2 + i * BONE.size)
            m.bones.append(self._bone(decode_name(name), parent, tail, kind, ik_parent, (x, y, z), records))
        if m.vertex_count and m.bone_indices.max() >= count:
            vertex = int(np.argmax((m.bone_indices >= count).any(axis=1)))
            raise MMDFormatError(r.path, "vertices", r.section_starts["vertices"] + 4 + vertex * VERTEX.itemsize,
                                 f"vertex {vertex} is weighted to bone {int(m.bone_indices[vertex].max())}, "
                                 f"but there are {count} bones")

    def _bone(self, name, parent, tail, kind, ik_parent, position, records):
        flags = BONE_ROTATABLE | BONE_ENABLED
        if kind not in (6, 7):
            flags |= BONE_VISIBLE
        if kind in (1, 2):
            flags |= BONE_MOVABLE
        bone = Bone(name=name, position=position, parent=-1 if parent == NONE16 else parent, flags=flags)
        if kind != 9 and tail not in (0, NONE16):
            bone.flags |= BONE_TAIL_IS_BONE
            bone.tail_bone = tail
        if kind in (5, 9) and ik_parent != NONE16:
            bone.flags |= BONE_INHERIT_ROTATION
            bone.inherit_parent = ik_parent
            bone.inherit_ratio = 1.0 if kind == 5 else tail / 100.0
        if kind == 8 and tail not in (0, NONE16):
            axis = np.subtract(records[tail][5:8], position)
            length = float(np.linalg.norm(axis))
            if length > 0:
                bone.flags |= BONE_FIXED_AXIS
                bone.fixed_axis = tuple(float(a) for a in axis / length)
        return bone

    def _iks(self):
        r, m = self.r, self.model
        r.enter("IK")
        count = r.check_count(r.u16("the IK count"), 11, "IK")
        head = struct.Struct("<HHBHf")
        bones = len(m.bones)
        for i in range(count):
            start = r.pos
            bone, target, length, iterations, control = r.unpack(head, f"IK {i}")
            links = [r.u16(f"IK {i} link {j}") for j in range(length)]
            for what, value in [("bone", bone), ("target", target)] + [(f"link {j}", v) for j, v in enumerate(links)]:
                if value >= bones:
                    r.fail(f"IK {i} {what} is {value}, but there are {bones} bones", start)
            ik = IK(target=target, loop_count=iterations, limit_angle=control * 4.0)
            for link in links:
                knee = "ひざ" in m.bones[link].name
                ik.links.append(IKLink(bone=link, limits=KNEE_LIMITS if knee else None))
            m.bones[bone].ik = ik
            m.bones[bone].flags |= BONE_IK

    def _skins(self):
        r, m = self.r, self.model
        r.enter("skins")
        count = r.check_count(r.u16("the skin count"), 25, "skin")
        base = np.zeros(0, np.int64)
        for i in range(count):
            start = r.pos
            name = self._name(20, f"skin {i} name")
            n = r.check_count(r.u32(f"skin {i} vertex count"), SKIN_OFFSET.itemsize, f"skin {i} offset")
            kind = r.u8(f"skin {i} type")
            offsets = r.array(SKIN_OFFSET, n, f"skin {i} offsets")
            indices = offsets["i"].astype(np.int64)
            r.check_numbers(offsets["v"], f"skin {i} ({name}) offset {{}}", start)
            if i == 0:
                if kind != 0:
                    r.fail(f"the first skin {name!r} has type {kind}; PMD needs the base skin (type 0) first", start)
                if n and indices.max() >= m.vertex_count:
                    r.fail(f"the base skin refers to vertex {int(indices.max())}, but there are {m.vertex_count}", start)
                base = indices
                continue
            if n and indices.max() >= len(base):
                r.fail(f"skin {i} ({name}) refers to base entry {int(indices.max())}, but base has {len(base)}", start)
            m.morphs.append(Morph(name=name, panel=min(kind, 4), kind="vertex",
                                  vertex_indices=base[indices], vertex_offsets=offsets["v"].copy()))

    def _display(self):
        r, m = self.r, self.model
        r.enter("display lists")
        count = r.u8("the skin display count")
        skins = [r.u16(f"skin display entry {i}") for i in range(count)]
        expressions = DisplayFrame(name="表情", name_en="Exp", special=True)
        for i, skin in enumerate(skins):
            if not 1 <= skin <= len(m.morphs):
                r.fail(f"skin display entry {i} is skin {skin}, but there are {len(m.morphs)} skins after base")
            expressions.items.append((1, skin - 1))
        count = r.u8("the bone frame count")
        frames = [DisplayFrame(name=self._name(50, f"bone frame {i} name").strip()) for i in range(count)]
        count = r.check_count(r.u32("the bone display count"), 3, "bone display entry")
        for i in range(count):
            bone = r.u16(f"bone display entry {i} bone")
            frame = r.u8(f"bone display entry {i} frame")
            if bone >= len(m.bones) or not 1 <= frame <= len(frames):
                r.fail(f"bone display entry {i} puts bone {bone} in frame {frame} "
                       f"({len(m.bones)} bones, {len(frames)} frames)", r.pos - 3)
            frames[frame - 1].items.append((0, bone))
        root = DisplayFrame(name="Root", name_en="Root", special=True, items=[(0, 0)] if m.bones else [])
        m.display_frames = [root, expressions] + frames

    def _english(self):
        r, m = self.r, self.model
        if not r.u8("the English names flag"):
            return
        m.name_en = self._name(20, "the English model name")
        m.comment_en = self._name(256, "the English comment")
        for i, bone in enumerate(m.bones):
            bone.name_en = self._name(20, f"bone {i} English name")
        for i, morph in enumerate(m.morphs):
            morph.name_en = self._name(20, f"skin {i + 1} English name")
        for i, frame in enumerate(m.display_frames[2:]):
            frame.name_en = self._name(50, f"bone frame {i} English name").strip()

    def _rigid_bodies(self):
        r, m = self.r, self.model
        count = r.check_count(r.u32("the rigid body count"), RIGID_BODY.size, "rigid body")
        for i in range(count):
            v = r.unpack(RIGID_BODY, f"rigid body {i}")
            bone = -1 if v[1] == NONE16 else v[1]
            if bone >= len(m.bones):
                r.fail(f"rigid body {i} is attached to bone {bone}, but there are {len(m.bones)} bones", r.pos - RIGID_BODY.size)
            # PMD stores the position relative to the bone (the first bone where none is given).
            anchor = m.bones[bone if bone >= 0 else 0].position if m.bones else (0.0, 0.0, 0.0)
            m.rigid_bodies.append(RigidBody(
                name=decode_name(v[0]), bone=bone, group=v[2], no_collision_mask=v[3], shape=v[4], size=v[5:8],
                position=tuple(float(np.float32(a + b)) for a, b in zip(v[8:11], anchor)), rotation=v[11:14],
                mass=v[14], linear_damping=v[15], angular_damping=v[16], restitution=v[17], friction=v[18], mode=v[19],
            ))

    def _joints(self):
        r, m = self.r, self.model
        count = r.check_count(r.u32("the joint count"), JOINT.size, "joint")
        for i in range(count):
            v = r.unpack(JOINT, f"joint {i}")
            for rigid in v[1:3]:
                if rigid >= len(m.rigid_bodies):
                    r.fail(f"joint {i} connects rigid body {rigid}, but there are {len(m.rigid_bodies)}", r.pos - JOINT.size)
            f = v[3:]
            m.joints.append(Joint(
                name=decode_name(v[0]), rigid_a=v[1], rigid_b=v[2], position=f[0:3], rotation=f[3:6],
                position_min=f[6:9], position_max=f[9:12], rotation_min=f[12:15], rotation_max=f[15:18],
                spring_position=f[18:21], spring_rotation=f[21:24],
            ))
