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
# PNG's sRGB, gAMA and cHRM chunks. (The coding-independent code points, "cicp", Pillow does not
# read: pose/colour_tags.py reads them from the file.)
COLOUR_TAGS = ("icc_profile", "srgb", "gamma", "chromaticity")


def in_srgb(rgba, tags, grey=False):
    """An RGBA picture's colours in sRGB, which THA's networks were trained in and Blender shows a
    picture in, from the colour space its file's tags (`COLOUR_TAGS`, Pillow's `info`) name, or
    as it is. Blender reads the values as sRGB whatever the tags say, so a sprite packs the
    converted copy (animation/blender/sprite.py). The tags rank as PNG's specification ranks them:

    - "cicp", the code points of ITU-T H.273 (primaries, transfer, full range) that a PNG's cICP
      chunk, or an AVIF's nclx colour box where it has no ICC profile, names its colour space by
      (`cicp_to_srgb`). Codes it does not know are passed over, and the next tag read;
    - an ICC profile: the colour space it names. An RGB one (Display P3, as an iPad's or a Mac's
      drawing apps save by default; Rec. 2020), or on a `grey` picture a grey one (Photoshop's
      Gray Gamma 1.8, or Dot Gain 20%, its default for grey). One that cannot be read or is of
      other colours than the picture's (CMYK) is passed over, as viewers pass it over;
    - a PNG's sRGB chunk: sRGB;
    - a PNG's gAMA and cHRM chunks: the curve (1.0, which a picture of linear values carries;
      0.55 of an old Mac's gamma 1.8) and the primaries they give.

    Tags that are sRGB's by another name (those that take every colour of a grid to within a
    level of itself) leave every value as it is."""
    if tags.get("cicp") and (convert := cicp_to_srgb(*tags["cicp"])) is not None:
        return rgba if _is_srgb(convert) else _converted(rgba, convert)
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
    return rgba if convert is None else _converted(rgba, convert)


def _converted(rgba, convert):
    """An RGBA picture with `convert` ((N, 3) uint8 colours to sRGB's) applied to its colours."""
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
    convert = _light_to_srgb(linear, _to_srgb_primaries(chromaticity))
    return None if _is_srgb(convert) else convert


def _light_to_srgb(light, matrix, display=None):
    """A conversion of (N, 3) uint8 colours to sRGB: `light` is each stored level's light (a
    table of 256), `display` what a display makes of the light (HLG's system gamma), `matrix`
    the move to sRGB's primaries (None: they are sRGB's). Light past sRGB's white or gamut is
    clipped to it."""
    def convert(rgb):
        colours = light[rgb]
        if display is not None:
            colours = display(colours)
        encoded = linear_to_srgb(colours if matrix is None else colours @ matrix.T)
        return np.rint(encoded * 255.0).astype(np.uint8)

    return convert


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


# ITU-T H.273's colour primaries, as CIE xy in cHRM's order (white, red, green, blue), for the
# codes a picture file may name: 1 BT.709 and sRGB; 4 BT.470 System M; 5 BT.601 of 625 lines;
# 6 and 7 BT.601 of 525 lines and SMPTE 240M; 8 generic film; 9 BT.2020 and BT.2100; 11 DCI-P3
# (its white); 12 Display P3; 22 EBU Tech. 3213-E. (10, CIE XYZ, has no primaries to give.)
CICP_PRIMARIES = {
    1: SRGB_CHROMATICITY,
    4: (0.310, 0.316, 0.67, 0.33, 0.21, 0.71, 0.14, 0.08),
    5: (0.3127, 0.3290, 0.64, 0.33, 0.29, 0.60, 0.15, 0.06),
    6: (0.3127, 0.3290, 0.630, 0.340, 0.310, 0.595, 0.155, 0.070),
    7: (0.3127, 0.3290, 0.630, 0.340, 0.310, 0.595, 0.155, 0.070),
    8: (0.310, 0.316, 0.681, 0.319, 0.243, 0.692, 0.145, 0.049),
    9: (0.3127, 0.3290, 0.708, 0.292, 0.170, 0.797, 0.131, 0.046),
    11: (0.314, 0.351, 0.680, 0.320, 0.265, 0.690, 0.150, 0.060),
    12: (0.3127, 0.3290, 0.680, 0.320, 0.265, 0.690, 0.150, 0.060),
    22: (0.3127, 0.3290, 0.630, 0.340, 0.295, 0.605, 0.155, 0.077),
}

# An HDR picture's light, in nits, that is SDR's white: ITU-R BT.2408's reference ("graphics")
# white. Light past it (an HDR highlight) is clipped to sRGB's white.
HDR_REFERENCE_WHITE = 203.0


def _bt1886(levels):
    """ITU-R BT.1886, the display curve of a BT.709 or BT.2020 signal (H.273's codes name the
    camera's curve, which no display undoes): a pure gamma 2.4, as Blender's own Rec. 709 and
    Rec. 2020 display profiles have it."""
    return levels ** 2.4


def _pq(levels):
    """SMPTE ST 2084 (PQ): a level's light in nits, over the reference white."""
    m1, m2 = 2610 / 16384, 2523 / 4096 * 128
    c1, c2, c3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    power = levels ** (1 / m2)
    return (np.maximum(power - c1, 0.0) / (c2 - c3 * power)) ** (1 / m1) * 10000.0 / HDR_REFERENCE_WHITE


def _hlg_scene(levels):
    """ARIB STD-B67 (HLG), undone: a level's scene light in [0, 1]."""
    a = 0.17883277
    b, c = 1 - 4 * a, 0.5 - a * math.log(4 * a)
    return np.where(levels <= 0.5, levels ** 2 / 3, (np.exp((np.maximum(levels, 0.5) - c) / a) + b) / 12)


def _hlg_display(luminance):
    """BT.2100's HLG display (a 1000-nit one: system gamma 1.2) of scene light, over the
    reference white. `luminance`: the weights of R, G, B in Y for the picture's primaries."""
    def display(scene):
        brightness = np.maximum(scene @ luminance, 0.0)[:, None] ** 0.2
        return scene * brightness * (1000.0 / HDR_REFERENCE_WHITE)

    return display


# ITU-T H.273's transfer characteristics: each code's light of a level in [0, 1], SDR's white 1.
# 1, 6, 7, 11, 12, 14 and 15 are BT.709's camera curve and its kin, shown by BT.1886 displays;
# 4 and 5 pure gammas 2.2 and 2.8; 8 linear; 13 sRGB; 16 PQ; 18 HLG (scene light: see `cicp_to_srgb`).
CICP_TRANSFERS = {
    1: _bt1886, 6: _bt1886, 7: _bt1886, 11: _bt1886, 12: _bt1886, 14: _bt1886, 15: _bt1886,
    4: lambda levels: levels ** 2.2,
    5: lambda levels: levels ** 2.8,
    8: lambda levels: levels,
    13: srgb_to_linear,
    16: _pq,
    18: _hlg_scene,
}
HLG = 18


def cicp_to_srgb(primaries, transfer, full_range=True):
    """A conversion of (N, 3) uint8 colours from what ITU-T H.273's code points name to sRGB, or
    None where this does not know a code (2, unspecified; a reserved one; CIE XYZ; a log
    curve). `full_range` False: the levels span 16-235 (video's narrow range), as a PNG's cICP
    may say. An HDR picture (PQ, HLG) is brought to SDR by its reference white, HDR_REFERENCE_WHITE;
    the light past it is clipped."""
    if primaries not in CICP_PRIMARIES or transfer not in CICP_TRANSFERS:
        return None
    levels = np.arange(256) / 255.0 if full_range else np.clip((np.arange(256) - 16) / 219.0, 0.0, 1.0)
    light = CICP_TRANSFERS[transfer](levels)
    chromaticity = CICP_PRIMARIES[primaries]
    display = _hlg_display(_rgb_to_xyz(np.array(chromaticity))[0][1]) if transfer == HLG else None
    return _light_to_srgb(light, None if primaries == 1 else _to_srgb_primaries(chromaticity), display)
