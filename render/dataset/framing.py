"""Camera framing for THA's head box: where an orthographic camera goes so the head fills the box.

Pure math (numpy only). THA's input spec puts the head between two pixel rows of a square
image (THA1/THA2: rows 64-192 of 256; THA3: rows 64-192 of 512; `PoseSchema.head_box`). The
annotation gives the head's top and bottom heights in world units; an orthographic camera
looking at the character's front maps heights to rows linearly, so the camera follows from
two equations: the top lands on the box's top row and the bottom on its bottom row.

World axes are Blender's: Z up, the character faces -Y, so the camera sits on the -Y side
looking along +Y, and image columns follow world X.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OrthoFraming:
    """An orthographic front camera: centre (x, z) in world units, the world width the image spans.

    `ortho_scale` is Blender's Camera.ortho_scale for a square image (the span of the larger
    side). `distance` is how far in front of the head the camera stands; with `clip_end` it
    only needs to enclose the model.
    """

    image_size: int
    center_x: float
    center_z: float
    ortho_scale: float
    camera_y: float
    clip_start: float
    clip_end: float

    @property
    def units_per_pixel(self):
        return self.ortho_scale / self.image_size

    @property
    def location(self):
        return (self.center_x, self.camera_y, self.center_z)

    def world_to_pixel(self, points):
        """(N, 3) world points -> (N, 2) float (column, row) pixel coordinates, row 0 at the top.

        Pixel centres sit at half-integers: a point exactly at the image's top edge has row 0.0.
        """
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        column = (points[:, 0] - self.center_x) / self.units_per_pixel + self.image_size / 2
        row = (self.center_z - points[:, 2]) / self.units_per_pixel + self.image_size / 2
        return np.stack([column, row], axis=1)

    def height_to_row(self, z):
        return (self.center_z - z) / self.units_per_pixel + self.image_size / 2


def frame_head(head_top, head_bottom, head_box, image_size, center_x=0.0, front_y=0.0, depth=None):
    """The framing that puts world heights `head_top`..`head_bottom` on the rows of `head_box`.

    head_box is (top row, bottom row, left column, right column) as in `PoseSchema.head_box`;
    the head's centre x goes to the box's centre column. `front_y` is a world Y in front of
    the model (the camera stands further out by `depth`) and `depth` the model's extent
    along Y the clip range must cover (default: 20 head heights, enough for any character).
    """
    top_row, bottom_row, left_column, right_column = head_box
    head_height = float(head_top) - float(head_bottom)
    if not head_height > 0:
        raise ValueError(f"head top {head_top} must be above head bottom {head_bottom}")
    if not 0 <= top_row < bottom_row <= image_size:
        raise ValueError(f"head box rows {top_row}-{bottom_row} do not fit a {image_size}-pixel image")
    units_per_pixel = head_height / (bottom_row - top_row)
    # The image centre lies (size/2 - top_row) pixels below the head top.
    center_z = float(head_top) - (image_size / 2 - top_row) * units_per_pixel
    # The box's centre column holds the head's centre x.
    box_center_column = (left_column + right_column) / 2
    center_x_camera = float(center_x) - (box_center_column - image_size / 2) * units_per_pixel
    depth = 20 * head_height if depth is None else float(depth)
    camera_y = float(front_y) - depth
    return OrthoFraming(
        image_size=int(image_size),
        center_x=center_x_camera,
        center_z=center_z,
        ortho_scale=units_per_pixel * image_size,
        camera_y=camera_y,
        clip_start=1e-3 * depth,
        clip_end=2 * depth,
    )


def rows_in_band(rows, head_box, tolerance=0.0):
    """Whether every row lies in the head box's rows, give or take `tolerance` pixels."""
    rows = np.asarray(rows, dtype=np.float64)
    top_row, bottom_row = head_box[0], head_box[1]
    return bool(np.all((rows >= top_row - tolerance) & (rows <= bottom_row + tolerance)))
