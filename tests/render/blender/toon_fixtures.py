"""A one-material MMD ball written as a real PMX file, for the toon style's tests.

The ball (radius 8 MMD units) carries whatever material fields a test gives: its texture,
sphere map, toon ramp and edge. Its textures are small solid-colour PNGs written beside it.
"""

from pathlib import Path

import numpy as np

from tha_studio.render.formats.mmd import pmx
from tha_studio.render.formats.mmd.model import Bone, Material, Model
from tha_studio.render.formats.png import encode_png

WHITE = (255, 255, 255)
GOLD = (170, 120, 0)
BLUE = (40, 60, 200)


def uv_sphere(rings=24, columns=48):
    """Unit-sphere points, normals, UVs and triangles wound clockwise seen from outside (MMD's front)."""
    points, uvs = [], []
    for i in range(rings + 1):
        theta = np.pi * i / rings
        for j in range(columns + 1):
            phi = 2 * np.pi * j / columns
            points.append((np.sin(theta) * np.cos(phi), np.cos(theta), np.sin(theta) * np.sin(phi)))
            uvs.append((j / columns, i / rings))
    width = columns + 1
    faces = []
    for i in range(rings):
        for j in range(columns):
            a, b, c, d = i * width + j, i * width + j + 1, (i + 1) * width + j, (i + 1) * width + j + 1
            faces += [(a, b, c), (b, d, c)]
    points = np.array(points, np.float32)
    return points, points.copy(), np.array(uvs, np.float32), np.array(faces, np.int64)


def write_solid_png(path, rgb, size=8, rows=None):
    """A solid PNG, or one whose top half is `rgb` and bottom half `rows` (a two-tone toon ramp)."""
    image = np.zeros((size, size, 4), np.uint8)
    image[..., :3] = rgb
    if rows is not None:
        image[size // 2:, :, :3] = rows
    image[..., 3] = 255
    Path(path).write_bytes(encode_png(image))


def write_ball(folder, images, **material):
    """A PMX ball in `folder` with one material made of `material`'s fields; returns its path.

    `images`: texture name -> RGB, or (top RGB, bottom RGB) for a two-tone ramp, written beside
    the model in this order (the material's texture indices count in it)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, colour in images.items():
        two_tone = isinstance(colour[0], tuple)
        write_solid_png(folder / name, colour[0] if two_tone else colour, rows=colour[1] if two_tone else None)
    points, normals, uvs, faces = uv_sphere()
    model = Model(format="pmx", version=2.0, encoding="utf-16-le")
    model.name = model.name_en = "ball"
    count = len(points)
    model.positions, model.normals, model.uvs, model.faces = points * 8, normals, uvs, faces
    model.additional_uvs = np.zeros((count, 0, 4), np.float32)
    model.weight_types = np.zeros(count, np.uint8)
    model.bone_indices = np.full((count, 4), -1, np.int32)
    model.bone_indices[:, 0] = 0
    model.bone_weights = np.zeros((count, 4), np.float32)
    model.bone_weights[:, 0] = 1.0
    model.sdef_c = model.sdef_r0 = model.sdef_r1 = np.zeros((count, 3), np.float32)
    model.edge_scales = np.ones(count, np.float32)
    model.textures = list(images)
    model.materials = [Material(name="ball", index_count=faces.size, **material)]
    model.bones = [Bone(name="センター")]
    return pmx.write(model, folder / "ball.pmx")
