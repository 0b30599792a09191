"""Colour spaces: sRGB's curves, and a character picture saved in another colour space brought
to sRGB, which THA's networks were trained in and Blender shows a picture's values in (numpy + PIL)."""

import io

import numpy as np


def srgb_to_linear(x):
    """IEC 61966-2-1 decoding of values in [0, 1] (threshold 0.04045, gamma 2.4)."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x):
    """IEC 61966-2-1 encoding of values in [0, 1] (threshold 0.0031308)."""
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1.0 / 2.4) - 0.055)


def in_srgb(rgba, icc_profile):
    """An RGBA picture's colours in sRGB, which THA's networks were trained in and Blender shows a
    picture in: converted from the RGB colour space its ICC profile names (Display P3, as an
    iPad's or a Mac's drawing apps save by default; Rec. 2020), or as it is. Blender reads the
    values as sRGB whatever the profile says, so a sprite packs the converted copy
    (animation/blender/sprite.py). A profile that is sRGB's own (one that takes every colour of
    a grid to within a level of itself) leaves every value as it is; one that cannot be read or
    is no RGB one (grey, CMYK) is passed over, as viewers pass it over."""
    if not icc_profile:
        return rgba
    transform = _to_srgb(bytes(icc_profile))
    if transform is None:
        return rgba
    from PIL import ImageCms

    ImageCms.applyTransform(rgba, transform, inPlace=True)  # (a large drawing: no second copy)
    return rgba


_SRGB_LEVELS = np.linspace(0, 255, 18).round().astype(np.uint8)  # a grid of colours to tell sRGB by


def _to_srgb(icc_profile):
    """The RGBA transform from a profile to sRGB, or None where there is nothing to convert."""
    from PIL import Image, ImageCms

    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        if source.profile.xcolor_space.strip() != "RGB":
            return None
        transform = ImageCms.buildTransform(source, ImageCms.createProfile("sRGB"), "RGBA", "RGBA",
                                            renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return None
    grid = np.stack(np.meshgrid(_SRGB_LEVELS, _SRGB_LEVELS, _SRGB_LEVELS, indexing="ij"), axis=-1).reshape(1, -1, 3)
    colours = np.concatenate([grid, np.full(grid.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    converted = np.asarray(ImageCms.applyTransform(Image.fromarray(colours, "RGBA"), transform))
    if np.abs(converted[..., :3].astype(int) - colours[..., :3]).max() <= 1:
        return None  # sRGB by another name (a camera's, an editor's, an older ICC version's)
    return transform
