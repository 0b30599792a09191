"""RGBA images as THA wants them: straight alpha, RGB zero where alpha is zero, as PNG bytes.

Pure (stdlib zlib + numpy), because Blender's own Python has no Pillow. Blender's PNG writer
leaves the background colour under fully transparent pixels (tha.md §0.2: that breaks the
networks), so renders go through an uncompressed Targa file, which `read_targa` reads, then
`encode_png` writes the fixed pixels. The encoder is deterministic (no time or software
chunks), so the same pixels always give the same bytes.
"""

import struct
import zlib

import numpy as np

from ...errors import UserError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageFormatError(UserError, ValueError):
    pass


def read_targa(path):
    """An uncompressed 32-bit Targa file as an (H, W, 4) uint8 RGBA array, top row first."""
    with open(path, "rb") as handle:
        data = handle.read()
    if len(data) < 18:
        raise ImageFormatError(f"{path}: too short for a Targa file ({len(data)} bytes)")
    id_length, colour_map_type, image_type = data[0], data[1], data[2]
    width, height = struct.unpack("<HH", data[12:16])
    bits, descriptor = data[16], data[17]
    if colour_map_type != 0 or image_type != 2 or bits != 32:
        raise ImageFormatError(f"{path}: not an uncompressed 32-bit Targa (type {image_type}, {bits} bits)")
    start = 18 + id_length
    size = width * height * 4
    if len(data) < start + size:
        raise ImageFormatError(f"{path}: pixel data cut short ({len(data) - start} of {size} bytes)")
    pixels = np.frombuffer(data, np.uint8, size, start).reshape(height, width, 4)
    if not descriptor & 0x20:  # origin at the bottom left
        pixels = pixels[::-1]
    return np.ascontiguousarray(pixels[..., [2, 1, 0, 3]])  # BGRA -> RGBA


def zero_transparent_rgb(rgba):
    """A copy of the RGBA array with RGB set to 0 wherever alpha is 0."""
    rgba = np.array(rgba, dtype=np.uint8, copy=True)
    rgba[rgba[..., 3] == 0, :3] = 0
    return rgba


def _chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def encode_png(rgba, level=6):
    """PNG bytes of an (H, W, 4) uint8 RGBA array (8 bits per channel, "Up" filter on every row)."""
    rgba = np.ascontiguousarray(rgba, dtype=np.uint8)
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"expected an (H, W, 4) RGBA array, got shape {rgba.shape}")
    height, width = rgba.shape[:2]
    rows = rgba.reshape(height, width * 4)
    up = rows.copy()
    up[1:] = rows[1:] - rows[:-1]  # uint8 wraps around, as the PNG filter defines
    filtered = np.concatenate([np.full((height, 1), 2, np.uint8), up], axis=1)
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA, no interlace
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(filtered.tobytes(), level)) + _chunk(b"IEND", b"")
