"""The colour tags of a picture file that Pillow does not read: the code points of ITU-T H.273
(colour primaries, transfer characteristics, matrix coefficients, full range) that a PNG's cICP
chunk (PNG's third edition) and an AVIF's nclx colour box name a colour space by. Plain Python:
the chunks and boxes are walked, never the pixels. pose/colour_space.py converts what they name."""

import struct

from ..render.formats.png import PNG_SIGNATURE

# Past this many bytes an AVIF's meta box is none a picture tool wrote (they hold a few KB): it
# is not read.
_MOST_HEADER_BYTES = 16 << 20


def cicp_code_points(path, image_format):
    """(primaries, transfer, full_range) that a picture file names its colour space by, or
    None where it names none, or names it in a way no reader follows (a PNG's cICP with matrix
    coefficients other than RGB's, which its specification forbids; a damaged box). An AVIF's
    full-range flag is its YUV planes', which its decoder has applied already."""
    try:
        with open(path, "rb") as handle:
            if image_format == "PNG":
                return _png_cicp(handle)
            if image_format == "AVIF":
                return _avif_nclx(handle)
    except (OSError, struct.error, ValueError, IndexError):
        return None
    return None


def _png_cicp(handle):
    if handle.read(8) != PNG_SIGNATURE:
        return None
    while True:
        header = handle.read(8)
        if len(header) < 8:
            return None
        length, kind = struct.unpack(">I4s", header)
        if kind in (b"IDAT", b"IEND"):
            return None  # (cICP comes before the pixels)
        if kind == b"cICP":
            data = handle.read(length)
            if length != 4 or len(data) != 4:
                return None
            primaries, transfer, matrix, full_range = data
            # Matrix coefficients name a YUV coding; a PNG holds RGB (0), and no other is allowed.
            return (primaries, transfer, bool(full_range)) if matrix == 0 and full_range in (0, 1) else None
        handle.seek(length + 4, 1)  # (the chunk's data and its CRC)


def _boxes(data, start=0, end=None):
    """(kind, body start, body end) of each ISO base media box in data[start:end]."""
    end = len(data) if end is None else end
    while start + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, start)
        header = 8
        if size == 1:
            if start + 16 > end:
                return
            (size,) = struct.unpack_from(">Q", data, start + 8)
            header = 16
        elif size == 0:
            size = end - start
        if size < header or start + size > end:
            return
        yield kind, start + header, start + size
        start += size


def _avif_meta(handle):
    """The body of an AVIF's top-level meta box (bytes), or None."""
    while True:
        header = handle.read(8)
        if len(header) < 8:
            return None
        size, kind = struct.unpack(">I4s", header)
        if size == 1:
            (size,) = struct.unpack(">Q", handle.read(8))
            size -= 8
        elif size == 0:
            return None  # (the rest of the file: the pixels, as meta never is)
        if size < 8:
            return None
        if kind == b"meta":
            return handle.read(size - 8) if size - 8 <= _MOST_HEADER_BYTES else None
        handle.seek(size - 8, 1)


def _avif_nclx(handle):
    """An AVIF picture's (primaries, transfer, full range) from the nclx colour box its primary
    item has (ISO/IEC 23000-22: meta > pitm names the item, meta > iprp > ipma its properties,
    meta > iprp > ipco holds them), or None."""
    data = _avif_meta(handle)
    if data is None:
        return None
    children = {kind: (body, stop) for kind, body, stop in _boxes(data, 4)}  # (a full box: version, flags)
    if b"pitm" not in children or b"iprp" not in children:
        return None
    body, _ = children[b"pitm"]
    version = data[body]
    (primary,) = struct.unpack_from(">H" if version == 0 else ">I", data, body + 4)
    properties = {kind: (body, stop) for kind, body, stop in _boxes(data, *children[b"iprp"])}
    if b"ipco" not in properties or b"ipma" not in properties:
        return None
    listed = list(_boxes(data, *properties[b"ipco"]))
    for index in _associated_properties(data, *properties[b"ipma"], primary):
        if 1 <= index <= len(listed):
            kind, body, stop = listed[index - 1]
            if kind == b"colr" and data[body:body + 4] == b"nclx" and stop - body >= 11:
                primaries, transfer, _matrix = struct.unpack_from(">3H", data, body + 4)
                return primaries, transfer, True
    return None


def _associated_properties(data, start, stop, item):
    """The 1-based indices into ipco of the properties ipma gives `item`."""
    version, flags = data[start], int.from_bytes(data[start + 1:start + 4], "big")
    (entries,) = struct.unpack_from(">I", data, start + 4)
    at = start + 8
    for _ in range(entries):
        if at >= stop:
            return []
        item_id = struct.unpack_from(">H" if version < 1 else ">I", data, at)[0]
        at += 2 if version < 1 else 4
        count = data[at]
        at += 1
        width = 2 if flags & 1 else 1
        indices = [int.from_bytes(data[at + width * i:at + width * (i + 1)], "big") & (0x7FFF if width == 2 else 0x7F)
                   for i in range(count)]
        at += width * count
        if item_id == item:
            return indices
    return []
