"""Finding an MMD model's texture files from the paths stored in the model, and refusing ones too
large to load (pure: the standard library, and Pillow for image headers where it is installed).

Stored paths are relative to the model file and written on Windows, so they use backslashes,
ignore case, and are often re-encoded on the way from the author's disk to ours: a zip made on
a Japanese Windows stores cp932 bytes (a Chinese one's, GBK), which Linux keeps as undecodable
bytes or decodes as cp437 (THA Studio's own extraction, as cp932). `resolve_texture` tries the exact path first (the common, fast case), then each of these
variants per path component, and finally the file name alone anywhere under the model's folder.
"""

from __future__ import annotations

import os
import unicodedata
import warnings
from pathlib import Path, PureWindowsPath

# How deep the last-resort search by file name goes below the model's folder.
SEARCH_DEPTH = 3


def split_stored_path(stored):
    """Components of a stored texture path, whatever its separators; drops '.' and empty parts."""
    text = stored.replace("\\", "/").strip()
    return [part for part in text.split("/") if part not in ("", ".")]


def name_variants(entry):
    """Ways to read a directory entry's name: as is, and as cp932 (a Japanese Windows') or GBK (a
    Chinese one's) bytes mis-decoded on the way."""
    variants = {entry}
    raw = os.fsencode(entry)
    for decode in (
        lambda: raw.decode("cp932"),  # cp932 bytes on a UTF-8 file system (surrogate-escaped)
        lambda: entry.encode("cp437").decode("cp932"),  # cp932 bytes unzipped as cp437
        lambda: raw.decode("gbk"),  # GBK bytes on a UTF-8 file system
        lambda: entry.encode("cp437").decode("gbk"),  # GBK bytes unzipped as cp437
        lambda: entry.encode("cp932").decode("gbk"),  # GBK bytes read as cp932 (render/dataset/archives.py)
    ):
        try:
            variants.add(decode())
        except (UnicodeError, ValueError):
            pass
    return {comparable(name) for name in variants}


def comparable(name):
    """A name folded the way Windows compares it, with Unicode forms and widths unified."""
    return unicodedata.normalize("NFKC", name).casefold()


def find_entry(folder, wanted):
    """The entry of `folder` whose name matches `wanted` under any variant, or None."""
    try:
        entries = os.listdir(folder)
    except OSError:
        return None
    key = comparable(wanted)
    for entry in entries:
        if key in name_variants(entry):
            return Path(folder) / entry
    return None


def resolve_texture(model_dir, stored):
    """The file a stored texture path names, as a Path, or None if it cannot be found."""
    model_dir = Path(model_dir)
    parts = split_stored_path(stored)
    if not parts:
        return None
    if PureWindowsPath(stored).drive or stored.startswith(("/", "\\")):
        # An absolute path from the author's machine: only its file name can help here.
        return find_by_name(model_dir, parts[-1])

    exact = model_dir.joinpath(*parts)
    if exact.is_file():
        return exact

    path = model_dir
    for part in parts:
        if part == "..":
            path = path.parent
            continue
        candidate = path / part
        path = candidate if candidate.exists() else find_entry(path, part)
        if path is None:
            break
    if path is not None and path.is_file():
        return path
    return find_by_name(model_dir, parts[-1])


def find_by_name(model_dir, file_name, depth=SEARCH_DEPTH):
    """A file named `file_name` (under any variant) in model_dir or a few levels below it."""
    folders = [Path(model_dir)]
    for _ in range(depth + 1):
        next_folders = []
        for folder in folders:
            hit = find_entry(folder, file_name)
            if hit is not None and hit.is_file():
                return hit
            try:
                next_folders.extend(p for p in sorted(folder.iterdir()) if p.is_dir())
            except OSError:
                pass
        folders = next_folders
    return None


def oversized_texture(path):
    """Why the texture at `path` (or in a binary file object) is too large to load, or None. Read from its header without
    decoding it, by Pillow (which the extension ships; PNG, JPEG, BMP, TGA, DDS, ...), whose
    decompression-bomb limit (179 million pixels, 13,377 squared) no MMD texture comes near:
    Blender would decode such a file whole, gigabytes, when a view or a render first needs it.
    A file Pillow cannot parse is left to Blender to judge."""
    try:
        from PIL import Image
    except ImportError:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path):
                return None
        except Image.DecompressionBombError as error:
            return str(error).split(",")[0]  # "Image size (N pixels) exceeds limit of M pixels"
        except Exception:  # noqa: BLE001
            return None
