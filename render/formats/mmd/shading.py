"""MikuMikuDance's shading, the facts the toon render style needs (pure: numpy).

MMD shades a material (its default shader, as MikuMikuEffect's full.fx spells it out) as

    colour = clamp(diffuse x light + ambient) x texture, then x or + the sphere map, then x toon
             ramp(N.L), then + specular x light x max(0, N.H)^power; alpha = diffuse alpha x texture alpha

with one directional light of colour LIGHT_COLOR along LIGHT_DIRECTION (MMD's defaults), all of it
on the 8-bit sRGB values as they are (MMD has no linear colour space). The toon ramp is read at
v = 0.5 - N.L / 2 (its top row where the surface faces the light, its bottom row facing away) and
the sphere map at the view-space normal's x and y mapped to 0..1.

The shared toons toon01.bmp..toon10.bmp ship with MMD, not with models, and are not free to copy,
so `shared_toon_pixels` draws stand-ins: white above a border, a shadow colour below it. Their
shadow colours and borders are set by eye from how MMD's own look (01 light grey, 02 skin, 03 the
darkest grey, 04 and 05 pale warm, 06 yellow, 07-10 no shadow), not measured from the files.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# MMD's default light: the direction light travels (MMD axes: x right, y up, z into the screen)
# and its colour, 154/255 grey.
LIGHT_DIRECTION = (-0.5, -1.0, 0.5)
LIGHT_COLOR = 154 / 255


def light_towards(blender_axes=True):
    """The unit vector from a surface towards MMD's default light, in Blender's axes (MMD (x, y, z)
    becomes Blender (x, z, y), as the importer maps points), or in MMD's with `blender_axes` False."""
    x, y, z = (-np.asarray(LIGHT_DIRECTION, np.float64))
    towards = np.array((x, z, y) if blender_axes else (x, y, z))
    return tuple(float(v) for v in towards / np.linalg.norm(towards))


def base_color(diffuse, ambient):
    """The lit colour before texture, sphere and toon: clamp(diffuse x light + ambient), RGB."""
    return tuple(float(np.clip(d * LIGHT_COLOR + a, 0.0, 1.0)) for d, a in zip(diffuse[:3], ambient[:3]))


@dataclass(frozen=True)
class SharedToon:
    shadow: tuple  # 8-bit sRGB below the border
    border: float  # v (0 top, facing the light; 1 bottom, facing away) where shadow begins
    softness: float = 0.0  # width in v of the blend from white to shadow
    light: tuple = (255, 255, 255)  # 8-bit sRGB above the border


SHARED_TOONS = (
    SharedToon((204, 204, 204), 0.5),  # toon01: light grey, hard
    SharedToon((240, 218, 212), 0.5),  # toon02: skin
    SharedToon((150, 150, 150), 0.5),  # toon03: the darkest grey
    SharedToon((244, 236, 230), 0.5),  # toon04: faint warm
    SharedToon((252, 232, 222), 0.65, 0.3),  # toon05: pale warm, soft, low
    SharedToon((205, 180, 50), 0.7, 0.2, light=(255, 238, 120)),  # toon06: yellow, metal-like
    SharedToon((255, 255, 255), 0.5),  # toon07-10: no shadow
    SharedToon((255, 255, 255), 0.5),
    SharedToon((255, 255, 255), 0.5),
    SharedToon((255, 255, 255), 0.5),
)
NO_TOON = SharedToon((255, 255, 255), 0.5)  # a material without a toon: MMD's plain white ramp


def shared_toon_pixels(number, size=32):
    """Shared toon `number` (0 for toon01.bmp ... 9 for toon10.bmp; None for none) as a (size, size, 4)
    float array of sRGB values 0..1, row 0 at the top (lit side) as in the bitmap."""
    toon = NO_TOON if number is None else SHARED_TOONS[number]
    v = (np.arange(size) + 0.5) / size
    if toon.softness > 0:
        t = np.clip((v - toon.border) / toon.softness + 0.5, 0.0, 1.0)
        t = t * t * (3 - 2 * t)
    else:
        t = (v >= toon.border).astype(np.float64)
    light, shadow = np.asarray(toon.light) / 255, np.asarray(toon.shadow) / 255
    rows = light + (shadow - light) * t[:, None]
    pixels = np.ones((size, size, 4), np.float32)
    pixels[:, :, :3] = rows[:, None, :]
    return pixels
