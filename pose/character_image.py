"""Character pictures: checking a user's picture, and the networks' pixel convention (numpy + PIL).

Network convention (shared/reference/tha.md §0.2): channels RGBA first (4, H, W), straight
alpha, RGB in linear light (sRGB decoded with the IEC formula), every channel mapped x*2-1 to
[-1, 1], and RGB zero wherever alpha is zero (colour hidden under transparent pixels breaks
the networks' output). The way back: (y+1)/2, clipped, RGB encoded to sRGB.

`prepare_character_image` turns a user's picture into the RGBA uint8 square its schema wants
(centre square crop and LANCZOS resize, like the official demos) and refuses, with a message
naming the file, a picture the networks cannot use.
"""

from pathlib import Path

import numpy as np

from ..errors import UserError


class CharacterImageError(UserError, ValueError):
    """A picture the networks cannot use; the message names the file and the problem."""

    def __init__(self, source, problem):
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


def srgb_to_linear(x):
    """IEC 61966-2-1 decoding of values in [0, 1] (threshold 0.04045, gamma 2.4)."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x):
    """IEC 61966-2-1 encoding of values in [0, 1] (threshold 0.0031308)."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1.0 / 2.4) - 0.055)


def to_network(rgba):
    """RGBA uint8 (H, W, 4) -> float32 (4, H, W) in the network convention.

    As the official THA3 converter: RGB zeroed where alpha is 0, /255 and sRGB decoding in
    float64, straight alpha, x*2-1, then float32.
    """
    rgba = np.asarray(rgba)
    if rgba.dtype != np.uint8 or rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"expected an RGBA uint8 array (H, W, 4), got {rgba.dtype} {rgba.shape}")
    values = rgba.astype(np.float64) / 255.0
    values[rgba[..., 3] == 0] = 0.0
    values[..., :3] = srgb_to_linear(values[..., :3])
    return np.ascontiguousarray((values * 2.0 - 1.0).transpose(2, 0, 1), dtype=np.float32)


def from_network(image):
    """Float (4, H, W) or (B, 4, H, W) in the network convention -> RGBA uint8 (H, W, 4) or (B, H, W, 4)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim not in (3, 4) or image.shape[-3] != 4:
        raise ValueError(f"expected (4, H, W) or (B, 4, H, W) network images, got shape {image.shape}")
    values = np.clip((np.moveaxis(image, -3, -1).astype(np.float64) + 1.0) / 2.0, 0.0, 1.0)
    values[..., :3] = linear_to_srgb(values[..., :3])
    return np.rint(values * 255.0).astype(np.uint8)


def zero_hidden_colour(rgba):
    """A copy with RGB set to 0 wherever alpha is 0."""
    rgba = np.array(rgba, dtype=np.uint8, copy=True)
    rgba[rgba[..., 3] == 0, :3] = 0
    return rgba


def _open_rgba(path_or_array):
    """(RGBA PIL image, source name); refuses pictures without an alpha channel."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(path_or_array, (str, Path)):
        source = str(path_or_array)
        try:
            with Image.open(source) as opened:
                opened.load()
                image = opened
        except FileNotFoundError:
            raise CharacterImageError(source, "no such file") from None
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
            # (A bomb: a few bytes that declare a picture of billions of pixels.)
            raise CharacterImageError(source, f"not a readable picture ({error})") from None
        has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
        if not has_alpha:
            raise CharacterImageError(
                source,
                f"has no alpha channel (mode {image.mode}); THA needs a transparent background: "
                "save it as an RGBA PNG with the background erased",
            )
        return image.convert("RGBA"), source
    array = np.asarray(path_or_array)
    source = "the picture"
    if array.ndim != 3 or array.shape[2] != 4:
        raise CharacterImageError(source, f"has no alpha channel (array shape {array.shape}, expected H x W x 4)")
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.min() >= 0 and array.max() <= 1:
            array = np.rint(array * 255).astype(np.uint8)
        else:
            raise CharacterImageError(source, f"expected uint8 or [0, 1] float values, got {array.dtype}")
    return Image.fromarray(array, "RGBA"), source


def _square(image, size, source):
    """Centre square crop then LANCZOS resize to size x size, refusing what that would ruin."""
    from PIL import Image

    width, height = image.size
    side = min(width, height)
    if side < size // 2:
        raise CharacterImageError(
            source, f"is {width}x{height}; at least {size // 2}x{size // 2} is needed (the networks work at {size}x{size})"
        )
    if width != height:
        alpha = np.asarray(image)[..., 3] > 0
        left, top = (width - side) // 2, (height - side) // 2
        kept = alpha[top : top + side, left : left + side].sum()
        if kept < alpha.sum():
            raise CharacterImageError(
                source,
                f"is {width}x{height}: its centre {side}x{side} square would cut off part of the character; "
                "pad it to a square with transparent pixels, head in the middle of the top half",
            )
        image = image.crop((left, top, left + side, top + side))
    if image.size != (size, size):
        # Resample premultiplied, so hidden colour does not bleed into edges (PIL does so for RGBA).
        image = image.resize((size, size), Image.LANCZOS)
    return image


def check_composition(rgba, schema, source="the picture"):
    """Refuse a square RGBA picture whose background or head placement the networks cannot use."""
    alpha = rgba[..., 3]
    if alpha.min() > 0:
        raise CharacterImageError(
            source, "has no transparent background (every pixel is opaque); erase the background to alpha 0"
        )
    if alpha.max() == 0:
        raise CharacterImageError(source, "is fully transparent")
    top, bottom, left, right = schema.head_box
    box_height, box_width = bottom - top, right - left
    opaque = alpha > 0
    first_row = int(np.argmax(opaque.any(axis=1)))
    fill = opaque[top:bottom, left:right].mean()
    where = f"rows {top}-{bottom}, columns {left}-{right} of the {schema.image_size}x{schema.image_size} picture"
    if first_row > top + box_height // 4 or fill < 0.5:
        raise CharacterImageError(
            source,
            f"the head is not inside the head box ({where}): the character starts at row {first_row} and "
            f"covers {fill:.0%} of the box; scale and move the character so its head fills that box",
        )
    columns = np.nonzero(opaque[first_row:bottom])[1]
    centre = float(columns.mean())
    if not left + box_width / 4 <= centre <= right - box_width / 4:
        raise CharacterImageError(
            source,
            f"the head is not centred in the head box ({where}): the upper body's centre is at column "
            f"{centre:.0f}; centre the character horizontally",
        )


def prepare_character_image(path_or_array, schema):
    """The picture as RGBA uint8 (size, size, 4) for `schema`, RGB zeroed where alpha is 0.

    Accepts a path or an RGBA array. Raises CharacterImageError naming the file when it has no
    alpha channel, no transparent background, a size a centre crop cannot fix, or the head
    outside the schema's head box.
    """
    image, source = _open_rgba(path_or_array)
    image = _square(image, schema.image_size, source)
    rgba = zero_hidden_colour(np.asarray(image))
    check_composition(rgba, schema, source)
    return rgba
