"""Colour spaces: sRGB's curves, and a character picture saved in another colour space brought
to sRGB, which THA's networks were trained in and Blender shows a picture's values in (numpy + PIL)."""

import io
import math

import numpy as np


def srgb_to_linear(x):
    """IEC 61966-2-1 decoding of values in [0, 1] (threshold 0.04045, gamma 2.4)."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x):
    """IEC 61966-2-1 encoding of values in [0, 1] (threshold 0.0031308)."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1.0 / 2.4) - 0.055)


# The tags a picture file names its colour space by, as Pillow reads them: an ICC profile, and a
# PNG's sRGB, gAMA and cHRM chunks.
COLOUR_TAGS = ("icc_profile", "srgb", "gamma", "chromaticity")


def in_srgb(rgba, tags, grey=False):
    """An RGBA picture's colours in sRGB, which THA's networks were trained in and Blender shows a
    picture in, from the colour space its file's tags (`COLOUR_TAGS`, Pillow's `info`) name, or
    as it is. Blender reads the values as sRGB whatever the tags say, so a sprite packs the
    converted copy (animation/blender/sprite.py). The tags rank as PNG's specification ranks them:

    - an ICC profile: the colour space it names. An RGB one (Display P3, as an iPad's or a Mac's
      drawing apps save by default; Rec. 2020), or on a `grey` picture a grey one (Photoshop's
      Gray Gamma 1.8, or Dot Gain 20%, its default for grey). One that cannot be read or is of
      other colours than the picture's (CMYK) is passed over, as viewers pass it over;
    - a PNG's sRGB chunk: sRGB;
    - a PNG's gAMA and cHRM chunks: the curve (1.0, which a picture of linear values carries;
      0.55 of an old Mac's gamma 1.8) and the primaries they give.

    Tags that are sRGB's by another name (those that take every colour of a grid to within a
    level of itself) leave every value as it is."""
    if tags.get("icc_profile"):
        transform = _profile_to_srgb(bytes(tags["icc_profile"]), grey)
        if transform is None:
            return rgba
        from PIL import Image, ImageCms

        if grey:  # (the picture's grey is in each of its RGB channels)
            shades = ImageCms.applyTransform(rgba.getchannel("R"), transform)
            return Image.merge("RGBA", (*shades.split(), rgba.getchannel("A")))
        ImageCms.applyTransform(rgba, transform, inPlace=True)  # (a large drawing: no second copy)
        return rgba
    if "srgb" in tags or not ("gamma" in tags or "chromaticity" in tags):
        return rgba
    convert = _png_tags_to_srgb(tags.get("gamma"), tags.get("chromaticity"))
    if convert is None:
        return rgba
    from PIL import Image

    values = np.array(rgba)
    rgb = values[..., :3].reshape(-1, 3)
    for start in range(0, len(rgb), 1 << 20):  # (a large drawing: a few MB of floats at a time)
        rgb[start:start + (1 << 20)] = convert(rgb[start:start + (1 << 20)])
    values[..., :3] = rgb.reshape(values.shape[:2] + (3,))
    return Image.fromarray(values, "RGBA")


_SRGB_LEVELS = np.linspace(0, 255, 18).round().astype(np.uint8)
# The colours to tell sRGB by: a grid, and for a grey profile every shade.
_COLOUR_GRID = np.stack(np.meshgrid(_SRGB_LEVELS, _SRGB_LEVELS, _SRGB_LEVELS, indexing="ij"), axis=-1).reshape(-1, 3)
_GREY_RAMP = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 3, axis=1)


def _is_srgb(convert, colours=_COLOUR_GRID):
    """Whether a conversion of (N, 3) uint8 colours takes each of `colours` to within a level of
    itself: sRGB by another name (a camera's or an editor's profile, an older ICC version's,
    PNG tags written out for sRGB)."""
    return np.abs(convert(colours).astype(int) - colours).max() <= 1


def _profile_to_srgb(icc_profile, grey=False):
    """The transform from a profile to sRGB (RGBA to RGBA, or a grey picture's L to RGB), or None
    where there is nothing to convert."""
    from PIL import Image, ImageCms

    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        if source.profile.xcolor_space.strip() != ("GRAY" if grey else "RGB"):
            return None
        modes = ("L", "RGB") if grey else ("RGBA", "RGBA")
        transform = ImageCms.buildTransform(source, ImageCms.createProfile("sRGB"), *modes,
                                            renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None

    def convert(rgb):
        if grey:
            return np.asarray(ImageCms.applyTransform(Image.fromarray(rgb[None, :, 0], "L"), transform))[0]
        opaque = np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], axis=-1)[None]
        return np.asarray(ImageCms.applyTransform(Image.fromarray(opaque, "RGBA"), transform))[0, :, :3]

    return None if _is_srgb(convert, _GREY_RAMP if grey else _COLOUR_GRID) else transform


# sRGB's white (D65) and primaries as CIE xy, in cHRM's order: white, red, green, blue.
SRGB_CHROMATICITY = (0.3127, 0.3290, 0.64, 0.33, 0.30, 0.60, 0.15, 0.06)
# The Bradford cone response, which moves colours from one white to another as ICC profiles do.
_BRADFORD = np.array([[0.8951, 0.2664, -0.1614], [-0.7502, 1.7135, 0.0367], [0.0389, -0.0685, 1.0296]])


def _png_tags_to_srgb(gamma, chromaticity):
    """A conversion of (N, 3) uint8 colours from what a PNG's gAMA and cHRM give to sRGB, or None
    where they give sRGB. A gAMA of 0 or cHRM primaries that span no colour space are wrong, and
    passed over as libpng passes them over."""
    if gamma is not None and not (math.isfinite(gamma) and gamma > 0):
        gamma = None
    if gamma is None or abs(gamma * 2.2 - 1.0) <= 0.05:
        # Writers give sRGB's curve as 1/2.2 (45455; libpng writes that beside an sRGB chunk, and
        # PNG's specification names it sRGB's stand-in): read as a pure power it would move the
        # dark shades of a picture drawn in sRGB by up to 9 levels.
        linear = srgb_to_linear(np.arange(256) / 255.0)
    else:
        linear = (np.arange(256) / 255.0) ** (1.0 / gamma)
    matrix = _to_srgb_primaries(chromaticity)

    def convert(rgb):
        encoded = linear_to_srgb(linear[rgb] if matrix is None else linear[rgb] @ matrix.T)
        return np.rint(encoded * 255.0).astype(np.uint8)

    return None if _is_srgb(convert) else convert


def _to_srgb_primaries(chromaticity):
    """The matrix from linear RGB of cHRM's white and primaries to linear sRGB (the white brought
    to D65 by Bradford's transform), or None for sRGB's or wrong ones."""
    try:
        values = np.array(chromaticity, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if values.shape != (8,) or not np.all(np.isfinite(values)) or np.any(values[1::2] <= 0) or np.any(values < 0):
        return None
    with np.errstate(all="ignore"):
        try:
            source, white = _rgb_to_xyz(values)
            target, d65 = _rgb_to_xyz(np.array(SRGB_CHROMATICITY))
            cones = _BRADFORD @ d65 / (_BRADFORD @ white)
            matrix = np.linalg.solve(target, np.linalg.solve(_BRADFORD, cones[:, None] * _BRADFORD) @ source)
        except np.linalg.LinAlgError:
            return None
    return matrix if np.all(np.isfinite(matrix)) and np.linalg.cond(matrix) < 1e6 else None


def _rgb_to_xyz(chromaticity):
    """(The matrix from linear RGB of these primaries to CIE XYZ, the white's XYZ), white at Y = 1."""
    def xyz(x, y):
        return np.array([x / y, 1.0, (1.0 - x - y) / y])

    white = xyz(*chromaticity[:2])
    primaries = np.column_stack([xyz(*chromaticity[i:i + 2]) for i in (2, 4, 6)])
    return primaries * np.linalg.solve(primaries, white), white
