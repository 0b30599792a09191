"""Pictures saved in other colour spaces than sRGB, with the ICC profiles Blender ships (real
display profiles: Display P3 with sRGB's curve, Rec. 2020 and Rec. 709 at gamma 2.4), or with a
PNG's own colour chunks."""

import importlib.util
import io
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms
from PIL.PngImagePlugin import PngInfo

PROFILES = {
    "Display P3": "srgb_p3d65_display.icc",
    "Rec. 2020": "g24_rec2020_display.icc",
    "Rec. 709 gamma 2.4": "g24_rec709_display.icc",
}


def icc_profile(name):
    """The bytes of one of Blender's ICC profiles (the bpy wheel's datafiles)."""
    bpy_folder = Path(importlib.util.find_spec("bpy").submodule_search_locations[0])
    (found,) = bpy_folder.glob(f"*/datafiles/colormanagement/icc/{PROFILES[name]}")
    return found.read_bytes()


def save_in_profile(rgba, name, path, **options):
    """An sRGB RGBA picture converted to the profile's colour space and saved with the profile
    (as an editor working in that space saves it): shown by a colour-managed viewer as the sRGB
    original, within 8-bit rounding. `options` go to Pillow's save (lossless=True for WebP)."""
    profile = icc_profile(name)
    srgb = ImageCms.createProfile("sRGB")
    converted = ImageCms.profileToProfile(Image.fromarray(np.asarray(rgba, np.uint8), "RGBA"), srgb,
                                          ImageCms.ImageCmsProfile(io.BytesIO(profile)),
                                          renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC, outputMode="RGBA")
    converted.save(path, icc_profile=profile, **options)
    return path


# Display P3's white and primaries as CIE xy, in cHRM's order: white, red, green, blue.
DISPLAY_P3_CHROMATICITY = (0.3127, 0.3290, 0.680, 0.320, 0.265, 0.690, 0.150, 0.060)


def png_colour_chunks(gamma=None, chromaticity=None, srgb=False):
    """Pillow's PngInfo with a PNG's own colour chunks, as libpng and ImageMagick write them:
    gAMA (the encoding exponent, 1/2.2 for sRGB's stand-in), cHRM (white, red, green, blue as
    CIE xy) and sRGB (a rendering intent byte)."""
    info = PngInfo()
    if srgb:
        info.add(b"sRGB", b"\0")
    if gamma is not None:
        info.add(b"gAMA", struct.pack(">I", round(gamma * 100000)))
    if chromaticity is not None:
        info.add(b"cHRM", struct.pack(">8I", *(round(value * 100000) for value in chromaticity)))
    return info


def save_with_gamma(rgba, gamma, path):
    """An sRGB RGBA picture saved as a PNG of another gamma, the light of each colour encoded with
    that exponent and named by gAMA alone (ImageMagick's picture of linear values: 1.0)."""
    rgba = np.asarray(rgba, np.uint8)
    values = rgba[..., :3] / 255.0
    light = np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)
    stored = rgba.copy()
    stored[..., :3] = np.rint(light ** gamma * 255.0)
    Image.fromarray(stored, "RGBA").save(path, pnginfo=png_colour_chunks(gamma=gamma))
    return path


def grey_profile(gamma=None, table=None, name="Gray Gamma 1.8"):
    """The bytes of an ICC v2 grey display profile, the one kind of profile a grey picture may
    carry (Photoshop's grey working spaces: Gray Gamma 1.8 and 2.2, Dot Gain 20%): its white
    (D50, as ICC's connection space has it) and its curve, a gamma or a table of 16-bit values.
    Pillow builds no such profile, and Blender ships none."""
    def tag_data(kind, body):
        return kind + b"\0" * 4 + body

    curve = (struct.pack(">IH", 1, round(gamma * 256)) if table is None
             else struct.pack(f">I{len(table)}H", len(table), *(round(value * 65535) for value in table)))
    text = name.encode("ascii") + b"\0"
    tags = [
        (b"desc", tag_data(b"desc", struct.pack(">I", len(text)) + text + b"\0" * 12 + b"\0" * 67)),
        (b"wtpt", tag_data(b"XYZ ", struct.pack(">3i", *(round(v * 65536) for v in (0.9642, 1.0, 0.8249))))),
        (b"kTRC", tag_data(b"curv", curve)),
        (b"cprt", tag_data(b"text", b"No copyright, a test's profile\0")),
    ]
    table_size = 4 + 12 * len(tags)
    offset, entries, data = 128 + table_size, [], b""
    for signature, body in tags:
        body += b"\0" * (-len(body) % 4)
        entries.append(struct.pack(">4sII", signature, offset + len(data), len(body)))
        data += body
    size = 128 + table_size + len(data)
    header = struct.pack(">I4sI4s4s4s12s4s", size, b"lcms", 0x02100000, b"mntr", b"GRAY", b"XYZ ", b"\0" * 12, b"acsp")
    header += b"\0" * (68 - len(header)) + struct.pack(">3i", *(round(v * 65536) for v in (0.9642, 1.0, 0.8249)))
    header += b"\0" * (128 - len(header))
    return header + struct.pack(">I", len(tags)) + b"".join(entries) + data


# ITU-T H.273's code points of the colour spaces Blender ships display profiles of, as (colour
# primaries, transfer characteristics): Display P3 has sRGB's curve (13); Blender's Rec. 2020 and
# Rec. 709 profiles have gamma 2.4, BT.1886's display of BT.709's and BT.2020's curve (1).
CICP_OF_PROFILES = {"Display P3": (12, 13), "Rec. 2020": (9, 1), "Rec. 709 gamma 2.4": (1, 1)}


def save_with_cicp(values, path, primaries, transfer, full_range=True, matrix=0, **options):
    """Pixel values saved as a PNG whose cICP chunk (PNG's third edition) names their colour space
    by H.273's code points, as libpng 1.6.45 and later write it. `options` go to Pillow's save."""
    info = options.pop("pnginfo", PngInfo())
    info.add(b"cICP", bytes([primaries, transfer, matrix, int(full_range)]))
    Image.fromarray(np.asarray(values, np.uint8)).save(path, pnginfo=info, **options)
    return path


def save_avif_with_nclx(values, path, primaries, transfer):
    """Pixel values saved as an AVIF whose nclx colour box names their colour space by H.273's
    code points, as libavif writes it for a picture without an ICC profile (Pillow has libavif
    write sRGB's, 1 and 13: those two numbers are set to the ones asked for). 4:4:4 at quality
    100, so that the colours come back within a level or two."""
    Image.fromarray(np.asarray(values, np.uint8)).save(path, quality=100, subsampling="4:4:4")
    assert set_nclx(path, primaries, transfer) == (1, 13)
    return path


def set_nclx(path, primaries, transfer):
    """An AVIF's nclx colour box made to name these H.273 primaries and transfer, in place; the
    two it named before."""
    data = bytearray(path.read_bytes())
    at = data.index(b"colrnclx") + 8
    before = struct.unpack_from(">HH", data, at)
    struct.pack_into(">HH", data, at, primaries, transfer)
    path.write_bytes(bytes(data))
    return before
