"""Pictures saved in other colour spaces than sRGB, with the ICC profiles Blender ships (real
display profiles: Display P3 with sRGB's curve, Rec. 2020 and Rec. 709 at gamma 2.4)."""

import importlib.util
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms

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
