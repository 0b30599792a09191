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
