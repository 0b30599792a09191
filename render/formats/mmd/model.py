"""The parsed MMD model: one description for PMX 2.0/2.1 and PMD, with no bpy.

Readers (`pmx.read`, `pmd.read`) produce a `Model`; the PMX writer takes one; the Blender
builder turns one into objects. Per-vertex data are numpy arrays (a model has tens of
thousands of vertices); everything else is small and kept as dataclasses.

Coordinates are MMD's own: left-handed, Y up, units of the file. Conversion to Blender's axes
happens in the builder, not here, so a read-write round trip is exact.

Indices follow the file: -1 means "none" for bone, texture, material, morph and rigid-body
references.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ....errors import UserError
from ..limits import whole_file_problem

# Vertex weight (deform) types, as stored in PMX.
BDEF1, BDEF2, BDEF4, SDEF, QDEF = 0, 1, 2, 3, 4

# Morph panels (where MMD shows the slider).
PANEL_SYSTEM, PANEL_EYEBROW, PANEL_EYE, PANEL_MOUTH, PANEL_OTHER = 0, 1, 2, 3, 4

# Morph kinds, by PMX type number. UV morphs 3..7 are uv, uv1..uv4 (additional UV channels).
MORPH_KINDS = ("group", "vertex", "bone", "uv", "uv1", "uv2", "uv3", "uv4", "material", "flip", "impulse")

# Bone flags.
BONE_TAIL_IS_BONE = 0x0001
BONE_ROTATABLE = 0x0002
BONE_MOVABLE = 0x0004
BONE_VISIBLE = 0x0008
BONE_ENABLED = 0x0010
BONE_IK = 0x0020
BONE_LOCAL_INHERIT = 0x0080
BONE_INHERIT_ROTATION = 0x0100
BONE_INHERIT_TRANSLATION = 0x0200
BONE_FIXED_AXIS = 0x0400
BONE_LOCAL_AXIS = 0x0800
BONE_AFTER_PHYSICS = 0x1000
BONE_EXTERNAL_PARENT = 0x2000

# Material flags.
MATERIAL_NO_CULL = 0x01
MATERIAL_GROUND_SHADOW = 0x02
MATERIAL_DRAW_SHADOW = 0x04
MATERIAL_RECEIVE_SHADOW = 0x08
MATERIAL_EDGE = 0x10
MATERIAL_VERTEX_COLOR = 0x20
MATERIAL_POINTS = 0x40
MATERIAL_LINES = 0x80


@dataclass
class Material:
    name: str
    name_en: str = ""
    diffuse: tuple = (1.0, 1.0, 1.0, 1.0)  # RGBA
    specular: tuple = (0.0, 0.0, 0.0)
    specular_strength: float = 0.0
    ambient: tuple = (0.5, 0.5, 0.5)
    flags: int = 0
    edge_color: tuple = (0.0, 0.0, 0.0, 1.0)
    edge_size: float = 1.0
    texture: int = -1  # index into Model.textures
    sphere_texture: int = -1
    sphere_mode: int = 0  # 0 off, 1 multiply, 2 add, 3 sub-texture
    toon_shared: bool = False  # True: `toon` is a shared toon number 0-9 (toon01.bmp..toon10.bmp)
    toon: int = -1  # a texture index, or the shared toon number
    comment: str = ""
    index_count: int = 0  # how many face indices (3 per triangle) this material draws, in order


@dataclass
class IKLink:
    bone: int
    limits: Optional[tuple] = None  # ((min x, y, z), (max x, y, z)) in radians, or None


@dataclass
class IK:
    target: int
    loop_count: int
    limit_angle: float  # radians
    links: list = field(default_factory=list)  # [IKLink]


@dataclass
class Bone:
    name: str
    name_en: str = ""
    position: tuple = (0.0, 0.0, 0.0)
    parent: int = -1
    layer: int = 0
    flags: int = BONE_ROTATABLE | BONE_VISIBLE | BONE_ENABLED
    tail_bone: int = -1  # used when flags has BONE_TAIL_IS_BONE
    tail_offset: tuple = (0.0, 0.0, 0.0)  # used otherwise
    inherit_parent: int = -1  # with BONE_INHERIT_ROTATION / BONE_INHERIT_TRANSLATION
    inherit_ratio: float = 0.0
    fixed_axis: Optional[tuple] = None  # with BONE_FIXED_AXIS
    local_x: Optional[tuple] = None  # with BONE_LOCAL_AXIS
    local_z: Optional[tuple] = None
    external_key: int = 0  # with BONE_EXTERNAL_PARENT
    ik: Optional[IK] = None  # with BONE_IK


@dataclass
class MaterialOffset:
    material: int  # -1: every material
    operation: int  # 0 multiply, 1 add
    diffuse: tuple
    specular: tuple
    specular_strength: float
    ambient: tuple
    edge_color: tuple
    edge_size: float
    texture_tint: tuple
    sphere_tint: tuple
    toon_tint: tuple


@dataclass
class ImpulseOffset:
    rigid_body: int
    local: bool
    velocity: tuple
    torque: tuple


@dataclass
class Morph:
    """A morph. Which fields are used depends on `kind` (one of MORPH_KINDS).

    vertex:          vertex_indices (N,), vertex_offsets (N, 3)
    uv, uv1..uv4:    vertex_indices (N,), uv_offsets (N, 4)
    group, flip:     morph_indices (N,), weights (N,)
    bone:            bone_indices (N,), translations (N, 3), rotations (N, 4) quaternion x, y, z, w
    material:        material_offsets [MaterialOffset]
    impulse:         impulse_offsets [ImpulseOffset]
    """

    name: str
    name_en: str = ""
    panel: int = PANEL_OTHER
    kind: str = "vertex"
    vertex_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    vertex_offsets: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    uv_offsets: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    morph_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    weights: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    bone_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    translations: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    rotations: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    material_offsets: list = field(default_factory=list)
    impulse_offsets: list = field(default_factory=list)


@dataclass
class DisplayFrame:
    name: str
    name_en: str = ""
    special: bool = False
    items: list = field(default_factory=list)  # [(0 bone | 1 morph, index)]


@dataclass
class RigidBody:
    name: str
    name_en: str = ""
    bone: int = -1
    group: int = 0
    no_collision_mask: int = 0
    shape: int = 0  # 0 sphere, 1 box, 2 capsule
    size: tuple = (1.0, 1.0, 1.0)
    position: tuple = (0.0, 0.0, 0.0)
    rotation: tuple = (0.0, 0.0, 0.0)  # radians
    mass: float = 1.0
    linear_damping: float = 0.5
    angular_damping: float = 0.5
    restitution: float = 0.0
    friction: float = 0.5
    mode: int = 0  # 0 follow bone, 1 physics, 2 physics with bone position


@dataclass
class Joint:
    name: str
    name_en: str = ""
    kind: int = 0  # 0 spring 6DOF (2.1 adds more)
    rigid_a: int = -1
    rigid_b: int = -1
    position: tuple = (0.0, 0.0, 0.0)
    rotation: tuple = (0.0, 0.0, 0.0)
    position_min: tuple = (0.0, 0.0, 0.0)
    position_max: tuple = (0.0, 0.0, 0.0)
    rotation_min: tuple = (0.0, 0.0, 0.0)
    rotation_max: tuple = (0.0, 0.0, 0.0)
    spring_position: tuple = (0.0, 0.0, 0.0)
    spring_rotation: tuple = (0.0, 0.0, 0.0)


@dataclass
class SoftBody:
    """PMX 2.1 soft body, kept as read so a model can be written back."""

    name: str
    name_en: str = ""
    fields: dict = field(default_factory=dict)


@dataclass
class Model:
    format: str = "pmx"  # "pmx" or "pmd"
    version: float = 2.0
    encoding: str = "utf-16-le"  # PMX text encoding ("utf-16-le" or "utf-8"); PMD is cp932
    name: str = ""
    name_en: str = ""
    comment: str = ""
    comment_en: str = ""

    # Per vertex.
    positions: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    normals: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    uvs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    additional_uvs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 4), np.float32))
    weight_types: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    bone_indices: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.int32))  # -1 unused
    bone_weights: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    sdef_c: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))  # SDEF only
    sdef_r0: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    sdef_r1: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    edge_scales: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    # Triangles as vertex indices, in file order (clockwise winding, DirectX convention).
    faces: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))

    textures: list = field(default_factory=list)  # paths as stored, relative to the model file
    materials: list = field(default_factory=list)  # [Material]
    bones: list = field(default_factory=list)  # [Bone]
    morphs: list = field(default_factory=list)  # [Morph]
    display_frames: list = field(default_factory=list)  # [DisplayFrame]
    rigid_bodies: list = field(default_factory=list)  # [RigidBody]
    joints: list = field(default_factory=list)  # [Joint]
    soft_bodies: list = field(default_factory=list)  # [SoftBody] (PMX 2.1)

    @property
    def vertex_count(self):
        return len(self.positions)

    def bone_index(self, name):
        """Index of the bone with this exact name, or -1."""
        for i, bone in enumerate(self.bones):
            if bone.name == name:
                return i
        return -1

    def morph_index(self, name):
        for i, morph in enumerate(self.morphs):
            if morph.name == name:
                return i
        return -1


class MMDFormatError(UserError, ValueError):
    """A model file that cannot be read: says which file, which section and at what byte."""

    def __init__(self, path, section, offset, problem):
        self.path = str(path)
        self.section = section
        self.offset = offset
        self.problem = problem
        super().__init__(f"{self.path}: {section} at byte {offset}: {problem}")


def read_file_bytes(path, what="model"):
    """The bytes of an MMD file (`what`: "model", "motion"), refusing a folder, a named pipe and a
    file past limits.MAX_FILE_BYTES before reading it."""
    problem = whole_file_problem(path, f"a {what} file")
    if problem:
        raise MMDFormatError(path, "file", 0, problem)
    return Path(path).read_bytes()
