"""THA Studio's own sample MMD character, built from numbers (no files, no third-party design).

A stylised head and shoulders, placed and sized like a real MMD model (units of about 8 cm,
Y up, facing -Z; the head top near 20 units, the shoulders near 15.5, like Gene's): a tapered
head, a hair cap with a fringe, side locks and back hair, eyes of layered discs (white, iris,
pupil, highlight) under a lash line, brows, a mouth with a tongue, blush, a neck and a
shirt with a generated sailor-collar texture.

Bones: 全ての親 > センター > 上半身 > 首 > 頭. Vertex morphs (with English names):
まばたき blink, ウィンク wink (the model's left eye, +X, as in MMD models), ウィンク右 wink_r,
and あ い う え お (a i u e o). Every eye and mouth morph keeps its vertices on the face
surface: a closed eye squashes the eye discs into the lash line, which bends down.

`make_character()` is deterministic; `write_character(folder)` writes the PMX (with our
writer) and its texture PNG beside it. It is the built-in default model and a test fixture.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ....atomic_files import write_bytes_atomic
from ..png import encode_png
from . import pmx
from .model import (
    BDEF1,
    BDEF2,
    BONE_ENABLED,
    BONE_MOVABLE,
    BONE_ROTATABLE,
    BONE_TAIL_IS_BONE,
    BONE_VISIBLE,
    MATERIAL_DRAW_SHADOW,
    MATERIAL_EDGE,
    MATERIAL_GROUND_SHADOW,
    MATERIAL_NO_CULL,
    MATERIAL_RECEIVE_SHADOW,
    PANEL_EYE,
    PANEL_MOUTH,
    Bone,
    DisplayFrame,
    Material,
    Model,
    Morph,
)

PMX_NAME = "tha_studio_character.pmx"
TEXTURE_NAME = "tha_studio_character_clothes.png"

# Bones, in order: (name, English name, position, parent).
BONES = (
    ("全ての親", "root", (0.0, 0.0, 0.0), -1),
    ("センター", "center", (0.0, 8.0, 0.0), 0),
    ("上半身", "upper body", (0.0, 11.5, 0.1), 1),
    ("首", "neck", (0.0, 15.6, 0.1), 2),
    ("頭", "head", (0.0, 16.8, 0.0), 3),
)
ROOT, CENTER, UPPER_BODY, NECK, HEAD = range(5)

# Morphs, in order: (name, English name, panel).
MORPHS = (
    ("まばたき", "blink", PANEL_EYE),
    ("ウィンク", "wink", PANEL_EYE),
    ("ウィンク右", "wink_r", PANEL_EYE),
    ("あ", "a", PANEL_MOUTH),
    ("い", "i", PANEL_MOUTH),
    ("う", "u", PANEL_MOUTH),
    ("え", "e", PANEL_MOUTH),
    ("お", "o", PANEL_MOUTH),
)

# The head: a tapered ellipsoid (the jaw narrows below the centre).
HEAD_CENTER = np.array([0.0, 18.15, 0.0])
HEAD_RADII = np.array([1.35, 1.8, 1.45])
JAW_TAPER = 0.38

EYE_Y = 17.85
EYE_X = 0.5
MOUTH_Y = 16.92

# Mouth shapes: (half width, top half height, bottom half height, centre shift down).
MOUTH_SHAPES = {
    "rest": (0.16, 0.010, 0.016, 0.0),
    "あ": (0.21, 0.07, 0.28, 0.07),
    "い": (0.26, 0.035, 0.07, 0.01),
    "う": (0.095, 0.075, 0.095, 0.02),
    "え": (0.22, 0.05, 0.15, 0.035),
    "お": (0.14, 0.11, 0.19, 0.055),
}

# Materials, in drawing order: (name, English name, RGB, extra flags, textured).
MATERIALS = (
    ("肌", "skin", (1.0, 0.89, 0.82), 0, False),
    ("服", "clothes", (1.0, 1.0, 1.0), 0, True),
    ("白目", "eye white", (0.98, 0.98, 1.0), 0, False),
    ("瞳", "iris", (0.27, 0.47, 0.82), 0, False),
    ("瞳孔", "pupil", (0.07, 0.1, 0.3), 0, False),
    ("ハイライト", "highlight", (1.0, 1.0, 1.0), 0, False),
    ("まつげ", "lashes and brows", (0.2, 0.11, 0.1), MATERIAL_NO_CULL, False),
    ("頬", "blush", (1.0, 0.7, 0.72), 0, False),
    ("口", "mouth", (0.48, 0.1, 0.14), 0, False),
    ("舌", "tongue", (0.93, 0.45, 0.5), 0, False),
    ("髪", "hair", (0.45, 0.28, 0.22), MATERIAL_NO_CULL, False),
)


# --------------------------------------------------------------------------------------------
# Geometry helpers


def head_taper(y):
    """How much the head's width shrinks at height y (1 above the centre, less towards the chin)."""
    rel = np.minimum((np.asarray(y, float) - HEAD_CENTER[1]) / HEAD_RADII[1], 0.0)
    return 1.0 - JAW_TAPER * rel**2


def face_z(x, y, lift=0.0):
    """Z of the head's front surface at (x, y), moved `lift` towards the viewer (-Z)."""
    a, b, c = HEAD_RADII
    x, y = np.asarray(x, float), np.asarray(y, float)
    inside = 1.0 - (x / (a * head_taper(y))) ** 2 - ((y - HEAD_CENTER[1]) / b) ** 2
    return HEAD_CENTER[2] - c * np.sqrt(np.clip(inside, 0.0, None)) - lift


def on_face(xy, lift):
    xy = np.asarray(xy, float)
    return np.column_stack([xy[:, 0], xy[:, 1], face_z(xy[:, 0], xy[:, 1], lift)])


def ring_faces(rings, columns, closed=True, top_pole=False, bottom_pole=False):
    """Triangles joining `rings` rings of `columns` vertices (row-major), with optional pole fans.

    Pole vertices, when present, come after the ring vertices: top first, then bottom.
    """
    faces = []
    span = columns if closed else columns - 1
    for r in range(rings - 1):
        for j in range(span):
            a, b = r * columns + j, r * columns + (j + 1) % columns
            c, d = a + columns, b + columns
            faces += [(a, b, d), (a, d, c)]
    pole = rings * columns
    if top_pole:
        faces += [(pole, (j + 1) % columns, j) for j in range(span)]
        pole += 1
    if bottom_pole:
        base = (rings - 1) * columns
        faces += [(pole, base + j, base + (j + 1) % columns) for j in range(span)]
    return np.asarray(faces, np.int64)


def disc(segments=24, rings=3):
    """A unit disc as polar parameters (angle, radius fraction) and triangles; vertex 0 is the centre."""
    angles = [0.0]
    radii = [0.0]
    for k in range(1, rings + 1):
        for j in range(segments):
            angles.append(2 * math.pi * j / segments)
            radii.append(k / rings)
    faces = [(0, 1 + j, 1 + (j + 1) % segments) for j in range(segments)]
    for k in range(rings - 1):
        inner, outer = 1 + k * segments, 1 + (k + 1) * segments
        for j in range(segments):
            jn = (j + 1) % segments
            faces += [(inner + j, outer + j, outer + jn), (inner + j, outer + jn, inner + jn)]
    return np.asarray(angles), np.asarray(radii), np.asarray(faces, np.int64)


def strip(count=16):
    """A strip along t in [0, 1] with sides -1/+1: parameters and triangles."""
    t = np.repeat(np.linspace(0.0, 1.0, count), 2)
    side = np.tile([-1.0, 1.0], count)
    faces = []
    for i in range(count - 1):
        a, b, c, d = 2 * i, 2 * i + 1, 2 * i + 2, 2 * i + 3
        faces += [(a, c, d), (a, d, b)]
    return t, side, np.asarray(faces, np.int64)


def orient(positions, faces, outward):
    """Flip triangles so that cross(b - a, c - a) points along `outward` (MMD's front-face winding)."""
    p = positions[faces]
    normal = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    flip = np.einsum("ij,ij->i", normal, outward) < 0
    faces = faces.copy()
    faces[flip] = faces[flip][:, ::-1]
    return faces


def vertex_normals(positions, faces):
    """Area-weighted vertex normals (MMD winding: cross(b - a, c - a) is the front)."""
    p = positions[faces]
    face_normal = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    normals = np.zeros_like(positions)
    for k in range(3):
        np.add.at(normals, faces[:, k], face_normal)
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    facing_viewer = np.array([0.0, 0.0, -1.0])  # for vertices of zero-area triangles only
    return np.where(length > 1e-12, normals / np.where(length > 0, length, 1.0), facing_viewer)


# --------------------------------------------------------------------------------------------
# Parts


class _Builder:
    """Collects parts (vertices with one material and bone weights) and keeps faces per material."""

    def __init__(self):
        self.positions, self.uvs, self.bones, self.weights = [], [], [], []
        self.faces = {name: [] for name, *_ in MATERIALS}
        self.count = 0

    def add(self, material, positions, faces, outward, uvs=None, bones=None, weights=None):
        positions = np.asarray(positions, float)
        n = len(positions)
        if callable(outward):
            centroids = positions[faces].mean(axis=1)
            outward = outward(centroids)
        faces = orient(positions, faces, np.broadcast_to(outward, (len(faces), 3)))
        self.positions.append(positions)
        self.uvs.append(np.zeros((n, 2)) if uvs is None else uvs)
        self.bones.append(np.tile([HEAD, -1], (n, 1)) if bones is None else bones)
        self.weights.append(np.ones(n) if weights is None else weights)
        self.faces[material].append(faces + self.count)
        start = self.count
        self.count += n
        return np.arange(start, self.count)


def _head(builder):
    polar = np.linspace(0.0, math.pi, 33)[1:-1]
    azimuth = np.linspace(-math.pi, math.pi, 48, endpoint=False)
    theta, phi = np.meshgrid(polar, azimuth, indexing="ij")
    a, b, c = HEAD_RADII
    y = HEAD_CENTER[1] + b * np.cos(theta)
    x = a * np.sin(theta) * np.sin(phi) * head_taper(y)
    z = HEAD_CENTER[2] - c * np.sin(theta) * np.cos(phi)
    rings = np.stack([x, y, z], axis=-1).reshape(-1, 3)
    poles = [HEAD_CENTER + [0, b, 0], HEAD_CENTER - [0, b, 0]]
    positions = np.vstack([rings, poles])
    faces = ring_faces(len(polar), len(azimuth), top_pole=True, bottom_pole=True)
    uvs = np.column_stack([(np.arctan2(positions[:, 0], -positions[:, 2]) + math.pi) / (2 * math.pi),
                           (HEAD_CENTER[1] + b - positions[:, 1]) / (2 * b)])
    builder.add("肌", positions, faces, lambda centroid: centroid - HEAD_CENTER, uvs=uvs)


def _lofted(sections, columns, center_z, exponent):
    """Rings of superellipse cross-sections (y, half width, half depth), front at -Z."""
    phi = np.linspace(-math.pi, math.pi, columns, endpoint=False)
    s, c = np.sin(phi), np.cos(phi)
    shape_x = np.sign(s) * np.abs(s) ** (2 / exponent)
    shape_z = np.sign(c) * np.abs(c) ** (2 / exponent)
    rings = [np.column_stack([w * shape_x, np.full(columns, y), center_z - d * shape_z]) for y, w, d in sections]
    return np.vstack(rings), phi


def _neck(builder):
    sections = [(y, 0.45, 0.45) for y in np.linspace(17.0, 15.4, 8)]
    positions, _ = _lofted(sections, 24, 0.1, 2.0)
    faces = ring_faces(len(sections), 24)
    y = positions[:, 1]
    # The upper neck turns with the head, the lower with the neck bone.
    to_head = np.clip((y - 16.2) / 0.6, 0.0, 1.0)
    bones = np.tile([NECK, HEAD], (len(y), 1))
    builder.add("肌", positions, faces, lambda m: (m - [0, 0, 0.1]) * [1, 0, 1], bones=bones, weights=1.0 - to_head)


TORSO = (  # (y, half width, half depth): neck opening, shoulder slope, chest
    (15.95, 0.5, 0.48), (15.85, 0.95, 0.62), (15.7, 1.45, 0.76), (15.5, 1.85, 0.85),
    (15.2, 2.12, 0.92), (14.8, 2.28, 0.95), (14.2, 2.32, 0.97), (13.4, 2.25, 0.97), (12.6, 2.1, 0.93),
)


def _torso(builder):
    columns = 48
    rings, phi = _lofted(TORSO, columns, 0.15, 2.6)
    bottom = [0.0, TORSO[-1][0], 0.15]
    positions = np.vstack([rings, [bottom]])
    faces = ring_faces(len(TORSO), columns, bottom_pole=True)
    top, low = TORSO[0][0], TORSO[-1][0]
    u = np.append(np.tile((phi + math.pi) / (2 * math.pi), len(TORSO)), 0.5)
    v = (top - positions[:, 1]) / (top - low)
    y = positions[:, 1]
    to_neck = np.clip((y - 15.6) / 0.4, 0.0, 1.0) * 0.5
    bones = np.tile([UPPER_BODY, NECK], (len(y), 1))
    builder.add("服", positions, faces, lambda m: (m - [0, 0, 0.15]) * [1, 0.3, 1], uvs=np.column_stack([u, v]),
                bones=bones, weights=1.0 - to_neck)


def hair_hem(phi):
    """Height where the hair ends at azimuth phi (0 = front): zigzag bangs, side locks, back hair."""
    side = np.abs(phi)
    spikes = np.abs(((phi / math.radians(9.0)) % 2.0) - 1.0)  # triangle wave, 0..1
    front = 18.48 + 0.3 * spikes
    blend_side = np.clip((side - math.radians(44)) / math.radians(22), 0, 1)
    blend_back = np.clip((side - math.radians(105)) / math.radians(35), 0, 1)
    hem = front * (1 - blend_side) + 16.45 * blend_side
    return hem * (1 - blend_back) + 15.55 * blend_back


HAIR_CENTER = np.array([0.0, 18.3, 0.08])
HAIR_RADII = np.array([1.52, 1.95, 1.62])
HAIR_DROP = 1.6  # units of height per unit of the hanging parameter


def _hair(builder):
    columns, steps = 104, 22
    phi = np.linspace(-math.pi, math.pi, columns, endpoint=False)
    a, b, c = HAIR_RADII
    hem = hair_hem(phi)
    # s in [0, 1] runs over the dome from the crown to the equator; beyond 1 the hair hangs straight.
    rel = (hem - HAIR_CENTER[1]) / b
    s_end = np.where(rel >= 0, np.arccos(np.clip(rel, -1, 1)) / (math.pi / 2), 1 + (HAIR_CENTER[1] - hem) / HAIR_DROP)
    s = np.linspace(0.0, 1.0, steps + 1)[1:, None] * s_end[None, :]
    theta = np.minimum(s, 1.0) * math.pi / 2
    hang = np.maximum(s - 1.0, 0.0)
    flare = 1.0 + 0.1 * hang
    x = a * np.sin(theta) * np.sin(phi) * flare
    y = HAIR_CENTER[1] + b * np.cos(theta) - hang * HAIR_DROP
    z = HAIR_CENTER[2] - c * np.sin(theta) * np.cos(phi) * flare
    positions = np.vstack([np.stack([x, y, z], axis=-1).reshape(-1, 3), [HAIR_CENTER + [0, b, 0]]])
    faces = ring_faces(steps, columns, top_pole=True)
    builder.add("髪", positions, faces, lambda m: (m - HAIR_CENTER) * [1, 0.5, 1] + [0, 0.3, 0])


def _disc_part(builder, material, center, radii, lift, segments=24, rings=3):
    angle, radius, faces = disc(segments, rings)
    xy = np.column_stack([center[0] + radii[0] * radius * np.cos(angle), center[1] + radii[1] * radius * np.sin(angle)])
    return builder.add(material, on_face(xy, lift), faces, (0.0, 0.0, -1.0)), xy


def _eye(builder, side):
    """One eye (side +1: the model's left, +X). Returns (vertex indices, closed positions)."""
    cx = side * EYE_X
    closed_y = EYE_Y - 0.12
    indices, targets = [], []
    layers = (  # material, centre offset, radii, lift
        ("白目", (0.0, 0.0), (0.27, 0.33), 0.012),
        ("瞳", (side * -0.015, -0.03), (0.19, 0.27), 0.024),
        ("瞳孔", (side * -0.015, -0.05), (0.09, 0.14), 0.036),
        ("ハイライト", (-0.07, 0.1), (0.06, 0.06), 0.048),
        ("ハイライト", (0.06, -0.14), (0.03, 0.03), 0.048),
    )
    for material, (dx, dy), radii, lift in layers:
        part, xy = _disc_part(builder, material, (cx + dx, EYE_Y + dy), radii, lift)
        # Closed: every disc flattens into the lash line (zero area, so it disappears).
        closed = np.column_stack([xy[:, 0], np.full(len(xy), closed_y)])
        indices.append(part)
        targets.append(on_face(closed, lift))
    # The upper lash: an arc over the eye, thick in the middle, with a flick at the outer corner.
    t, edge, faces = strip(18)
    angle = math.radians(8) + t * math.radians(170)
    angle = np.where(side > 0, angle, math.pi - angle)
    width = 0.018 + 0.045 * np.sin(np.pi * np.clip(t * 1.1, 0, 1)) + 0.02 * (t < 0.12)
    radius_x, radius_y = 0.3, 0.36
    base = np.column_stack([cx + radius_x * np.cos(angle), EYE_Y + radius_y * np.sin(angle) - 0.02])
    open_xy = base + np.column_stack([np.zeros_like(t), edge * width])
    lash = builder.add("まつげ", on_face(open_xy, 0.06), faces, (0.0, 0.0, -1.0))
    closed_xy = np.column_stack([open_xy[:, 0], closed_y - 0.06 * np.sin(angle) + edge * width * 0.8])
    indices.append(lash)
    targets.append(on_face(closed_xy, 0.06))
    return indices, targets


def _brow(builder, side):
    t, edge, faces = strip(14)
    x = side * (0.22 + 0.55 * t)
    y = 18.36 + 0.07 * np.sin(np.pi * (0.3 + 0.7 * t)) - 0.04 * t
    width = 0.02 + 0.025 * np.sin(np.pi * np.clip(0.15 + t, 0, 1))
    builder.add("まつげ", on_face(np.column_stack([x, y + edge * width]), 0.03), faces, (0.0, 0.0, -1.0))


def _mouth_xy(angle, radius, shape, scale=1.0, shift=0.0):
    half_width, top, bottom, drop = MOUTH_SHAPES[shape]
    up = np.sin(angle) > 0
    x = half_width * scale * radius * np.cos(angle)
    y = MOUTH_Y - drop - shift * bottom + np.where(up, top, bottom) * scale * radius * np.sin(angle)
    return np.column_stack([x, y])


def _mouth(builder):
    """The mouth and the tongue inside it; returns {shape: (indices, targets)} for the vowel morphs."""
    angle, radius, faces = disc(28, 3)
    mouth = builder.add("口", on_face(_mouth_xy(angle, radius, "rest"), 0.012), faces, (0.0, 0.0, -1.0))
    t_angle, t_radius, t_faces = disc(16, 2)
    # The tongue sits in the lower part of the open mouth; closed, it hides inside the mouth line.
    tongue_rest = _mouth_xy(t_angle, t_radius, "rest", 0.4)
    tongue = builder.add("舌", on_face(tongue_rest, 0.02), t_faces, (0.0, 0.0, -1.0))
    shapes = {}
    for shape in ("あ", "い", "う", "え", "お"):
        tongue_xy = _mouth_xy(t_angle, t_radius, shape, 0.5, 0.5)
        targets = [on_face(_mouth_xy(angle, radius, shape), 0.012), on_face(tongue_xy, 0.02)]
        shapes[shape] = ([mouth, tongue], targets)
    return shapes


def _blush(builder):
    for side in (1, -1):
        _disc_part(builder, "頬", (side * 0.72, 17.42), (0.2, 0.075), 0.008, 20, 2)


# --------------------------------------------------------------------------------------------
# The model


def make_character() -> Model:
    """The sample character as a Model (deterministic)."""
    builder = _Builder()
    _head(builder)
    _neck(builder)
    _torso(builder)
    eyes = {side: _eye(builder, side) for side in (1, -1)}
    for side in (1, -1):
        _brow(builder, side)
    _blush(builder)
    mouth_shapes = _mouth(builder)
    _hair(builder)

    rest = np.vstack(builder.positions)
    model = Model(format="pmx", version=2.0, encoding="utf-16-le")
    model.name, model.name_en = "THA Studio サンプル", "THA Studio sample"
    model.comment = "THA Studio が数値から作ったサンプルキャラクター。"
    model.comment_en = "A sample character that THA Studio builds from numbers; free to use with the project."
    model.positions = rest.astype(np.float32)
    faces = [np.vstack(builder.faces[name]) for name, *_ in MATERIALS]
    model.faces = np.vstack(faces).astype(np.int64)
    model.normals = vertex_normals(rest, model.faces).astype(np.float32)
    model.uvs = np.vstack(builder.uvs).astype(np.float32)
    n = len(rest)
    model.additional_uvs = np.zeros((n, 0, 4), np.float32)
    bones = np.vstack(builder.bones).astype(np.int32)
    weights = np.concatenate(builder.weights).astype(np.float32)
    blended = (bones[:, 1] >= 0) & (weights < 1.0)
    model.weight_types = np.where(blended, BDEF2, BDEF1).astype(np.uint8)
    model.bone_indices = np.full((n, 4), -1, np.int32)
    model.bone_indices[:, 0] = bones[:, 0]
    model.bone_indices[blended, 1] = bones[blended, 1]
    model.bone_weights = np.zeros((n, 4), np.float32)
    model.bone_weights[:, 0] = np.where(blended, weights, 1.0)
    model.bone_weights[blended, 1] = 1.0 - model.bone_weights[blended, 0]
    model.sdef_c = np.zeros((n, 3), np.float32)
    model.sdef_r0 = np.zeros((n, 3), np.float32)
    model.sdef_r1 = np.zeros((n, 3), np.float32)
    model.edge_scales = np.ones(n, np.float32)
    model.textures = [TEXTURE_NAME]
    model.materials = [_material(spec, len(f) * 3) for spec, f in zip(MATERIALS, faces)]
    model.bones = _bones()
    model.morphs = _morphs(rest, eyes, mouth_shapes)
    model.display_frames = [
        DisplayFrame("Root", "Root", True, [(0, ROOT)]),
        DisplayFrame("表情", "Exp", True, [(1, i) for i in range(len(MORPHS))]),
        DisplayFrame("体", "Body", False, [(0, CENTER), (0, UPPER_BODY), (0, NECK), (0, HEAD)]),
    ]
    return model


def _f32(values):
    """Numbers as the file stores them (float32), so a written character reads back equal."""
    return tuple(float(np.float32(v)) for v in values)


def _material(spec, index_count):
    name, name_en, rgb, extra_flags, textured = spec
    flags = MATERIAL_GROUND_SHADOW | MATERIAL_DRAW_SHADOW | MATERIAL_RECEIVE_SHADOW | extra_flags
    if name in ("肌", "服", "髪"):
        flags |= MATERIAL_EDGE
    return Material(
        name=name, name_en=name_en, diffuse=_f32((*rgb, 1.0)), specular=(0.0, 0.0, 0.0), specular_strength=5.0,
        ambient=_f32(0.5 * v for v in rgb), flags=flags, edge_color=_f32((0.25, 0.15, 0.15, 1.0)),
        edge_size=_f32([0.6])[0],
        texture=0 if textured else -1, toon_shared=True, toon=0 if name in ("肌", "服") else 1,
        index_count=index_count,
    )


def _bones():
    bones = []
    for i, (name, name_en, position, parent) in enumerate(BONES):
        flags = BONE_ROTATABLE | BONE_VISIBLE | BONE_ENABLED
        if i in (ROOT, CENTER):
            flags |= BONE_MOVABLE
        bone = Bone(name=name, name_en=name_en, position=_f32(position), parent=parent, flags=flags)
        if i in (UPPER_BODY, NECK):
            bone.flags |= BONE_TAIL_IS_BONE
            bone.tail_bone = i + 1
        else:
            bone.tail_offset = (0.0, 2.5, 0.0) if i == HEAD else (0.0, 1.0, 0.0)
        bones.append(bone)
    return bones


def _vertex_morph(spec, rest, parts):
    name, name_en, panel = spec
    indices = np.concatenate([p for p, _ in parts])
    targets = np.vstack([t for _, t in parts])
    return Morph(name=name, name_en=name_en, panel=panel, kind="vertex", vertex_indices=indices.astype(np.int64),
                 vertex_offsets=(targets - rest[indices]).astype(np.float32))


def _morphs(rest, eyes, mouth_shapes):
    def eye_parts(side):
        indices, targets = eyes[side]
        return list(zip(indices, targets))

    specs = dict((name, (name, name_en, panel)) for name, name_en, panel in MORPHS)
    morphs = [
        _vertex_morph(specs["まばたき"], rest, eye_parts(1) + eye_parts(-1)),
        _vertex_morph(specs["ウィンク"], rest, eye_parts(1)),
        _vertex_morph(specs["ウィンク右"], rest, eye_parts(-1)),
    ]
    for shape in ("あ", "い", "う", "え", "お"):
        indices, targets = mouth_shapes[shape]
        morphs.append(_vertex_morph(specs[shape], rest, list(zip(indices, targets))))
    return morphs


# --------------------------------------------------------------------------------------------
# The clothes texture and writing


def clothes_texture(width=256, height=128) -> np.ndarray:
    """RGB uint8 (height, width): a white shirt with a navy sailor collar and a red ribbon.

    u runs round the torso with the front at 0.5; v runs down from the neck (row 0).
    """
    u = (np.arange(width) + 0.5)[None, :] / width
    v = (np.arange(height) + 0.5)[:, None] / height
    image = np.empty((height, width, 3))
    image[:] = (0.95, 0.95, 0.97)
    front = np.abs(u - 0.5)
    # The collar: a band over the shoulders that opens into a V at the front.
    v_neck = front < 0.16 - 0.35 * v
    collar = (v < 0.42) & ~v_neck & (front < 0.22 + 0.9 * v)
    collar |= (v < 0.42) & (front > 0.25)
    image[collar] = (0.13, 0.17, 0.38)
    stripe = collar & (np.abs(v - 0.36) < 0.025)
    image[stripe] = (0.95, 0.95, 0.97)
    # A bow: two triangles meeting at a knot in the middle of the V.
    ribbon = (np.abs(v - 0.47) < 0.025 + 0.9 * front) & (front < 0.07)
    image[ribbon] = (0.85, 0.16, 0.22)
    return np.round(image * 255).astype(np.uint8)


def write_character(folder) -> Path:
    """Write the sample character (PMX and its texture) into `folder`; return the .pmx path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rgb = clothes_texture()
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    write_bytes_atomic(folder / TEXTURE_NAME, encode_png(rgba))
    return pmx.write(make_character(), folder / PMX_NAME)
