"""Whether a .blend file that Blender saved is whole (pure: no bpy).

Blender 5.0's save can report success on a full disk and leave the file cut short: on a file
system with 4 KB free, `save_as_mainfile` said 'Saved "x.blend"' and left the first 4,096 bytes
of a 90 KB file, which no Blender opens. A whole .blend ends in its ENDB block, or, compressed,
in the footer of the zstd seekable format that Blender writes.
"""

import os

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
SEEKABLE_FOOTER_MAGIC = b"\xb1\xea\x92\x8f"  # zstd's seekable format, 0x8F92EAB1 little-endian
UNCOMPRESSED_MAGIC = b"BLENDER"
END_BLOCK = b"ENDB"
TAIL_BYTES = 64


def end_block_rest(header):
    """How many bytes follow the ENDB code to the end of a whole uncompressed .blend (the rest of
    its block header, all zeros), from the file's header: 28 in Blender 5.0's format
    ("BLENDER17-01v0500": block headers of 8-byte lengths), else 20, or 16 with 32-bit pointers
    ("BLENDER-v402", "BLENDER_v279"). None for a header of neither kind."""
    if header[7:9] == b"17" and header[9:12] == b"-01":
        return 28
    return {b"-": 20, b"_": 16}.get(header[7:8])


def blend_file_problem(path):
    """Why the .blend at `path` is not whole, in words after its name; None where it is."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(17)
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - TAIL_BYTES))
            tail = handle.read()
    except OSError as error:
        return f"cannot be read back after saving ({error.strerror or error})"
    if head.startswith(ZSTD_MAGIC):
        whole = tail.endswith(SEEKABLE_FOOTER_MAGIC)
    elif head.startswith(UNCOMPRESSED_MAGIC) and end_block_rest(head) is not None:
        rest = end_block_rest(head)
        whole = tail[-rest - len(END_BLOCK):] == END_BLOCK + bytes(rest)
    else:
        return f"is not a .blend file after saving ({size:,} bytes)"
    if whole:
        return None
    return f"Blender left it cut short ({size:,} bytes, without its end): is the disk full?"
