"""The head band's chin on models with long side hair and twin tails, built here and written as
real PMX files: hair that hangs lower than the chin, in front of the shoulders, must not be taken
for the chin (a public twin-tailed model's chin landed on row 184 instead of 192 at 256²)."""

import math

import numpy as np
import pytest

from tha_studio.pose.schema import get_schema
from tha_studio.render.dataset import annotation as A
from tha_studio.render.dataset.framing import frame_head
from tha_studio.render.formats.mmd import make_character, pmx, read_model
from tha_studio.render.formats.mmd.model import BDEF1
from tha_studio.render.formats.mmd.procedural import HEAD, HEAD_CENTER, HEAD_RADII, ring_faces

TRUE_CHIN = HEAD_CENTER[1] - HEAD_RADII[1]  # the bottom of the sample character's head
HAIR = "髪"


def tube(path, radius, sides=8):
    """Vertices and triangles of a tube along `path` (points), `radius` at each point."""
    path = np.asarray(path, float)
    angle = np.linspace(0, 2 * math.pi, sides, endpoint=False)
    rings = [p + r * np.stack([np.cos(angle), np.zeros(sides), np.sin(angle)], axis=1)
             for p, r in zip(path, radius)]
    return np.vstack(rings), ring_faces(len(path), sides)


def add_hair(model, parts):
    """Append hair parts (vertices, triangles) weighted wholly to the head bone, in the hair material."""
    positions, faces = [model.positions], list(model.faces)
    hair_start = sum(m.index_count for m in model.materials[:[m.name for m in model.materials].index(HAIR)]) // 3
    hair_end = hair_start + next(m.index_count for m in model.materials if m.name == HAIR) // 3
    new_faces, count = [], len(model.positions)
    for vertices, triangles in parts:
        positions.append(vertices.astype(np.float32))
        new_faces.append(triangles + count)
        count += len(vertices)
    added = count - len(model.positions)
    model.faces = np.vstack([model.faces[:hair_end], *new_faces, model.faces[hair_end:]]).astype(np.int64)
    next(m for m in model.materials if m.name == HAIR).index_count += 3 * sum(len(f) for f in new_faces)
    model.positions = np.vstack(positions)
    model.normals = np.vstack([model.normals, np.tile([0, 0, -1], (added, 1))]).astype(np.float32)
    model.uvs = np.vstack([model.uvs, np.zeros((added, 2))]).astype(np.float32)
    model.additional_uvs = np.zeros((count, 0, 4), np.float32)
    model.weight_types = np.concatenate([model.weight_types, np.full(added, BDEF1)]).astype(np.uint8)
    indices = np.full((added, 4), -1, np.int32)
    indices[:, 0] = HEAD
    weights = np.zeros((added, 4), np.float32)
    weights[:, 0] = 1
    model.bone_indices = np.vstack([model.bone_indices, indices])
    model.bone_weights = np.vstack([model.bone_weights, weights])
    for name in ("sdef_c", "sdef_r0", "sdef_r1"):
        setattr(model, name, np.zeros((count, 3), np.float32))
    model.edge_scales = np.ones(count, np.float32)
    return model


def twin_tails(spread=2.6, low=11.0):
    """Two tails from the sides of the crown, out and down behind the shoulders to `low`."""
    parts = []
    for side in (1, -1):
        t = np.linspace(0, 1, 24)
        path = np.stack([side * (1.3 + (spread - 1.3) * np.sin(t * math.pi / 2)),
                         19.4 - (19.4 - low) * t ** 1.3, 0.3 + 0.5 * t], axis=1)
        parts.append(tube(path, 0.35 * (1 - 0.8 * t)))
    return parts


def side_locks(low=15.2, x=0.95):
    """Locks hanging in front of the ears and shoulders, lower than the chin, towards the front."""
    parts = []
    for side in (1, -1):
        t = np.linspace(0, 1, 16)
        path = np.stack([side * (1.2 - (1.2 - x) * t), 18.6 - (18.6 - low) * t, -0.5 - 0.45 * t], axis=1)
        parts.append(tube(path, 0.12 * (1 - 0.7 * t)))
    return parts


def chin_row(extent, true_chin=TRUE_CHIN, size=256):
    """The image row (at `size`², THA1's head box) the true chin lands on with this head band."""
    top_row, bottom_row, *_ = get_schema("tha1").head_box
    scale = size / 256
    box = (top_row * scale, bottom_row * scale, 64 * scale, 192 * scale)
    framing = frame_head(extent.top, extent.bottom, box, size)
    return framing.height_to_row(true_chin)


@pytest.mark.parametrize("hair", ["twin tails", "side locks", "twin tails and side locks"])
def test_the_chin_of_a_model_with_long_side_hair_lands_on_its_row(tmp_path, hair):
    model = make_character()
    parts = (twin_tails() if "twin" in hair else []) + (side_locks() if "side" in hair else [])
    path = pmx.write(add_hair(model, parts), tmp_path / "twin_tails.pmx")
    annotation, _ = A.annotate_file(path)
    extent = annotation.head_extent
    assert extent.bottom == pytest.approx(TRUE_CHIN, abs=0.02)
    assert abs(chin_row(extent) - 192) <= 2
    plain = A.annotate_model(make_character(), "plain.pmx").head_extent
    assert extent.top == pytest.approx(plain.top, abs=0.05)  # the tails leave the skull's top alone


def test_hair_tips_in_the_face_band_without_a_mouth_morph_fall_back_to_the_face_width(tmp_path):
    # No mouth morph to anchor on: the face's own width (not the hair's) bounds the centre line.
    model = make_character()
    model.morphs = [m for m in model.morphs if m.name not in ("あ", "い", "う", "え", "お")]
    for frame in model.display_frames:
        if any(kind == 1 for kind, _ in frame.items):
            frame.items = [(1, i) for i in range(len(model.morphs))]
    path = pmx.write(add_hair(model, twin_tails(spread=3.2) + side_locks()), tmp_path / "no_mouth.pmx")
    extent = A.annotate_model(read_model(path), "no_mouth.pmx").head_extent
    assert abs(chin_row(extent) - 192) <= 2
